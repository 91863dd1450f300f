"""JWTs signed by a configured key (PEM, or an HMAC secret) or a JWKS file's keys.

The subject (`sub`) is the user; a `roles` claim (a list) gives roles, of which the
known ones count (none known: `user`). Expiry is required; issuer and audience are
checked when configured. Clocks may differ by `LEEWAY_S`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from taskgrove_server.auth.config_error import AuthConfigError
from taskgrove_server.identity import ROLES, USER, Caller

LEEWAY_S = 30
_HMAC = ("HS256", "HS384", "HS512")


class JwtConfigError(AuthConfigError):
    """The key or JWKS file cannot be used."""


class JwtRejected(Exception):
    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class JwtVerifier:
    def __init__(
        self,
        *,
        key_file: str = "",
        jwks_file: str = "",
        issuer: str = "",
        audience: str = "",
        algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA"),
    ) -> None:
        self._algorithms = list(algorithms)
        self._issuer = issuer or None
        self._audience = audience or None
        self._key: Any = None
        self._jwks: jwt.PyJWKSet | None = None
        try:
            if key_file:
                text = Path(key_file).read_text()
                # Parsed now, so that a wrong file stops the start instead of every call.
                hmac_only = set(self._algorithms) <= set(_HMAC)
                self._key = text.strip() if hmac_only else load_pem_public_key(text.encode())
            if jwks_file:
                self._jwks = jwt.PyJWKSet.from_json(Path(jwks_file).read_text())
        except (OSError, ValueError, TypeError, jwt.PyJWKSetError) as error:
            raise JwtConfigError(f"JWT keys: {error}") from None

    def verify(self, token: str) -> Caller:
        try:
            key = self._key_for(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as error:
            raise JwtRejected(str(error), expired=True) from None
        except jwt.ImmatureSignatureError as error:
            # Not yet valid (`nbf`/`iat` ahead of our clock): a fresh token will not help.
            raise JwtRejected(f"invalid JWT: {error}") from None
        except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError) as error:
            raise JwtRejected(f"invalid JWT: {error}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255:
            raise JwtRejected("invalid JWT: `sub` must be a string of 1 to 255 characters")
        roles = claims.get("roles", [])
        known = (
            {r for r in roles if isinstance(r, str)} & ROLES if isinstance(roles, list) else set()
        )
        return Caller(user=subject, roles=frozenset(known or {USER}))

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._jwks.keys:
            if key.key_id == kid:
                return key.key
        if self._key is not None:
            return self._key
        raise jwt.InvalidTokenError(f"no key with kid {str(kid)[:64]!r}")
