"""Opaque ListTasks page tokens: the last key seen, bound to the request's filters."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from taskgrove_server.errors import FieldViolation, invalid


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
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        after = int(payload["after"])
        same_filters = payload["filters"] == _fingerprint(filters)
    except (ValueError, KeyError, TypeError, binascii.Error):
        same_filters, after = False, 0
    if not same_filters:
        raise invalid(
            [
                FieldViolation(
                    "page_token",
                    "not a page token of this listing (filters must stay the same)",
                    "INVALID_PAGE_TOKEN",
                )
            ]
        )
    return after
