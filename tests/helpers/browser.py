"""Headless Chromium for the browser tests: Debian's build, driven by Playwright, offline-safe flags."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def playwright_or_skip():
    """Playwright's sync API; skips the calling test module where Chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (scripts/system-deps.sh)", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api")


def launch_chromium(playwright):
    """A headless Chromium browser from Debian's package."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
