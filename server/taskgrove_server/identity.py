"""Who is calling: the identity authentication established, and what it may do.

Every room below the API receives a `Caller` as a plain value; how it was established
(a bearer token, a JWT, a client certificate) stays in `auth/` and `api/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

USER: Final = "user"
"""Creates tasks and reads and steers its own (the role of a caller given none)."""
ADMIN: Final = "admin"
"""Reads and steers every user's tasks, and may create them for any user."""
READER: Final = "reader"
"""Reads and watches every user's tasks; changes nothing."""
WORKER: Final = "worker"
"""Connects workers only (WorkerService); no TaskService call."""
ROLES: Final = frozenset({USER, ADMIN, READER, WORKER})


@dataclass(frozen=True, slots=True)
class Caller:
    user: str
    """The authenticated user; empty when authentication is off."""
    roles: frozenset[str] = frozenset({USER})
    authenticated: bool = True

    @property
    def may_read(self) -> bool:
        return not self.authenticated or bool(self.roles & {USER, ADMIN, READER})

    @property
    def may_write(self) -> bool:
        return not self.authenticated or bool(self.roles & {USER, ADMIN})

    @property
    def may_serve(self) -> bool:
        """Whether the caller may connect a worker (WorkerService)."""
        return not self.authenticated or bool(self.roles & {WORKER, ADMIN})

    @property
    def read_scope(self) -> str | None:
        """The only owner whose tasks this caller may read, or None for every owner."""
        if not self.authenticated or self.roles & {ADMIN, READER}:
            return None
        return self.user

    @property
    def write_scope(self) -> str | None:
        """The only owner whose tasks this caller may change or refer to (as a parent or
        a dependency), or None for every owner."""
        if not self.authenticated or ADMIN in self.roles:
            return None
        return self.user

    def reads(self, owner: str) -> bool:
        return self.read_scope in (None, owner)

    def writes(self, owner: str) -> bool:
        return self.write_scope in (None, owner)


ANONYMOUS: Final = Caller(user="", roles=frozenset({ADMIN}), authenticated=False)
"""Every caller while authentication is off (the trusted-loopback default)."""
