"""Fixtures of the browser tests (tests/browser imports them; a conftest.py there would
shadow tests/conftest.py for the modules that import it by name): Debian's headless
Chromium driven by Playwright (never a downloaded browser). Without Chromium or
Playwright the tests skip, unless TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS=1 (CI): then they
fail. Screenshots go to build/artefacts/browser/."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "artefacts" / "browser"

__all__ = ["artefacts", "chromium_path", "page"]


def _missing() -> str:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (apt-get install -y chromium chromium-driver)"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    return ""


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if problem := _missing():
        message = f"{problem}: the browser tests did not run"
        if os.environ.get("TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS") == "1":
            pytest.fail(message + " (TASKGROVE_REQUIRE_CLIENT_TOOLCHAINS=1)")
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
def artefacts() -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS


@pytest.fixture
async def page(chromium_path: Path) -> AsyncIterator[Any]:
    """A fresh page in headless Chromium (one browser per test: nothing shared)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(chromium_path), args=["--no-sandbox"], headless=True
        )
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            opened = await context.new_page()
            opened.set_default_timeout(15_000)
            yield opened
        finally:
            await browser.close()
