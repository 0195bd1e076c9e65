"""``cxrmap train`` refuses a manifest whose rows point at missing images, unless --skip-missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cxrmap.cli import main
from cxrmap.core.errors import DataError
from cxrmap.data.manifest import require_images, write_manifest
from tests.helpers.images import write_png


def _manifest(tmp_path, n: int = 6, missing: int = 0):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = tmp_path / "images" / f"{i}.png"
        if i >= missing:
            write_png(path, rng.integers(0, 256, (64, 64), dtype=np.uint8))
        rows.append({"image_path": str(path), "label": "control", "group": "I", "source": "test"})
    return write_manifest(rows, tmp_path / "manifest.csv"), rows


def test_missing_images_are_named_and_refused(tmp_path, capsys, monkeypatch):
    path, rows = _manifest(tmp_path, missing=4)
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["cxrmap", "train", "--manifest", str(path), "--out", str(out), "-q"])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == 2
    error = capsys.readouterr().err
    first = ", ".join(row["image_path"] for row in rows[:3])
    assert error.startswith(
        f"error: manifest {path}: 4 of 6 rows point at images that do not exist ({first}, ...); "
        "index the data again with `cxrmap index`, or pass --skip-missing to use the other rows"
    )
    assert not out.exists()


def test_skip_missing_keeps_the_other_rows_and_refuses_when_none_is_left(tmp_path):
    import pandas as pd

    _, rows = _manifest(tmp_path, n=3, missing=1)
    frame = pd.DataFrame(rows)
    kept = require_images(frame, "m.csv", skip_missing=True)
    assert list(kept["image_path"]) == [rows[1]["image_path"], rows[2]["image_path"]]
    with pytest.raises(DataError, match="3 of 3 rows point at images that do not exist.*no row is left"):
        require_images(
            pd.DataFrame(rows).assign(image_path=lambda f: f["image_path"] + ".gone"),
            "m.csv",
            skip_missing=True,
        )
