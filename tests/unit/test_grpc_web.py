"""The gRPC-Web wire format of the console's bridge: frames, trailers, grpc-timeout."""

from __future__ import annotations

import base64

import pytest
from taskgrove_server.console import grpc_web
from taskgrove_server.console.bridge import METHODS, metadata_from, timeout_from


def test_a_data_frame_round_trips_and_must_be_alone() -> None:
    frame = grpc_web.data_frame(b"hello")
    assert frame == b"\x00\x00\x00\x00\x05hello"
    assert grpc_web.single_message(frame) == b"hello"
    for bad in (b"", b"\x00\x00\x00", frame + b"x", frame + frame, b"\x01" + frame[1:]):
        with pytest.raises(grpc_web.FrameError):
            grpc_web.single_message(bad)


def test_trailers_carry_the_status_message_and_details() -> None:
    frame = grpc_web.trailers_frame(5, "task 100% gone\nreally", b"\x01\x02\x03\x04")
    [(flags, block)] = list(grpc_web.split_frames(frame))
    assert flags == 0x80
    trailers = grpc_web.parse_trailers(block)
    assert trailers["grpc-status"] == "5"
    assert trailers["grpc-message"] == "task 100% gone\nreally"
    encoded = trailers["grpc-status-details-bin"]
    assert base64.b64decode(encoded + "=" * (-len(encoded) % 4)) == b"\x01\x02\x03\x04"


def test_only_task_service_methods_are_bridged_and_their_streams_known() -> None:
    assert METHODS["/taskgrove.v1.TaskService/GetTask"] is False
    assert METHODS["/taskgrove.v1.TaskService/WatchEvents"] is True
    assert METHODS["/taskgrove.v1.TaskService/StreamTaskLogs"] is True
    assert not any("WorkerService" in path for path in METHODS)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5S", 5.0), ("200m", 0.2), ("1M", 60.0), ("", None), ("S", None), ("5x", None)],
)
def test_grpc_timeout(header: str, seconds: float | None) -> None:
    assert timeout_from({"grpc-timeout": header} if header else {}) == seconds


def test_only_the_authorization_header_passes_upstream() -> None:
    headers = {"authorization": "Bearer t", "cookie": "c", "x-user-agent": "connect-web"}
    assert metadata_from(headers) == (("authorization", "Bearer t"),)


def test_text_mode_bodies_decode_from_padded_pieces_and_nothing_else() -> None:
    frame = grpc_web.data_frame(b"hello, text mode")
    whole = base64.b64encode(frame)
    pieces = b"".join(base64.b64encode(frame[i : i + 4]) for i in range(0, len(frame), 4))
    assert b"=" in pieces.rstrip(b"=")
    for body in (whole, pieces, whole[:8] + b"\r\n" + whole[8:]):
        assert grpc_web.decode_text(body) == frame
    assert grpc_web.decode_text(b"") == b""
    for bad in (b"AAA", b"AAAA=AAA", b"AA==A===", b"not base64!", b"AAAA\x00"):
        with pytest.raises(grpc_web.FrameError):
            grpc_web.decode_text(bad)
    encoded = grpc_web.encode_text(frame)
    assert base64.b64decode(encoded, validate=True) == frame
