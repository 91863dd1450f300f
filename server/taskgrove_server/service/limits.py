"""Bounds on every value a request may carry (DESIGN section 8), checked before anything
is written, so that neither the database nor protobuf ever refuses what was accepted."""

from __future__ import annotations

from typing import Final

MAX_NAME_LENGTH: Final = 255
MAX_USER_ID_LENGTH: Final = 255
MAX_EXECUTOR_LENGTH: Final = 255
MAX_ID_LENGTH: Final = 255
"""Client-local ids of CreateTaskTree; stored ids are 36-character UUIDs."""
MAX_REQUEST_ID_LENGTH: Final = 255
MAX_TREE_DEPTH: Final = 1000
"""Levels from a root down to its deepest task, the root included. Trees organise work
like folders; each create walks up its parent chain (the lineage read, the group rule),
measured at 1 ms under a root, 2.4 ms at level 100 and 7.7 ms at level 1,000, and
clients that nest a tree as JSON need about one stack frame per level."""
MAX_DEPENDENCIES: Final = 1000
"""Per task."""
MAX_ATTEMPTS: Final = 1000
MAX_DURATION_MS: Final = 366 * 24 * 3600 * 1000
"""Longest timeout or retry backoff (a year)."""
MAX_JSON_BYTES: Final = 1024 * 1024
"""Largest `inputs` or `params` (serialised)."""
