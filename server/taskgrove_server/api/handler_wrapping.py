"""Interceptors that wrap a method's handler (to observe or to guard its calls) wrap it
once: the handler a method finds is the same object call after call, and wrapping it
anew cost every call ~10 us per interceptor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_BEHAVIORS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class WrappedHandlers:
    """Per method, the last handler found and its wrapped copy: a different handler (an
    inner interceptor may answer one call with its own) is wrapped afresh, never given
    another's copy. As many entries as the services have methods (a method without a
    handler never gets here)."""

    def __init__(self, wrap: Callable[[str, Any], Any]) -> None:
        self._wrap = wrap
        """(method, behavior) -> the behavior wrapped; it must keep no state of a call."""
        self._known: dict[str, tuple[Any, Any]] = {}

    def of(self, method: str, handler: Any) -> Any:
        known = self._known.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        changes = {
            name: self._wrap(method, getattr(handler, name))
            for name in _BEHAVIORS
            if getattr(handler, name) is not None
        }
        wrapped = handler._replace(**changes)
        self._known[method] = (handler, wrapped)
        return wrapped
