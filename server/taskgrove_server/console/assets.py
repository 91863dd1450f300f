"""The built console (client/web, bundled by `make web` into ./static): read once at start
and served from memory. Only these files exist; any other path is 404."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    kind: str
    body: bytes


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """URL path -> asset; `/` is index.html (the console routes in the URL's fragment)."""
    found: dict[str, Asset] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in _TYPES:
            found[f"/{path.name}"] = Asset(_TYPES[path.suffix], path.read_bytes())
    if "/index.html" in found:
        found["/"] = found["/index.html"]
    return found
