"""The line that ends a test run: which groups were skipped and the command that enables each."""

from __future__ import annotations

from types import SimpleNamespace

from tests.helpers.skips import skipped_groups


def _skip(reason: str) -> SimpleNamespace:
    return SimpleNamespace(longrepr=("tests/x.py", 1, f"Skipped: {reason}"))


def test_skips_are_grouped_with_the_command_that_enables_them():
    reports = [
        _skip("/usr/bin/chromium is not installed (apt-get install chromium)"),
        _skip("PostgreSQL server binaries not installed (apt-get install postgresql)"),
        _skip("could not import 'playwright.sync_api': No module named 'playwright'"),
        _skip("real samples not found at /x (set CXRMAP_SAMPLES to their folder)"),
        _skip("needs a GPU"),  # no group: not listed
    ]
    assert skipped_groups(reports) == [
        "browser tests skipped (2); enable them with: sudo scripts/system-deps.sh",
        "PostgreSQL tests skipped (1); enable them with: sudo scripts/system-deps.sh",
        "real-sample tests skipped (1); enable them with: CXRMAP_SAMPLES=/path/to/covid-qu-ex make test",
    ]
    assert skipped_groups([_skip("needs a GPU")]) == []
