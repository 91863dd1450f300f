"""The tokens file: bearer tokens (or their SHA-256) and client certificates -> users.

    [[token]]
    sha256 = "9f86d08..."      # hex SHA-256 of the token (or `token = "..."`, plain)
    user = "alice"
    roles = ["user"]           # optional: user (default), admin, reader, worker

    [[certificate]]
    common_name = "worker-1"   # a verified client certificate's subject CN (mutual TLS)
    user = "worker-1"          # optional: the common name
    roles = ["worker"]

A presented token is hashed and compared with every entry in constant time, so neither
the answer's timing nor the order of the file tells which entries are close.
"""

from __future__ import annotations

import hashlib
import hmac
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskgrove_server.auth.config_error import AuthConfigError
from taskgrove_server.identity import ROLES, USER, Caller


class TokensFileError(AuthConfigError):
    """The tokens file cannot be used (the message names the entry)."""


@dataclass(frozen=True, slots=True)
class TokenTable:
    digests: tuple[tuple[bytes, Caller], ...] = ()
    certificates: tuple[tuple[str, Caller], ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> TokenTable:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise TokensFileError(f"tokens file {path}: {error}") from None
        unknown = set(data) - {"token", "certificate"}
        if unknown:
            raise TokensFileError(f"tokens file {path}: unknown tables {sorted(unknown)}")
        digests = [_token_entry(path, i, entry) for i, entry in enumerate(_list(data, "token"))]
        certs = [_cert_entry(path, i, e) for i, e in enumerate(_list(data, "certificate"))]
        return cls(tuple(digests), tuple(certs))

    def caller_for_token(self, token: str) -> Caller | None:
        presented = hashlib.sha256(token.encode()).digest()
        found: Caller | None = None
        for digest, caller in self.digests:
            # Every entry is compared: no early exit whose timing would tell which matched.
            if hmac.compare_digest(digest, presented) and found is None:
                found = caller
        return found

    def caller_for_certificate(self, common_name: str) -> Caller | None:
        for name, caller in self.certificates:
            if name == common_name:
                return caller
        return None


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise TokensFileError(f"`{key}` must be an array of tables ([[{key}]])")
    return value


def _caller(where: str, entry: dict[str, Any], default_user: str | None = None) -> Caller:
    user = entry.get("user", default_user)
    if not isinstance(user, str) or not user or len(user) > 255:
        raise TokensFileError(f"{where}: `user` must be a non-empty string (at most 255)")
    roles = entry.get("roles", [USER])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise TokensFileError(f"{where}: `roles` must be a list of strings")
    if unknown := set(roles) - ROLES:
        raise TokensFileError(f"{where}: unknown roles {sorted(unknown)}; known: {sorted(ROLES)}")
    return Caller(user=user, roles=frozenset(roles))


def _token_entry(path: str | Path, index: int, entry: Any) -> tuple[bytes, Caller]:
    where = f"tokens file {path}, token #{index + 1}"
    if not isinstance(entry, dict):
        raise TokensFileError(f"{where}: not a table")
    if unknown := set(entry) - {"sha256", "token", "user", "roles"}:
        raise TokensFileError(f"{where}: unknown keys {sorted(unknown)}")
    if ("sha256" in entry) == ("token" in entry):
        raise TokensFileError(f"{where}: give exactly one of `sha256` and `token`")
    if "token" in entry:
        token = entry["token"]
        if not isinstance(token, str) or len(token) < 16:
            raise TokensFileError(f"{where}: `token` must be a string of 16 characters or more")
        digest = hashlib.sha256(token.encode()).digest()
    else:
        try:
            digest = bytes.fromhex(entry["sha256"])
        except (TypeError, ValueError):
            digest = b""
        if len(digest) != 32:
            raise TokensFileError(f"{where}: `sha256` must be 64 hexadecimal digits")
    return digest, _caller(where, entry)


def _cert_entry(path: str | Path, index: int, entry: Any) -> tuple[str, Caller]:
    where = f"tokens file {path}, certificate #{index + 1}"
    if not isinstance(entry, dict):
        raise TokensFileError(f"{where}: not a table")
    if unknown := set(entry) - {"common_name", "user", "roles"}:
        raise TokensFileError(f"{where}: unknown keys {sorted(unknown)}")
    name = entry.get("common_name")
    if not isinstance(name, str) or not name:
        raise TokensFileError(f"{where}: `common_name` must be a non-empty string")
    return name, _caller(where, entry, default_user=name)
