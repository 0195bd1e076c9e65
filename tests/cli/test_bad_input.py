"""Bad input to every command, through ``cxrmap.cli.main()``: exit code 2, one ``error:`` line naming the
problem, no traceback, and nothing already in the output folder changed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrmap.cli import main
from cxrmap.data.manifest import write_manifest
from cxrmap.predict.predictor import FIELDS
from tests.helpers.checkpoints import write_tiny_checkpoint
from tests.helpers.images import tree_hashes, write_jpeg2000_dicom, write_png


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Inputs shared by the cases: a checkpoint, manifests good and bad, images, a COVID-QU-Ex root."""
    root = tmp_path_factory.mktemp("inputs")
    image = write_png(root / "images" / "cxr.png", np.full((64, 64), 100, np.uint8))
    rows = [{"image_path": str(image), "label": "control", "group": "I"}]
    rows += [{"image_path": str(root / f"gone{i}.png"), "label": "covid", "group": "covid"} for i in range(5)]
    (root / "empty.csv").write_text("")
    (root / "binary.csv").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)))
    (root / "rejected").mkdir()
    (root / "rejected" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (root / "empty-folder").mkdir()
    qu_ex = root / "qu-ex" / "Infection Segmentation Data" / "Train" / "COVID-19"
    for kind in ("images", "infection masks", "lung masks"):
        (qu_ex / kind).mkdir(parents=True)
    return {
        "model": write_tiny_checkpoint(root / "model.pt"),
        "good": write_manifest(rows[:1], root / "good.csv"),
        "missing": write_manifest(rows, root / "missing.csv"),
        "empty": root / "empty.csv",
        "binary": root / "binary.csv",
        "image": image,
        "rejected": root / "rejected",
        "empty-folder": root / "empty-folder",
        "j2k": write_jpeg2000_dicom(root / "j2k" / "x.dcm").parent,
        "qu-ex": root / "qu-ex",
        "a-file": image,
    }


def _case(command: str, expect: str):
    return pytest.param(command.split(), expect, id=f"{command[:60]} -> {expect[:30]}")


TRAIN = "train --manifest {good} --out {out}"
PREDICT = "predict --model {model} --out {out} -q"
CASES = [
    _case("phantom {out} -q --size 100000", "100000x100000 phantom image needs about"),
    _case("phantom {qu-ex} -q --n-covid 2 --n-control 0", "holds a real data set"),
    _case("phantom {a-file} -q", "OUT {a-file} is a file; give a folder"),
    _case("phantom --out {a-file} -q", "--out {a-file} is a file; give a folder"),
    _case("index {qu-ex} --out {out}/m.csv --folds -1", "--folds -1: cross-validation needs at least 2"),
    _case("index {qu-ex} --out {out} -q", "is a folder; give the manifest's file name"),
    _case(f"{TRAIN} --device gpu0", "--device 'gpu0' is not a device"),
    _case(f"{TRAIN} --workers -1", "'--workers'"),
    _case(f"{TRAIN} --encoder bogus", "--encoder: unknown encoder 'bogus'"),
    _case(f"{TRAIN} --arch segnet", "--arch 'segnet' is no architecture"),
    _case(f"{TRAIN} --size 100", "--size 100 is not a network input side"),
    _case("train --manifest {empty} --out {out}", "manifest {empty} is empty"),
    _case("train --manifest {binary} --out {out}", "is not a text CSV"),
    _case("train --manifest {missing} --out {out} -q", "5 of 6 rows point at images that do not exist"),
    _case("train --manifest {good} --out {a-file}", "--out {a-file} is a file"),
    _case("evaluate --model {model} --manifest {binary} --out {out}", "is not a text CSV"),
    _case("cv --manifest {good} --out {out} --folds 1", "'--folds'"),
    _case("cv --manifest {good} --out {out} --encoders resnet18,bogus", "unknown encoder 'bogus'"),
    _case("run --out {out} --encoder bogus", "--encoder: unknown encoder 'bogus'"),
    _case("run --out {out} --classifiers densenet121,nope", "--classifiers: unknown encoder 'nope'"),
    _case("run --out {out} --size 100", "--size 100 is not a network input side"),
    _case("run --out {out} --folds 1", "'--folds'"),
    _case("run --out {out} --device tpu", "--device 'tpu' is not a device"),
    _case("predict {image} --model {model} --out {a-file}", "--out {a-file} is a file"),
    _case(f"{PREDICT} {{image}} --device bogus", "--device 'bogus' is not a device"),
    _case(f"{PREDICT} {{rejected}}", "1 file(s) skipped ({rejected}/a.png: "),
    _case(f"{PREDICT} {{empty-folder}}", "no PNG, JPEG or DICOM images in this folder"),
    _case(f"{PREDICT} {{j2k}}", "none of the 1 image file(s) could be decoded"),
    _case("models --arch segnet --csv", "--arch 'segnet' is no architecture"),
    _case("serve --model {model} --device cuda:7", "--device cuda:7"),
    _case("serve --model {model} --backend bogus", "unknown inference backend 'bogus'"),
    _case("serve --model {model} --batch-size 0", "'--batch-size'"),
]
if not torch.cuda.is_available():
    CASES.append(_case(f"{TRAIN} --device cuda", "--device cuda: this machine has no usable CUDA GPU"))


@pytest.mark.parametrize(("argv", "expect"), CASES)
def test_bad_input_is_one_clear_error(argv, expect, files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    write_png(out / "maps" / "old.png", np.zeros((4, 4), np.uint8))
    header = ",".join(["path", "map", *FIELDS])
    (out / "predictions.csv").write_text(f"{header}\n/old.png,maps/old.png{',' * len(FIELDS)}\n")
    (out / "keep.txt").write_text("results of an earlier run")
    before = tree_hashes(out)
    names = {key: str(value) for key, value in files.items()} | {"out": str(out)}
    monkeypatch.setattr(sys, "argv", ["cxrmap", *(arg.format_map(names) for arg in argv)])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as caught:
        main()
    captured = capsys.readouterr()
    assert caught.value.code == 2, captured
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert expect.format_map(names) in errors[0]
    assert "Traceback" not in captured.out + captured.err
    after = tree_hashes(out)
    assert {name: after.get(name) for name in before} == before
