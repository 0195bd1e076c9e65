"""Help texts of the training commands: they quote the presets' own settings, so they cannot drift."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from cxrmap.cli import app
from cxrmap.train.presets import PRESET_USES, PRESETS


def _helps(command: str) -> dict[str, str]:
    group = typer.main.get_command(app)
    return {param.name: param.help or "" for param in group.commands[command].params}


@pytest.mark.parametrize(
    ("command", "settings"),
    [
        ("train", ("epochs", "batch_size", "size", "lr")),
        ("cv", ("folds", "epochs", "batch_size", "size", "lr")),
        ("run", ("folds", "epochs", "size")),
    ],
)
def test_help_quotes_every_presets_value(command, settings):
    helps = _helps(command)
    for name in settings:
        for preset, config in PRESETS.items():
            value = getattr(config, name)
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            assert f"{preset}: {shown}" in helps[name], (command, name, preset)
    for preset in PRESETS:
        assert f"{preset} ({PRESET_USES[preset]})" in helps["preset"]
    assert set(PRESET_USES) == set(PRESETS)


def test_quick_preset_values_in_the_train_help():
    helps = _helps("train")
    assert "(paper: 50, quick: 9)" in helps["epochs"] and "(paper: 0.0001, quick: 0.001)" in helps["lr"]


def test_the_command_line_loads_without_torch():
    code = "import sys, cxrmap.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
