"""The tokens file and the JWT verifier, on real files (keys made here with
`cryptography`): what is accepted, what is refused at start, what a call is refused for."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import jwt
import pytest
from support.credentials import JwtSigner
from taskgrove.domain import reasons
from taskgrove_server.auth import Authenticator, AuthError
from taskgrove_server.auth.config_error import AuthConfigError
from taskgrove_server.auth.jwt_verifier import JwtVerifier
from taskgrove_server.auth.tokens import TokensFileError, TokenTable
from taskgrove_server.config import ServerConfig
from taskgrove_server.identity import ADMIN, USER, WORKER


def table(tmp_path: Path, text: str) -> TokenTable:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    return TokenTable.load(path)


def test_tokens_by_value_or_digest(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"second-secret-token").hexdigest()
    tokens = table(
        tmp_path,
        '[[token]]\ntoken = "first-secret-token"\nuser = "alice"\n\n'
        f'[[token]]\nsha256 = "{digest}"\nuser = "ops"\nroles = ["admin", "worker"]\n\n'
        '[[certificate]]\ncommon_name = "worker-1"\nroles = ["worker"]\n',
    )
    alice = tokens.caller_for_token("first-secret-token")
    assert alice is not None and (alice.user, alice.roles) == ("alice", frozenset({USER}))
    ops = tokens.caller_for_token("second-secret-token")
    assert ops is not None and (ops.user, ops.roles) == ("ops", frozenset({ADMIN, WORKER}))
    assert tokens.caller_for_token("first-secret-toke") is None
    assert tokens.caller_for_token(digest) is None  # the digest itself is no token
    worker = tokens.caller_for_certificate("worker-1")
    assert worker is not None and worker.user == "worker-1" and worker.roles == {WORKER}
    assert tokens.caller_for_certificate("worker-2") is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[[token]\n", "tokens file"),
        ('[[token]]\nuser = "a"\n', "exactly one of"),
        ('[[token]]\ntoken = "short"\nuser = "a"\n', "16 characters"),
        ('[[token]]\nsha256 = "abc"\nuser = "a"\n', "sha256"),
        ('[[token]]\ntoken = "long-enough-token-1"\n', "user"),
        ('[[token]]\ntoken = "long-enough-token-1"\nuser = "a"\nroles = ["root"]\n', "root"),
        ('[[token]]\ntoken = "long-enough-token-1"\nuser = "a"\nrole = "admin"\n', "role"),
        ('[[tokens]]\ntoken = "long-enough-token-1"\nuser = "a"\n', "tokens"),
    ],
)
def test_a_bad_tokens_file_is_refused_with_what_is_wrong(
    tmp_path: Path, text: str, complaint: str
) -> None:
    with pytest.raises(TokensFileError) as refused:
        table(tmp_path, text)
    assert complaint in str(refused.value)


def test_a_missing_tokens_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokensFileError):
        TokenTable.load(tmp_path / "absent.toml")


def test_reload_keeps_the_tokens_in_force_when_the_file_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[[token]]\ntoken = "first-secret-token"\nuser = "alice"\n')
    authenticator = Authenticator(ServerConfig(tokens_file=str(path)))
    assert authenticator.authenticate(["Bearer first-secret-token"]).user == "alice"
    path.write_text('[[token]]\ntoken = "other-secret-token"\nuser = "bob"\n')
    assert authenticator.reload()
    assert authenticator.authenticate(["Bearer other-secret-token"]).user == "bob"
    with pytest.raises(AuthError):
        authenticator.authenticate(["Bearer first-secret-token"])
    path.write_text("not toml [")
    assert not authenticator.reload()
    assert authenticator.authenticate(["Bearer other-secret-token"]).user == "bob"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([], reasons.AUTHENTICATION_REQUIRED),
        (["Basic dXNlcjpwYXNz"], reasons.INVALID_CREDENTIALS),
        (["Bearer "], reasons.INVALID_CREDENTIALS),
        (["Bearer a", "Bearer b"], reasons.INVALID_CREDENTIALS),
        (["Bearer " + "x" * 9000], reasons.INVALID_CREDENTIALS),
    ],
)
def test_malformed_headers(tmp_path: Path, headers: list[str], reason: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text('[[token]]\ntoken = "first-secret-token"\nuser = "alice"\n')
    with pytest.raises(AuthError) as refused:
        Authenticator(ServerConfig(tokens_file=str(path))).authenticate(headers)
    assert refused.value.reason == reason


def test_jwks_chooses_the_key_by_kid(tmp_path: Path) -> None:
    first, second = JwtSigner.new(), JwtSigner.new()
    keys = []
    for kid, signer in (("one", first), ("two", second)):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signer.key.public_key()))
        keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": keys}))
    verifier = JwtVerifier(jwks_file=str(jwks))
    signed = jwt.encode(
        {"sub": "alice", "exp": 2_000_000_000},
        second.key,
        algorithm="RS256",
        headers={"kid": "two"},
    )
    assert verifier.verify(signed).user == "alice"
    wrong = jwt.encode(
        {"sub": "alice", "exp": 2_000_000_000},
        second.key,
        algorithm="RS256",
        headers={"kid": "one"},
    )
    with pytest.raises(Exception, match="invalid JWT"):
        verifier.verify(wrong)


def test_jwts_need_an_expiry_and_a_subject(tmp_path: Path) -> None:
    signer = JwtSigner.new()
    key = tmp_path / "key.pem"
    key.write_bytes(signer.public_pem)
    verifier = JwtVerifier(key_file=str(key))
    for claims in ({"sub": "alice"}, {"exp": 2_000_000_000}, {"sub": "", "exp": 2_000_000_000}):
        with pytest.raises(Exception, match="invalid JWT"):
            verifier.verify(jwt.encode(claims, signer.key, algorithm="RS256"))
    # Unknown roles are ignored; none known: a user.
    token = jwt.encode(
        {"sub": "a", "exp": 2_000_000_000, "roles": ["root", 3]}, signer.key, algorithm="RS256"
    )
    assert verifier.verify(token).roles == {USER}


def test_an_hmac_secret_only_with_hmac_algorithms(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("a-shared-secret-of-enough-length-0123456789\n")
    verifier = JwtVerifier(key_file=str(secret), algorithms=["HS256"])
    token = jwt.encode(
        {"sub": "alice", "exp": 2_000_000_000},
        "a-shared-secret-of-enough-length-0123456789",
        algorithm="HS256",
    )
    assert verifier.verify(token).user == "alice"
    # With public-key algorithms the same file must be a PEM key: refused at start.
    with pytest.raises(AuthConfigError):
        JwtVerifier(key_file=str(secret))


def test_a_jwt_not_yet_valid_is_invalid_and_an_expired_one_expired(tmp_path: Path) -> None:
    signer = JwtSigner.new()
    key = tmp_path / "key.pem"
    key.write_bytes(signer.public_pem)
    config = ServerConfig(jwt_key_file=str(key))
    now = int(time.time())
    cases = {
        reasons.INVALID_CREDENTIALS: {"sub": "a", "exp": now + 7200, "nbf": now + 3600},
        reasons.CREDENTIALS_EXPIRED: {"sub": "a", "exp": now - 3600},
    }
    for reason, claims in cases.items():
        token = jwt.encode(claims, signer.key, algorithm="RS256")
        with pytest.raises(AuthError) as refused:
            Authenticator(config).authenticate([f"Bearer {token}"])
        assert refused.value.reason == reason
