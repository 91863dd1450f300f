"""Opaque ListTasks page tokens: the last key seen, bound to the request's filters and
order (a token continues the order it was made with, and only that one)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from taskgrove.domain import reasons

from taskgrove_server.errors import invalid_field

MAX_TOKEN_LENGTH = 512
_ORDER_FIELDS = ("create_time",)


def newest_first(order_by: str) -> bool:
    """Whether an AIP-132 `order_by` asks for newest first: "" or "create_time" (oldest
    first), "create_time desc" (newest first); any other is INVALID_ARGUMENT."""
    words = order_by.split()
    if not words:
        return False
    if words[0] in _ORDER_FIELDS and words[1:] in ([], ["asc"], ["desc"]):
        return words[1:] == ["desc"]
    raise invalid_field(
        "order_by",
        reasons.INVALID_ORDER_BY,
        f'cannot order by "{order_by[:100]}": use "create_time" (oldest first, the '
        'default) or "create_time desc" (newest first)',
    )


def _fingerprint(filters: dict[str, object]) -> str:
    encoded = json.dumps(filters, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def encode(after_seq: int, filters: dict[str, object]) -> str:
    payload = {"after": after_seq, "filters": _fingerprint(filters)}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def decode(token: str, filters: dict[str, object]) -> int:
    """The key to continue after; raises INVALID_ARGUMENT for a foreign or altered token."""
    if not token:
        return 0
    after, same_filters = 0, False
    if len(token) <= MAX_TOKEN_LENGTH:
        try:
            payload = json.loads(base64.urlsafe_b64decode(token.encode()))
            after = payload["after"]
            same_filters = payload["filters"] == _fingerprint(filters)
        except (ValueError, KeyError, TypeError, binascii.Error, UnicodeError):
            same_filters = False
    # A key is a stored row's insertion order: a 63-bit integer, not a bool.
    if not same_filters or type(after) is not int or not 0 <= after < 2**63:
        raise invalid_field(
            "page_token",
            reasons.INVALID_PAGE_TOKEN,
            "not a page token of this listing (filters must stay the same)",
        )
    return after
