"""TLS and mutual TLS end to end (issue "Security", point 3), with a throwaway CA made in
the test: real servers on 127.0.0.1, the SDK and the `taskgrove` command as clients.

With a client CA the server requires a certificate it signed; a caller without a token is
the user its certificate's common name says (or the roles a tokens file gives that name);
a bearer token, when sent, says who calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.certificates import CertificateAuthority, Issued
from support.credentials import TOKENS, tokens_toml
from taskgrove import AsyncClient, NotFoundError, TaskgroveError, TLSConfig
from taskgrove_server.app import TaskgroveServer
from taskgrove_server.testing import ServerProcess

if TYPE_CHECKING:
    from conftest import ServerFactory

CONNECT_TIMEOUT = 10.0
"""A refused handshake fails at once; this only bounds a hung one."""


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path)


@pytest.fixture
def server_cert(ca: CertificateAuthority) -> Issued:
    return ca.issue_server()


def tls_client(
    instance: TaskgroveServer,
    ca_file: Path | None,
    client: Issued | None = None,
    **settings: object,
) -> AsyncClient:
    tls = TLSConfig(
        ca_file=ca_file,
        cert_file=client.cert if client else None,
        key_file=client.key if client else None,
    )
    return AsyncClient(f"127.0.0.1:{instance.port}", tls=tls, timeout=CONNECT_TIMEOUT, **settings)


async def refused_code(client: AsyncClient) -> grpc.StatusCode:
    async with client:
        with pytest.raises(TaskgroveError) as refused:
            await client.list_tasks_page()
    return refused.value.code


async def test_tls_serves_clients_that_trust_its_ca(
    make_server: ServerFactory, ca: CertificateAuthority, server_cert: Issued
) -> None:
    instance = await make_server(
        tls_cert_file=str(server_cert.cert), tls_key_file=str(server_cert.key)
    )
    async with tls_client(instance, ca.cert) as client:
        task = await client.create_task(name="over tls", executor="sleep_executor")
        assert (await client.get_task(task.id)).name == "over tls"


async def test_plaintext_and_other_cas_cannot_talk_to_a_tls_server(
    make_server: ServerFactory, ca: CertificateAuthority, server_cert: Issued, tmp_path: Path
) -> None:
    instance = await make_server(
        tls_cert_file=str(server_cert.cert), tls_key_file=str(server_cert.key)
    )
    plaintext = AsyncClient(f"127.0.0.1:{instance.port}", timeout=CONNECT_TIMEOUT)
    assert await refused_code(plaintext) == grpc.StatusCode.UNAVAILABLE
    stranger = CertificateAuthority(tmp_path, "another CA")
    assert await refused_code(tls_client(instance, stranger.cert)) == grpc.StatusCode.UNAVAILABLE
    # Nothing was created by the refused callers; a trusting client still works.
    async with tls_client(instance, ca.cert) as client:
        assert await client.list_tasks_page() == ([], "")


async def mtls_server(
    make_server: ServerFactory, ca: CertificateAuthority, server_cert: Issued, **fields: object
) -> TaskgroveServer:
    return await make_server(
        tls_cert_file=str(server_cert.cert),
        tls_key_file=str(server_cert.key),
        tls_client_ca_file=str(ca.cert),
        **fields,
    )


async def test_mtls_callers_are_the_users_their_certificates_name(
    make_server: ServerFactory, ca: CertificateAuthority, server_cert: Issued
) -> None:
    instance = await mtls_server(make_server, ca, server_cert)
    async with (
        tls_client(instance, ca.cert, ca.issue_client("alice")) as alice,
        tls_client(instance, ca.cert, ca.issue_client("bob")) as bob,
    ):
        task = await alice.create_task(name="alice's", executor="sleep_executor")
        assert task.user_id == "alice"
        with pytest.raises(NotFoundError):
            await bob.get_task(task.id)
        assert await bob.list_tasks_page() == ([], "")
        mine = await bob.create_task(name="bob's", executor="sleep_executor")
        assert mine.user_id == "bob"


async def test_mtls_refuses_connections_without_a_trusted_client_certificate(
    make_server: ServerFactory, ca: CertificateAuthority, server_cert: Issued, tmp_path: Path
) -> None:
    instance = await mtls_server(make_server, ca, server_cert)
    assert await refused_code(tls_client(instance, ca.cert)) == grpc.StatusCode.UNAVAILABLE
    stranger = CertificateAuthority(tmp_path, "another CA").issue_client("alice")
    unsigned = tls_client(instance, ca.cert, stranger)
    assert await refused_code(unsigned) == grpc.StatusCode.UNAVAILABLE
    # A token does not replace the certificate: the handshake comes first.
    with_token = tls_client(instance, ca.cert, token="anything-at-all")
    assert await refused_code(with_token) == grpc.StatusCode.UNAVAILABLE


async def test_a_tokens_file_gives_certificates_roles_and_a_token_says_who_calls(
    make_server: ServerFactory, ca: CertificateAuthority, server_cert: Issued, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        tokens_toml({"bob": TOKENS["bob"]})
        + '\n[[certificate]]\ncommon_name = "ops-console"\nuser = "ops"\nroles = ["admin"]\n'
    )
    instance = await mtls_server(make_server, ca, server_cert, tokens_file=str(tokens))
    async with (
        tls_client(instance, ca.cert, ca.issue_client("alice")) as alice,
        tls_client(instance, ca.cert, ca.issue_client("ops-console")) as admin,
        tls_client(instance, ca.cert, ca.issue_client("alice"), token=TOKENS["bob"][0]) as bob,
    ):
        task = await alice.create_task(name="alice's", executor="sleep_executor")
        assert (await admin.get_task(task.id)).user_id == "alice"
        by_admin = await admin.create_task(name="the admin's", executor="sleep_executor")
        assert by_admin.user_id == "ops"
        # Alice's certificate, Bob's token: Bob calls, and Alice's task is not his.
        assert (await bob.create_task(name="bob's", executor="sleep_executor")).user_id == "bob"
        with pytest.raises(NotFoundError):
            await bob.get_task(task.id)


async def test_reflection_can_be_turned_off(make_server: ServerFactory) -> None:
    async def services(instance: TaskgroveServer) -> list[str]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{instance.port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for reply in stub.ServerReflectionInfo(iter([request]), timeout=10):
                return [s.name for s in reply.list_services_response.service]
        return []

    async def refused(instance: TaskgroveServer) -> grpc.StatusCode:
        # No request written: a write racing the server's refusal of an unknown method
        # ends the call INTERNAL ("Internal error from Core") about once in 200.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{instance.port}") as channel:
            call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                timeout=10
            )
            with contextlib.suppress(grpc.aio.AioRpcError):
                await call.done_writing()
            return await call.code()

    assert "taskgrove.v1.TaskService" in await services(await make_server())
    assert await refused(await make_server(reflection=False)) == grpc.StatusCode.UNIMPLEMENTED


# ------------------------------------------------------------------ the command line


def serve_result(db_url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [*ServerProcess(db_url).command(), *flags]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", ["missing", "mismatched", "expired", "ca alone", "no key"])
def test_serve_refuses_bad_tls_files_in_one_line(
    case: str, db_url: str, ca: CertificateAuthority, server_cert: Issued, tmp_path: Path
) -> None:
    other = ca.issue_client("someone")
    flags = {
        "missing": ["--tls-cert", str(tmp_path / "nowhere.pem"), "--tls-key", str(server_cert.key)],
        "mismatched": ["--tls-cert", str(server_cert.cert), "--tls-key", str(other.key)],
        "expired": [
            "--tls-cert",
            str(
                (
                    expired := CertificateAuthority(tmp_path, "old CA").issue_server(valid_days=-1)
                ).cert
            ),
            "--tls-key",
            str(expired.key),
        ],
        "ca alone": ["--tls-client-ca", str(ca.cert)],
        "no key": ["--tls-cert", str(server_cert.cert)],
    }[case]
    result = serve_result(db_url, *flags)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --tls"), result.stderr
    assert not result.stdout


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskgrove._cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_serve_and_the_cli_over_mutual_tls(
    db_url: str, ca: CertificateAuthority, server_cert: Issued, tmp_path: Path
) -> None:
    alice = ca.issue_client("alice")
    server_env = {
        "TASKGROVE_TLS_CERT": str(server_cert.cert),
        "TASKGROVE_TLS_KEY": str(server_cert.key),
        "TASKGROVE_TLS_CLIENT_CA": str(ca.cert),
    }
    tree = tmp_path / "tree.yaml"
    tree.write_text("name: over mtls\nexecutor: sleep_executor\ninputs: {seconds: 0}\n")
    with ServerProcess(db_url, extra_env=server_env) as process:
        flags = ["--address", process.address, "--ca-file", str(ca.cert)]
        mine = ["--client-cert", str(alice.cert), "--client-key", str(alice.key)]
        ran = cli("run", str(tree), "--json", *flags, *mine)
        assert ran.returncode == 0, ran.stderr
        # The same through the environment the SDK reads.
        env = {
            "TASKGROVE_ADDRESS": process.address,
            "TASKGROVE_CA_FILE": str(ca.cert),
            "TASKGROVE_CERT_FILE": str(alice.cert),
            "TASKGROVE_KEY_FILE": str(alice.key),
        }
        listed = cli("ls", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert [task["user_id"] for task in json.loads(listed.stdout)] == ["alice"]
        # Without a client certificate the server cannot be reached.
        refused = cli("ls", *flags)
        assert refused.returncode == 2
        assert refused.stderr.startswith("error: UNAVAILABLE"), refused.stderr
        half = cli("ls", *flags, "--client-cert", str(alice.cert))
        assert half.returncode == 2 and "needs its key" in half.stderr, half.stderr


def test_the_cli_reads_a_token_file(
    db_url: str, ca: CertificateAuthority, server_cert: Issued, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(tokens_toml({"alice": TOKENS["alice"]}))
    token_file = tmp_path / "token"
    token_file.write_text(TOKENS["alice"][0] + "\n")
    server_env = {
        "TASKGROVE_TLS_CERT": str(server_cert.cert),
        "TASKGROVE_TLS_KEY": str(server_cert.key),
        "TASKGROVE_TOKENS_FILE": str(tokens),
    }
    with ServerProcess(db_url, extra_env=server_env) as process:
        flags = ["--address", process.address, "--ca-file", str(ca.cert)]
        assert cli("ls", *flags, "--token-file", str(token_file)).returncode == 0
        anonymous = cli("ls", *flags)
        assert anonymous.returncode == 2
        assert anonymous.stderr.startswith("error: AUTHENTICATION_REQUIRED"), anonymous.stderr
        missing = cli("ls", *flags, "--token-file", str(tmp_path / "none"))
        assert missing.returncode == 2 and "--token-file" in missing.stderr
