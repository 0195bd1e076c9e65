"""Training: a tiny model learns, a killed run resumes exactly, torchrun with 2 processes, bad settings."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from cxrmap.core.distributed import EpochPlan
from cxrmap.core.errors import CheckpointError, DataError, ModelError
from cxrmap.data.cache import build_cache
from cxrmap.evaluate.evaluation import validation
from cxrmap.train import get_preset, load_checkpoint, load_model, train

TINY = get_preset("quick").replace(
    encoder="resnet18", size=64, batch_size=4, epochs=2, lr=3e-3, amp="off", schedule="cosine", augment=False
)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A dozen 64 px phantom images (6 COVID-19, 6 controls) with lung masks, and their manifest."""
    from cxrmap.data.phantom.shapes import generate
    from cxrmap.data.readers import index_dataset

    root = generate(
        tmp_path_factory.mktemp("phantom"), n_covid=6, n_control=6, size=64, seed=0, progress=False
    )
    return index_dataset(root, progress=False).manifest


@pytest.fixture()
def cache(phantom, tmp_path):
    return build_cache(phantom, 64, cache_dir=tmp_path / "cache", progress=False)


def _weights(path) -> dict:
    return load_checkpoint(path)["model"]


def test_epoch_plan_shards_like_distributed_sampler():
    plans = [EpochPlan(10, 2, seed=1, epoch=3, rank=r, world_size=3) for r in range(3)]
    shards = [sum(p.batches, []) for p in plans]
    assert [len(s) for s in shards] == [4, 4, 4]  # 10 padded to 12 by wrapping around
    assert set(sum(shards, [])) == set(range(10))
    assert EpochPlan(10, 2, 1, 3).batches != EpochPlan(10, 2, 1, 4).batches  # reshuffled each epoch
    assert EpochPlan(10, 2, 1, 3).batches == EpochPlan(10, 2, 1, 3).batches  # same seed, same plan
    assert [len(b) for b in EpochPlan(9, 4, 0, 0, drop_single=True)] == [4, 4]  # no batch of one


def test_resume_after_kill_equals_uninterrupted(cache, tmp_path):
    config = dataclasses.replace(TINY, deterministic=True, augment=True)  # augmentations replay exactly too
    rows = np.array([0, 1, 2, 3, 6, 7])  # 4 controls, 2 COVID-19 (repeated to 4 by balancing)
    whole = train(config, cache, rows, validation(cache, [8, 9]), tmp_path / "whole", progress=False)

    class Killed(Exception):
        pass

    def kill(epoch, entry):
        if epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train(
            config,
            cache,
            rows,
            validation(cache, [8, 9]),
            tmp_path / "cut",
            progress=False,
            on_epoch_end=kill,
        )
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    assert not (tmp_path / "cut" / "model.pt").exists()
    resumed = train(
        config, cache, rows, validation(cache, [8, 9]), tmp_path / "cut", resume=True, progress=False
    )

    a, b = _weights(whole.model_path), _weights(resumed.model_path)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in whole.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip
    assert len(pd.read_csv(tmp_path / "cut" / "history.csv")) == 2
    last = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert last["epoch"] == 2 and last["plan"]["epoch"] == 2
    assert set(last["rng"]) >= {"torch", "numpy", "python"}
    assert {"optimizer", "scheduler", "history"} <= set(last)
    # resuming with other settings, or into another architecture, is refused
    with pytest.raises(CheckpointError, match="batch_size"):
        train(config.replace(batch_size=2, epochs=3), cache, rows, None, tmp_path / "cut", resume=True,
              progress=False)  # fmt: skip
    with pytest.raises(CheckpointError, match="another model"):
        train(config.replace(arch="unetplusplus", epochs=3), cache, rows, None, tmp_path / "cut", resume=True,
              progress=False)  # fmt: skip


def test_resume_every_writes_last_when_due_and_at_the_end_and_resumes(cache, tmp_path, monkeypatch):
    """With ``resume_every=60`` and epochs 35 s apart, ``last.pt`` is written after epochs 3 and 5 only; a
    run killed after epoch 4 resumes from epoch 3 and ends with the weights of the uninterrupted run."""
    import time
    import types

    from cxrmap.train import loop

    config = dataclasses.replace(TINY, epochs=5, deterministic=True, augment=True)
    rows = np.array([0, 1, 2, 3, 6, 7])
    clock = [0.0]
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(monotonic=lambda: clock[0],
                                                            perf_counter=time.perf_counter))  # fmt: skip

    class Killed(Exception):
        pass

    def run(out, kill_at=None):
        clock[0], seen = 0.0, []

        def on_epoch_end(epoch, entry):
            last = out / "last.pt"
            seen.append(load_checkpoint(last)["epoch"] if last.is_file() else None)
            clock[0] += 35.0
            if epoch == kill_at:
                raise Killed

        train(config, cache, rows, None, out, progress=False, on_epoch_end=on_epoch_end, resume_every=60)
        return seen

    assert run(tmp_path / "whole") == [None, None, 3, 3, 5]  # due at 70 s (epoch 3), then the final epoch
    with pytest.raises(Killed):
        run(tmp_path / "cut", kill_at=4)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 3
    assert not (tmp_path / "cut" / "model.pt").exists()
    resumed = train(config, cache, rows, None, tmp_path / "cut", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
    a, b = _weights(tmp_path / "whole" / "model.pt"), _weights(resumed.model_path)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_adam_is_fused_on_cpu_and_updates_as_the_per_tensor_loop(cache, tmp_path, monkeypatch):
    """The loop's Adam runs fused on a CPU; its weights after two steps match torch's per-tensor Adam's
    within float rounding (each step moves a weight by about lr = 3e-3, the two differ by far less)."""
    from cxrmap.train import loop

    config = TINY.replace(epochs=1, deterministic=True)
    rows = np.array([0, 1, 2, 3, 6, 7, 8, 9])  # two batches of 4
    fused = train(config, cache, rows, None, tmp_path / "fused", progress=False)
    assert load_checkpoint(fused.last_path)["optimizer"]["param_groups"][0]["fused"] is True
    monkeypatch.setattr(loop, "FUSED_ADAM_DEVICES", ())
    plain = train(config, cache, rows, None, tmp_path / "plain", progress=False)
    assert not load_checkpoint(plain.last_path)["optimizer"]["param_groups"][0]["fused"]
    a, b, start = _weights(fused.model_path), _weights(plain.model_path), _untrained(config).state_dict()
    moved = max((b[k].float() - start[k].float()).abs().max().item() for k in b if k.endswith("weight"))
    apart = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert moved > 1e-3 and apart < 1e-4


def test_checkpoint_metadata(cache, tmp_path):
    result = train(
        TINY.replace(epochs=1), cache, np.arange(12), validation(cache, [0, 11]), tmp_path, progress=False
    )
    model, meta = load_model(result.model_path)
    assert meta.task == "segmentation" and meta == result.meta.replace(
        provenance={"created": meta.provenance.created}
    )
    assert meta.channels == ("infection", "lung") and meta.model["classes"] == 2
    assert meta.input_size == 64 and meta.threshold == 0.5 and meta.data.kind == "phantom"
    assert meta.data.description.startswith("phantom: 12 images (6 COVID-19, 6 control)")
    assert meta.provenance.config["encoder"] == "resnet18" and meta.provenance.preset == "quick"
    assert {"f1", "sensitivity", "detection_sensitivity"} <= set(meta.metrics)
    assert result.best_path is not None and result.best_path.is_file()
    assert (tmp_path / "history.csv").is_file() and any((tmp_path / "tensorboard").iterdir())
    assert model(torch.rand(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_bad_settings_raise_clear_errors(cache, phantom, tmp_path):
    with pytest.raises(ModelError, match="64 or 96"):
        train(TINY.replace(size=80), build_cache(phantom, 80, cache_dir=tmp_path / "c80", progress=False),
              np.arange(12), out_dir=tmp_path / "a", progress=False)  # fmt: skip
    with pytest.raises(ModelError, match="cache holds 64px"):
        train(TINY.replace(size=96), cache, np.arange(12), out_dir=tmp_path / "b", progress=False)
    with pytest.raises(ModelError, match="larger than the 4 training images"):
        train(TINY.replace(batch_size=8), cache, [0, 1, 6, 7], out_dir=tmp_path / "c", progress=False)
    with pytest.raises(ModelError, match="batch of 1"):
        train(TINY.replace(batch_size=1), cache, np.arange(12), out_dir=tmp_path / "d", progress=False)
    with pytest.raises(ModelError, match="positive"):
        TINY.replace(batch_size=0)
    with pytest.raises(ModelError, match="lung_weight"):
        TINY.replace(lung_weight=-0.5)
    assert not any(tmp_path.glob("*/last.pt"))


def test_covid_rows_without_masks(phantom, tmp_path):
    covid = phantom["label"] == "covid"
    unmasked = phantom.copy()
    unmasked.loc[covid, "mask_path"] = ""
    cache = build_cache(unmasked, 64, cache_dir=tmp_path / "c1", progress=False)
    with pytest.raises(
        DataError, match=r"6 of the 6 COVID-19 training images have no infection mask \(.*covid_"
    ):
        train(TINY, cache, np.arange(12), out_dir=tmp_path / "a", progress=False)
    partly = phantom.copy()
    partly.loc[partly.index[covid][:2], "mask_path"] = ""
    cache = build_cache(partly, 64, cache_dir=tmp_path / "c2", progress=False)
    with pytest.warns(UserWarning, match="2 of the 6 COVID-19 training images have no infection mask"):
        result = train(TINY.replace(epochs=1), cache, np.arange(12), out_dir=tmp_path / "b", progress=False)
    assert "10 images (4 COVID-19, 6 control)" in result.meta.data.description


def test_no_lung_masks_gives_one_channel(phantom, tmp_path):
    cache = build_cache(phantom.assign(lung_mask_path=""), 64, cache_dir=tmp_path / "c", progress=False)
    result = train(TINY.replace(epochs=1), cache, np.arange(12), out_dir=tmp_path, progress=False)
    assert result.meta.channels == ("infection",) and result.meta.model["classes"] == 1


def test_lung_weight_zero_leaves_the_lung_channel_untrained(cache, tmp_path):
    config = TINY.replace(epochs=1, lung_weight=0.0)
    result = train(config, cache, np.arange(12), out_dir=tmp_path, progress=False)
    before, after = _untrained(config).state_dict(), _weights(result.model_path)
    for key in ("head.weight", "head.bias"):  # output channels: 0 infection, 1 lung
        assert not torch.equal(after[key][0], before[key][0])
        assert torch.equal(after[key][1], before[key][1])  # no gradient reaches it, so Adam leaves it


def test_torchrun_two_processes_write_one_checkpoint(phantom, tmp_path):
    from cxrmap.data.manifest import write_manifest

    manifest = write_manifest(phantom, tmp_path / "manifest.csv")
    build_cache(phantom, 64, progress=False)  # built once here; both processes find it ($CXRMAP_CACHE)
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "cxrmap", "train", "--manifest", str(manifest), "--out", str(out), "--encoder", "resnet18",
        "--size", "64", "--batch-size", "4", "--epochs", "1", "--amp", "off", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.pt")) == ["last.pt", "model.pt"]
    assert not list(out.glob(".*.tmp"))
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1]
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 1 and state["meta"].provenance.config["batch_size"] == 4


@pytest.mark.slow
def test_tiny_model_learns(cache, tmp_path):
    """U-Net + ResNet-18 at 64 px on 6 phantom COVID-19 images: the loss falls, infected pixels are learnt."""
    from cxrmap.evaluate.evaluation import evaluate_model

    covid = np.flatnonzero(cache.manifest["label"].to_numpy() == "covid")
    config = TINY.replace(epochs=20, batch_size=3, schedule="cosine")
    result = train(config, cache, covid, out_dir=tmp_path, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    model, _ = load_model(result.model_path)
    before = evaluate_model(_untrained(config), cache, covid, progress=False).metrics()["segmentation"]
    after = evaluate_model(model, cache, covid, progress=False).metrics()["segmentation"]
    assert after["f1"] > 0.6 and after["f1"] > before["f1"] + 0.3


def _untrained(config):
    from cxrmap.models import create_model

    torch.manual_seed(config.seed)
    return create_model(config.arch, config.encoder, classes=2)
