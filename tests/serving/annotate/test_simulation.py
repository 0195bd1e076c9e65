"""The full simulation of the paper's workflow with real training (slow: 5-8 minutes on two cores)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("argon2")

from cxrmap.serving.annotate.simulate import SimulationConfig, run_simulation  # noqa: E402


@pytest.mark.slow
def test_simulation_with_real_training(tmp_path):
    config = SimulationConfig(threads=1)
    run_simulation(tmp_path / "sim", config, progress=False, log=None)
    written = json.loads((tmp_path / "sim" / "simulation.json").read_text())
    assert written["exported"] == written["indexed_by_cxrmap_index"] == config.n_images
    assert written["final_dice_manual_subset"] > written["manual_dice"]
    assert 0.0 <= written["machine_share_stage1"] <= 1.0 and 0.0 <= written["machine_share_stage2"] <= 1.0
