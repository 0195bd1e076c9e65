"""Shared fixtures: the real COVID-QU-Ex samples (skipped where absent) and small phantom datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.skips import skipped_groups

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES_ROOT = Path(os.environ.get("CXRMAP_SAMPLES", REPO_ROOT.parent / "shared" / "samples" / "covid-qu-ex"))


@pytest.fixture(scope="session")
def samples_root() -> Path:
    """The folder of real chest X-rays in the COVID-QU-Ex layout; the test is skipped where it is absent."""
    if not (SAMPLES_ROOT / "Infection Segmentation Data").is_dir():
        pytest.skip(f"real samples not found at {SAMPLES_ROOT} (set CXRMAP_SAMPLES to their folder)")
    return SAMPLES_ROOT


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its image cache into a temporary folder, never into the user's cache."""
    monkeypatch.setenv("CXRMAP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests run tiny networks, which gain nothing from threads; one thread also avoids oversubscribing a
    shared CPU (two threads on two busy cores measured many times slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_unconfigure(config):
    """End the run saying which groups of tests were skipped (no Chromium, PostgreSQL or samples) and the
    command that enables each."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    for line in skipped_groups(reporter.stats.get("skipped", [])):
        reporter.write_line(line, yellow=True)
