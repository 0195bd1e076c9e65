"""Streaming files to the network: worker processes decode and resize exactly as the in-process path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrmap.data.io import read_image
from cxrmap.predict import stream as stream_module
from cxrmap.predict.maps import display_image
from cxrmap.predict.predictor import model_input
from cxrmap.predict.stream import default_workers, stream


def _files(folder: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir()
    paths = []
    for i, shape in enumerate([(60, 40), (30, 90), (20, 20)]):
        paths.append(folder / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(paths[-1])
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png" * 3)
    return [paths[0], broken, *paths[1:]]


def test_workers_return_the_in_process_items_in_order_and_errors_not_crashes(tmp_path):
    paths = _files(tmp_path / "data")
    runs = {w: [f for batch in stream(paths, 16, 32, batch_size=2, workers=w) for f in batch] for w in (0, 2)}
    for alone, worker in zip(runs[0], runs[2], strict=True):
        assert alone.index == worker.index and alone.path == worker.path and alone.error == worker.error
        if not alone.error:
            assert np.array_equal(alone.input, worker.input) and np.array_equal(alone.display, worker.display)
    films = runs[2]
    assert [film.index for film in films] == [0, 1, 2, 3]
    assert films[1].input is None and "broken.png" in films[1].error
    image = read_image(paths[2])  # 30 x 90: the display is 11 x 32, the input 16 x 16
    assert np.array_equal(films[2].input, model_input(image, 16)) and films[2].input.shape == (16, 16)
    assert films[2].display.shape == (11, 32) and np.array_equal(films[2].display, display_image(image, 32))
    assert films[3].display.shape == (20, 20)  # already small: kept as it is


@pytest.mark.parametrize(
    ("cores", "processes", "expected"), [(1, 1, 0), (2, 1, 0), (3, 1, 2), (16, 1, 15), (16, 4, 3), (16, 8, 0)]
)
def test_default_workers_leave_a_core_to_compute_and_none_on_two_cores(
    monkeypatch, cores, processes, expected
):
    monkeypatch.setattr(stream_module, "default_threads", lambda: cores)
    assert default_workers(processes) == expected
