"""Which storage errors are the storage's (full, locked, unreachable: retry later) and
which are the data's (refused for good)."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc

# Errors of the storage, not of the data: the same batch may commit later.
_TRANSIENT_MESSAGES = (
    "disk is full",
    "disk i/o error",
    "database is locked",
    "unable to open database",
    "readonly database",
    "no space left",
    "connection",
    "starting up",
    "shutting down",
    "timeout",
    "timed out",
)


def is_transient(error: BaseException) -> bool:
    """Whether `error` is the storage's (full, locked, unreachable), not the data's."""
    if isinstance(error, sa_exc.TimeoutError):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | OSError):
        text = str(error).lower()
        return any(marker in text for marker in _TRANSIENT_MESSAGES)
    return False
