"""Throwaway credentials for authentication tests: a tokens file and an RSA key that
signs JWTs (made with `cryptography` in the test; nothing is read from the machine)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://idp.test"
AUDIENCE = "taskgrove"

TOKENS = {
    "alice": ("alice-token-1234-5678", ["user"]),
    "bob": ("bob-token-5678-1234", ["user"]),
    "rita": ("rita-token-reader-00", ["reader"]),
    "wendy": ("wendy-token-worker-00", ["worker"]),
    "ada": ("ada-token-admin-0000", ["admin"]),
}
"""user -> (token, roles). Bob's entry is stored as a SHA-256, the others in plain."""


def tokens_toml(tokens: dict[str, tuple[str, list[str]]] = TOKENS) -> str:
    entries = []
    for user, (token, roles) in tokens.items():
        secret = (
            f'sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"'
            if user == "bob"
            else f'token = "{token}"'
        )
        entries.append(f'[[token]]\n{secret}\nuser = "{user}"\nroles = {roles!r}\n')
    return "\n".join(entries).replace("'", '"')


@dataclass
class JwtSigner:
    """An RSA key pair; `public_pem` is what the server is given (`jwt_key_file`)."""

    key: rsa.RSAPrivateKey
    public_pem: bytes

    @classmethod
    def new(cls) -> JwtSigner:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(key, public)

    def token(
        self,
        subject: str,
        *,
        expires_in: float = 300,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "sub": subject,
            "iss": issuer,
            "aud": audience,
            "iat": now,
            "exp": now + int(expires_in),
            **claims,
        }
        return jwt.encode(payload, self.key, algorithm="RS256")


@dataclass
class AuthFiles:
    tokens_file: Path
    jwt_key_file: Path
    signer: JwtSigner

    def server_config(self) -> dict[str, Any]:
        """ServerConfig fields that turn authentication on with these files."""
        return {
            "tokens_file": str(self.tokens_file),
            "jwt_key_file": str(self.jwt_key_file),
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
        }


def write_auth_files(directory: Path) -> AuthFiles:
    signer = JwtSigner.new()
    tokens_file = directory / "tokens.toml"
    tokens_file.write_text(tokens_toml())
    key_file = directory / "jwt-public.pem"
    key_file.write_bytes(signer.public_pem)
    return AuthFiles(tokens_file, key_file, signer)
