"""The console's gRPC-Web bridge against a real server on 127.0.0.1: calls travel the
server's own gRPC port, so results, errors and auth are the API's."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import TYPE_CHECKING

from google.rpc import status_pb2
from taskgrove.v1 import task_pb2, task_service_pb2
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.console.bridge import Upstream
from taskgrove_server.console.grpc_web import data_frame

from tests.support import grpc_web
from tests.support.certificates import CertificateAuthority, Issued
from tests.support.credentials import TOKENS, write_auth_files
from tests.support.status_details import unpack
from tests.support.trees import sleeper
from tests.support.waiting import until

if TYPE_CHECKING:
    from tests.conftest import ServerFactory

SERVICE = "/taskgrove.v1.TaskService"


def console_port(server: TaskgroveServer) -> int:
    assert server.console is not None
    return server.console.port


async def test_a_unary_call_answers_the_task(make_server: ServerFactory) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    task = await client.create_task(name="bridged", user_id="alice")

    reply = await grpc_web.call(
        console_port(server), f"{SERVICE}/GetTask", task_service_pb2.GetTaskRequest(id=task.id)
    )

    assert reply.status == 200
    assert reply.headers["content-type"] == "application/grpc-web+proto"
    assert reply.grpc_status == 0
    [message] = reply.messages
    got = task_pb2.Task.FromString(message)
    assert (got.id, got.name, got.user_id) == (task.id, "bridged", "alice")


async def test_an_unknown_task_is_not_found_with_its_reason(make_server: ServerFactory) -> None:
    server = await make_server(http_address="127.0.0.1:0")

    reply = await grpc_web.call(
        console_port(server), f"{SERVICE}/GetTask", task_service_pb2.GetTaskRequest(id="nope")
    )

    assert reply.messages == []
    assert reply.grpc_status == 5
    assert "nope" in reply.trailers["grpc-message"]
    encoded = reply.trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    [info], _ = unpack(status)
    assert info.reason == "TASK_NOT_FOUND"


async def test_watch_events_streams_each_batch_as_it_happens(make_server: ServerFactory) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    root = await client.create_task(name="watched", user_id="alice")
    request = task_service_pb2.WatchEventsRequest(root_id=root.id, include_snapshot=True)
    call = grpc_web.Call(console_port(server), f"{SERVICE}/WatchEvents", request)
    await call.open()
    try:
        frames = call.frames()
        snapshot = task_service_pb2.WatchEventsResponse()
        while not snapshot.snapshot_complete:
            flags, payload = await anext(frames)
            assert flags == 0
            snapshot = task_service_pb2.WatchEventsResponse.FromString(payload)
        # The stream is open and quiet: a change made now arrives on it while it stays open.
        child = await client.create_task(name="later", parent_id=root.id, user_id="alice")
        seen: list[str] = []
        while child.id not in seen:
            flags, payload = await anext(frames)
            batch = task_service_pb2.WatchEventsResponse.FromString(payload)
            seen += [event.task_id for event in batch.events]
    finally:
        await call.close()


async def watching(make_server: ServerFactory) -> tuple[TaskgroveServer, grpc_web.Call]:
    """A server with its console, and a WatchEvents through it that the server serves."""
    server = await make_server(http_address="127.0.0.1:0")
    request = task_service_pb2.WatchEventsRequest(user_id="alice")
    call = grpc_web.Call(console_port(server), f"{SERVICE}/WatchEvents", request)
    await call.open()
    await until(lambda: server.hub.subscriber_count == 1)
    return server, call


async def test_a_browser_leaving_cancels_the_upstream_watch(make_server: ServerFactory) -> None:
    server, call = await watching(make_server)

    await call.close()

    await until(lambda: server.hub.subscriber_count == 0)


async def test_only_the_task_service_is_bridged(make_server: ServerFactory) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    port = console_port(server)

    for path in ("/taskgrove.v1.WorkerService/Connect", "/grpc.health.v1.Health/Check"):
        reply = await grpc_web.call(port, path, b"\x00\x00\x00\x00\x00")
        assert reply.grpc_status == 12, path
        assert "not served" in reply.trailers["grpc-message"]


async def test_a_body_that_is_not_one_frame_is_invalid(make_server: ServerFactory) -> None:
    server = await make_server(http_address="127.0.0.1:0")

    reply = await grpc_web.call(console_port(server), f"{SERVICE}/GetTask", b"\x00\x00\x00")

    assert reply.grpc_status == 3


async def test_the_console_assets_are_served_with_their_types(make_server: ServerFactory) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    port = console_port(server)

    status, headers, body = await grpc_web.get(port, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b'<script src="/app.js"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    status, headers, body = await grpc_web.get(port, "/app.js")
    assert (status, headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert len(body) > 1000
    status, headers, _ = await grpc_web.get(port, "/app.css")
    assert (status, headers["content-type"]) == (200, "text/css; charset=utf-8")
    status, _, _ = await grpc_web.get(port, "/../pyproject.toml")
    assert status == 404


async def test_with_auth_on_a_call_without_a_token_is_unauthenticated(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    auth = write_auth_files(tmp_path)
    server = await make_server(http_address="127.0.0.1:0", **auth.server_config())
    port = console_port(server)
    request = task_service_pb2.ListTasksRequest(roots_only=True)

    refused = await grpc_web.call(port, f"{SERVICE}/ListTasks", request)
    served = await grpc_web.call(
        port, f"{SERVICE}/ListTasks", request, authorization=f"Bearer {TOKENS['alice'][0]}"
    )

    assert refused.grpc_status == 16
    assert served.grpc_status == 0


async def test_stopping_the_server_ends_open_streams(make_server: ServerFactory) -> None:
    server, call = await watching(make_server)

    await asyncio.wait_for(make_server.stop(server), 10)

    assert server.hub.subscriber_count == 0
    await call.close()


async def test_a_running_tree_is_cancelled_through_the_bridge(make_server: ServerFactory) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    created = await client.create_task_tree(
        [{"id": "root", "name": "root_task", "user_id": "alice"}, sleeper("long", 30)],
        execute=True,
    )

    reply = await grpc_web.call(
        console_port(server),
        f"{SERVICE}/CancelTask",
        task_service_pb2.CancelTaskRequest(id=created["root"].id),
    )

    assert reply.grpc_status == 0
    cancelled = task_service_pb2.CancelTaskResponse.FromString(reply.messages[0])
    assert created["long"].id in cancelled.cancelled_task_ids


async def serving_tls(make_server: ServerFactory, issued: Issued) -> TaskgroveServer:
    """A server with its console, its gRPC port over TLS with `issued`."""
    return await make_server(
        http_address="127.0.0.1:0", tls_cert_file=str(issued.cert), tls_key_file=str(issued.key)
    )


async def list_through_console(server: TaskgroveServer) -> grpc_web.Reply:
    return await grpc_web.call(
        console_port(server), f"{SERVICE}/ListTasks", task_service_pb2.ListTasksRequest()
    )


async def test_over_tls_the_bridge_trusts_the_servers_own_certificate(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = await serving_tls(make_server, CertificateAuthority(tmp_path).issue_server())

    reply = await list_through_console(server)

    assert reply.grpc_status == 0, reply.trailers


async def test_over_tls_a_certificate_naming_only_localhost_serves_the_console(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """The bridge dials 127.0.0.1 but checks the name the certificate gives; the chain is
    still checked (another authority's certificate for the same name is refused)."""
    for name in ("localhost", "*.example.test"):
        issued = CertificateAuthority(tmp_path).issue_server_for(name)
        server = await serving_tls(make_server, issued)
        reply = await list_through_console(server)
        assert reply.grpc_status == 0, (name, reply.trailers)
        await make_server.stop(server)
    # The same names, but the bridge given another authority's certificate to trust.
    (tmp_path / "mine").mkdir()
    (tmp_path / "theirs").mkdir()
    mine = CertificateAuthority(tmp_path / "mine").issue_server_for("localhost")
    theirs = CertificateAuthority(tmp_path / "theirs", "other CA").issue_server_for("localhost")
    server = await serving_tls(make_server, mine)
    assert server.console is not None
    upstream = Upstream(server.port, tls_cert_file=str(theirs.cert), max_message_bytes=1 << 20)
    try:
        request = task_service_pb2.ListTasksRequest().SerializeToString()
        reply_bytes, status = await upstream.unary(f"{SERVICE}/ListTasks", request, {})
        assert reply_bytes is None and status.code == 14  # UNAVAILABLE: not our server
    finally:
        await upstream.close()


async def test_text_mode_answers_in_base64_from_a_body_of_padded_pieces(
    make_server: ServerFactory,
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    task = await client.create_task(name="in text", user_id="alice")
    port = console_port(server)
    request = task_service_pb2.GetTaskRequest(id=task.id)
    body = grpc_web.text_body(data_frame(request.SerializeToString()), 3)
    assert b"=" in body.rstrip(b"=")  # padding inside the body, as chunked encoders send

    for pieces in (1, 3):
        reply = await grpc_web.call(port, f"{SERVICE}/GetTask", request, text_chunks=pieces)
        assert reply.headers["content-type"] == "application/grpc-web-text+proto"
        assert reply.grpc_status == 0, reply.trailers
        [message] = reply.messages
        assert task_pb2.Task.FromString(message).name == "in text"

    missing = task_service_pb2.GetTaskRequest(id="nope")
    reply = await grpc_web.call(port, f"{SERVICE}/GetTask", missing, text_chunks=2)
    assert (reply.messages, reply.grpc_status) == ([], 5)
    for garbage in (b"not base64!", b"AAAA=AAA", b"AAA"):
        bad = await grpc_web.call(port, f"{SERVICE}/GetTask", garbage, text_chunks=1)
        assert bad.grpc_status == 3, garbage
        assert "base64" in bad.trailers["grpc-message"]


async def test_a_text_mode_stream_sends_each_frame_as_its_own_base64_chunk(
    make_server: ServerFactory,
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    client = make_server.client(server)
    root = await client.create_task(name="watched", user_id="alice")
    request = task_service_pb2.WatchEventsRequest(root_id=root.id, include_snapshot=True)
    call = grpc_web.Call(console_port(server), f"{SERVICE}/WatchEvents", request, text_chunks=2)
    await call.open()
    try:
        assert call.response_headers["content-type"] == "application/grpc-web-text+proto"
        frames = call.frames()  # each chunk is decoded alone: padded per chunk
        snapshot = task_service_pb2.WatchEventsResponse()
        while not snapshot.snapshot_complete:
            flags, payload = await anext(frames)
            assert flags == 0
            snapshot = task_service_pb2.WatchEventsResponse.FromString(payload)
        assert [task.id for task in snapshot.snapshot] == [root.id]
        child = await client.create_task(name="later", parent_id=root.id, user_id="alice")
        seen: list[str] = []
        while child.id not in seen:
            flags, payload = await anext(frames)
            batch = task_service_pb2.WatchEventsResponse.FromString(payload)
            seen += [event.task_id for event in batch.events]
    finally:
        await call.close()


async def test_json_mode_and_bodies_without_a_length_are_refused(
    make_server: ServerFactory,
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    port = console_port(server)
    request = task_service_pb2.ListTasksRequest()

    json_mode = await grpc_web.call(
        port, f"{SERVICE}/ListTasks", request, **{"content-type": "application/grpc-web+json"}
    )
    assert json_mode.status == 415
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {SERVICE}/ListTasks HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n"
        "content-type: application/grpc-web+proto\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 411 ")
    # The listener keeps serving after both.
    assert (await grpc_web.call(port, f"{SERVICE}/ListTasks", request)).grpc_status == 0


async def test_calls_from_other_sites_and_rebound_names_are_refused(
    make_server: ServerFactory,
) -> None:
    server = await make_server(http_address="127.0.0.1:0")
    port = console_port(server)
    request = task_service_pb2.ListTasksRequest()
    path = f"{SERVICE}/ListTasks"

    rebound = await grpc_web.call(port, path, request, host=f"evil.example:{port}")
    foreign = await grpc_web.call(port, path, request, origin="http://evil.example")
    same = await grpc_web.call(
        port, path, request, host=f"127.0.0.1:{port}", origin=f"http://127.0.0.1:{port}"
    )

    assert (rebound.status, foreign.status, same.grpc_status) == (421, 403, 0)
