"""The Go and TypeScript clients over mutual TLS, configured as a user would: the
TASKGROVE_CA_FILE / _CERT_FILE / _KEY_FILE variables, against a real `serve` that requires
client certificates from a throwaway CA. The certificate's name is the caller: the tasks
the programs create are its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.certificates import CertificateAuthority
from support.clients import environment, go_program, typescript_dist
from taskgrove_server.testing import ServerProcess, sqlite_url

TIMEOUT_S = 60
TREE = {
    "tasks": [
        {"id": "root", "name": "over mtls"},
        {"id": "a", "name": "a", "parent_id": "root", "executor": "sleep_executor",
         "inputs": {"seconds": 0}},
    ],
    "execute": True,
}  # fmt: skip


def program(client: str) -> list[str]:
    if client == "go":
        return [str(go_program("examples/quickstart"))]
    return ["node", str(typescript_dist() / "examples" / "create-tree.js")]


@pytest.mark.parametrize("client", ["go", "typescript"])
def test_a_client_over_mutual_tls_from_the_environment(tmp_path: Path, client: str) -> None:
    command = program(client)
    ca = CertificateAuthority(tmp_path)
    stranger = CertificateAuthority(tmp_path, name="another CA")
    server_cert = ca.issue_server()
    carol = ca.issue_client("carol")
    server_env = {
        "TASKGROVE_TLS_CERT": str(server_cert.cert),
        "TASKGROVE_TLS_KEY": str(server_cert.key),
        "TASKGROVE_TLS_CLIENT_CA": str(ca.cert),
    }
    base = environment()

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            input=json.dumps(TREE),
            env={**base, "TASKGROVE_ADDRESS": server.address, **env},
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )

    with ServerProcess(sqlite_url(tmp_path / "tg.db"), extra_env=server_env) as server:
        mine = {
            "TASKGROVE_CA_FILE": str(ca.cert),
            "TASKGROVE_CERT_FILE": str(carol.cert),
            "TASKGROVE_KEY_FILE": str(carol.key),
        }
        served = run(**mine)
        assert served.returncode == 0, served.stdout + served.stderr
        # Refused: without a client certificate, trusting another CA, or in plaintext.
        for refused_env in (
            {"TASKGROVE_CA_FILE": str(ca.cert)},
            {**mine, "TASKGROVE_CA_FILE": str(stranger.cert)},
            {},
        ):
            refused = run(**refused_env)
            assert refused.returncode != 0, (refused_env, refused.stdout)
        cli = str(Path(sys.executable).with_name("taskgrove"))
        listed = subprocess.run(
            [cli, "ls", "--json", "--address", server.address, "--ca-file", str(ca.cert),
             "--client-cert", str(carol.cert), "--client-key", str(carol.key)],
            env=base, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    owners = {task["user_id"] for task in json.loads(listed.stdout)}
    assert owners == {"carol"}, listed.stdout
