"""taskgrove server: gRPC API, execution engine and storage."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
