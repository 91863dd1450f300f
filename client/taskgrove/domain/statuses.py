"""Task statuses: the strings the SDK shows and the server stores."""

from __future__ import annotations

from typing import Final

PENDING: Final = "pending"
IN_PROGRESS: Final = "in_progress"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

ALL: Final = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
TERMINAL: Final = frozenset({COMPLETED, FAILED, CANCELLED})
