"""The end of a test run names the groups of tests skipped for want of a system package or data."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

SYSTEM_DEPS = "sudo scripts/system-deps.sh"
SKIP_GROUPS = (
    ("browser", ("chromium", "playwright"), SYSTEM_DEPS),
    ("PostgreSQL", ("postgresql", "'postgres' user"), SYSTEM_DEPS),
    ("real-sample", ("real samples not found",), "CXRMAP_SAMPLES=/path/to/covid-qu-ex make test"),
)
"""Group name, words of its skip reasons (lower case), the one command that enables it."""


def _reason(report) -> str:
    longrepr = report.longrepr
    return str(longrepr[2] if isinstance(longrepr, tuple) else longrepr).lower()


def skipped_groups(reports: Iterable) -> list[str]:
    """One line per group skipped among ``reports`` (pytest's skipped reports), in :data:`SKIP_GROUPS` order.

    A module skipped as a whole counts once.
    """
    counts: Counter[str] = Counter()
    for report in reports:
        reason = _reason(report)
        for name, words, _ in SKIP_GROUPS:
            if any(word in reason for word in words):
                counts[name] += 1
                break
    return [
        f"{name} tests skipped ({counts[name]}); enable them with: {command}"
        for name, _, command in SKIP_GROUPS
        if counts[name]
    ]
