"""``cxrmap predict``'s files: staged and moved into place, never deleted, resumed after an interruption."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrmap.cli.predict import STAGING, run_predict
from cxrmap.core.errors import DataError
from cxrmap.predict.predictor import Predictor
from tests.helpers.checkpoints import write_tiny_checkpoint
from tests.helpers.images import tree_hashes, write_jpeg2000_dicom


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")


def _images(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8)).save(folder / f"cxr{i}.png")
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _predict(images, out, checkpoint, **kwargs):
    kwargs.setdefault("workers", 0)
    return run_predict(images, out, model=checkpoint, batch_size=2, progress=False, **kwargs)


def test_kill_and_resume_ends_with_one_row_per_image(checkpoint, tmp_path, monkeypatch):
    data, out = _images(tmp_path / "data", 5), tmp_path / "out"
    original, calls = Predictor.predict_inputs, []

    def dies_on_the_second_batch(self, inputs, shapes):
        calls.append(len(inputs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, inputs, shapes)

    monkeypatch.setattr(Predictor, "predict_inputs", dies_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        _predict([data], out, checkpoint, workers=1)
    assert not (out / "predictions.csv").exists() and not (out / "maps").exists()
    assert len(_rows(out / STAGING / "part-0.csv")) == 2  # the first batch is kept for the resume
    monkeypatch.setattr(Predictor, "predict_inputs", original)
    assert _predict([data], out, checkpoint) == (3, 5)  # only the 3 images not finished before
    rows = _rows(out / "predictions.csv")
    assert sorted(Path(row["path"]).name for row in rows) == [f"cxr{i}.png" for i in range(5)]
    assert sorted(p.name for p in (out / "maps").iterdir()) == sorted(Path(r["map"]).name for r in rows)
    assert not (out / STAGING).exists()
    assert _predict([data], out, checkpoint) == (0, 5)  # all done: nothing predicted again


def test_new_images_join_the_old_results_without_deleting_them(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    _predict([_images(tmp_path / "a", 2)], out, checkpoint)
    before = tree_hashes(out / "maps")
    other = tmp_path / "b"
    other.mkdir()
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(other / "cxr0.png")  # same name as an old map
    assert _predict([other], out, checkpoint) == (1, 3)
    after = tree_hashes(out / "maps")
    assert all(after[name] == digest for name, digest in before.items()) and len(after) == 3
    rows = _rows(out / "predictions.csv")
    assert len({row["map"] for row in rows}) == 3
    assert "1 image(s), 2 predicted before" in capsys.readouterr().out


def test_every_input_rejected_gives_the_reasons_and_writes_skipped_csv(checkpoint, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    (data / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a png" * 3)
    (data / "b.tif").write_bytes(b"II*\0")
    with pytest.raises(DataError) as caught:
        _predict([data], out, checkpoint)
    message = str(caught.value)
    assert message.startswith(f"no readable images (PNG, JPEG, DICOM) in {data}: 2 file(s) skipped (")
    assert f"{data / 'b.tif'}: .tif images are not read; convert it to PNG" in message
    assert sorted(Path(row["path"]).name for row in _rows(out / "skipped.csv")) == ["a.png", "b.tif"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        DataError, match=r"1 file\(s\) skipped \(.*empty: no PNG, JPEG or DICOM images in this folder"
    ):
        _predict([empty], out, checkpoint)


def test_undecodable_dicoms_only_is_an_error_not_zero_images(checkpoint, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_jpeg2000_dicom(data / "j2k.dcm")
    with pytest.raises(DataError) as caught:
        _predict([data], out, checkpoint)
    assert str(caught.value).startswith("none of the 1 image file(s) could be decoded (")
    assert "JPEG 2000" in str(caught.value)
    assert [Path(row["path"]).name for row in _rows(out / "skipped.csv")] == ["j2k.dcm"]
    assert not (out / "predictions.csv").exists() and not (out / STAGING).exists()


def test_out_naming_a_file_is_refused(checkpoint, tmp_path):
    out = tmp_path / "out.csv"
    out.write_text("keep me")
    with pytest.raises(DataError, match=f"--out {out} is a file; give a folder"):
        _predict([_images(tmp_path / "d", 1)], out, checkpoint)
    assert out.read_text() == "keep me"


def _table(out: Path) -> list[dict[str, str]]:
    return sorted(_rows(out / "predictions.csv"), key=lambda row: row["path"])


def test_decoding_workers_give_the_rows_and_maps_of_the_in_process_path(checkpoint, tmp_path):
    data = _images(tmp_path / "data", 5)
    write_jpeg2000_dicom(data / "j2k.dcm")  # a valid header: found, then undecodable in a worker
    _predict([data], tmp_path / "alone", checkpoint, workers=0)
    assert _predict([data], tmp_path / "two", checkpoint, workers=2) == (5, 5)
    assert _table(tmp_path / "two") == _table(tmp_path / "alone")
    assert tree_hashes(tmp_path / "two" / "maps") == tree_hashes(tmp_path / "alone" / "maps")
    skipped = _rows(tmp_path / "two" / "skipped.csv")
    assert [Path(row["path"]).name for row in skipped] == ["j2k.dcm"] and "JPEG 2000" in skipped[0]["reason"]


def test_map_side_sets_the_map_size_not_the_figures(checkpoint, tmp_path):
    data = _images(tmp_path / "data", 2)  # 48 x 40 images
    sizes = {}
    for side in (16, 0, 100):
        out = tmp_path / f"side{side}"
        _predict([data], out, checkpoint, map_side=side)
        sizes[side] = {
            np.asarray(Image.open(out / row["map"])).shape for row in _rows(out / "predictions.csv")
        }
    assert sizes == {16: {(16, 13, 3)}, 0: {(48, 40, 3)}, 100: {(48, 40, 3)}}  # 40 * 16 / 48 = 13.3
    figures = [[{k: v for k, v in row.items()} for row in _table(tmp_path / f"side{s}")] for s in (16, 0)]
    assert figures[0] == figures[1]


def test_torchrun_two_processes_predict_each_image_once(checkpoint, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    data, out = _images(tmp_path / "data", 5), tmp_path / "out"
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
        "-m", "cxrmap", "predict", str(data), "--model", str(checkpoint), "--out", str(out),
        "--batch-size", "2", "--workers", "0", "--quiet",
    ]  # fmt: skip
    source = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": source}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(out / "predictions.csv")
    assert sorted(Path(row["path"]).name for row in rows) == [f"cxr{i}.png" for i in range(5)]
    assert sorted(p.name for p in (out / "maps").iterdir()) == sorted(Path(r["map"]).name for r in rows)
    assert not (out / STAGING).exists()
    assert done.stdout.count("5 image(s)") == 1  # one summary, from rank 0
