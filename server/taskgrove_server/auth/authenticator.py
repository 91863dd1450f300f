"""From what a call presents (an `authorization` header, a verified client certificate)
to the `Caller` it is, or an `AuthError` saying why not."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from taskgrove.domain import reasons

from taskgrove_server.auth.config_error import AuthConfigError
from taskgrove_server.auth.jwt_verifier import JwtRejected, JwtVerifier
from taskgrove_server.auth.tokens import TokenTable
from taskgrove_server.config import ServerConfig
from taskgrove_server.identity import Caller

log = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 8192
"""Longer credentials are refused unread (a JWT with many claims stays well within)."""


MAX_USER_LENGTH = 255
"""A user named by a certificate must fit where owners are stored."""


class AuthError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Authenticator:
    """The credentials the server accepts, loaded from the configuration's files;
    `reload()` (on SIGHUP) swaps them at once, or keeps the old ones if a file is bad."""

    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._tokens, self._jwt = self._load()

    def _load(self) -> tuple[TokenTable, JwtVerifier | None]:
        config = self._config
        tokens = TokenTable.load(config.tokens_file) if config.tokens_file else TokenTable()
        verifier = None
        if config.jwt_key_file or config.jwt_jwks_file:
            verifier = JwtVerifier(
                key_file=config.jwt_key_file,
                jwks_file=config.jwt_jwks_file,
                issuer=config.jwt_issuer,
                audience=config.jwt_audience,
                algorithms=config.jwt_algorithms,
            )
        return tokens, verifier

    def reload(self) -> bool:
        """Read the files again; False (logged) if one is bad: the old ones stay."""
        try:
            self._tokens, self._jwt = self._load()
        except AuthConfigError as error:
            log.error("credentials not reloaded, the previous ones stay: %s", error)
            return False
        log.info("credentials reloaded")
        return True

    def authenticate(
        self, authorization: Sequence[str], certificate_name: str | None = None
    ) -> Caller:
        """`authorization`: the values of the call's `authorization` headers;
        `certificate_name`: the common name of a client certificate TLS verified."""
        if len(authorization) > 1:
            raise AuthError(reasons.INVALID_CREDENTIALS, "more than one authorization header")
        if not authorization:
            if certificate_name:
                found = self._tokens.caller_for_certificate(certificate_name)
                if found is None and len(certificate_name) > MAX_USER_LENGTH:
                    raise AuthError(
                        reasons.INVALID_CREDENTIALS, "the certificate's common name is too long"
                    )
                return found or Caller(user=certificate_name)
            raise AuthError(
                reasons.AUTHENTICATION_REQUIRED,
                "this server requires authentication: send `authorization: Bearer <token>`",
            )
        scheme, _, token = authorization[0].partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                reasons.INVALID_CREDENTIALS, "the authorization header must be `Bearer <token>`"
            )
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(reasons.INVALID_CREDENTIALS, "the token is too long")
        found = self._tokens.caller_for_token(token)
        if found is not None:
            return found
        if self._jwt is not None and token.count(".") == 2:
            try:
                return self._jwt.verify(token)
            except JwtRejected as rejected:
                reason = (
                    reasons.CREDENTIALS_EXPIRED if rejected.expired else reasons.INVALID_CREDENTIALS
                )
                raise AuthError(reason, str(rejected)[:200]) from None
        raise AuthError(reasons.INVALID_CREDENTIALS, "the token is not valid")
