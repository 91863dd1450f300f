"""A replica's default name is HOST:PORT, shortened to fit the leases' column."""

from __future__ import annotations

from taskgrove_server.app import default_replica_id
from taskgrove_server.config import MAX_REPLICA_ID_LENGTH


def test_a_short_host_name_is_used_as_it_is() -> None:
    assert default_replica_id("worker-7.internal", 50051) == "worker-7.internal:50051"


def test_a_long_host_name_becomes_a_digest_that_fits_and_tells_hosts_apart() -> None:
    long_a, long_b = "a" * 200 + ".example", "a" * 200 + ".example.org"
    name_a, name_b = default_replica_id(long_a, 50051), default_replica_id(long_b, 50051)
    assert len(name_a) <= MAX_REPLICA_ID_LENGTH and name_a.endswith(":50051")
    assert name_a != name_b
    assert default_replica_id(long_a, 50052) != name_a
