"""Authentication: credentials in, a `Caller` out (no gRPC here; api/ reads the metadata)."""

from taskgrove_server.auth.authenticator import Authenticator, AuthError
from taskgrove_server.auth.config_error import AuthConfigError
from taskgrove_server.auth.tokens import TokenTable

__all__ = ["AuthConfigError", "AuthError", "Authenticator", "TokenTable"]
