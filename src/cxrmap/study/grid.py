"""The study's trainings as a grid of independent jobs: one per configuration x fold (Sec. III-B).

A job trains one model on one training part and evaluates it on its test part, in its own folder, through
:func:`cxrmap.study.cv.run_fold`: a finished job holds ``done.json`` and ``model.pt`` and is never run
again; a job cut off holds ``last.pt`` and resumes from it. The jobs share nothing but their files, so
they run

- one after the other in this process (``engine="local"``, nothing beyond the base install);
- as Ray tasks over a cluster (``engine="ray"``, the optional ``ray`` extra), each asking for
  ``gpus_per_job`` GPUs (Ray gives each task its own ``CUDA_VISIBLE_DEVICES``, so a job's ``cuda`` is its
  GPU); a task whose worker dies is retried (``max_retries``) and resumes from its checkpoint;
- split into static shards for batch schedulers (:func:`select_shard`: shard ``i`` of ``n`` takes every
  ``n``-th job of the sorted grid), e.g. a SLURM array ``--array=0-(n-1)`` running
  ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from cxrmap.core.errors import CxrmapError, DataError
from cxrmap.data.cache import build_cache
from cxrmap.data.manifest import read_manifest
from cxrmap.study.cv import DONE, ModelSpec, run_fold
from cxrmap.train.loop import FINAL
from cxrmap.train.presets import TrainConfig

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """One training and evaluation of the grid.

    Attributes:
        name: unique and stable, e.g. ``group-i/unet-densenet121-imagenet/fold-0`` (shards sort by it).
        spec: the model setting.
        fold: the test fold; the job trains on every other fold of ``manifest``.
        folder: the job's folder (``done.json``, ``model.pt``, ``last.pt``).
        manifest: the manifest CSV holding the folds.
        config: the training settings (:meth:`TrainConfig.to_dict`), the spec's model fields aside.
        device: ``cpu``, ``cuda``...; ``None``: a GPU if the worker has one.
        progress: show progress bars.
    """

    name: str
    spec: ModelSpec
    fold: int
    folder: Path
    manifest: Path
    config: dict = field(default_factory=dict)
    device: str | None = None
    progress: bool = False

    @property
    def done(self) -> bool:
        """Whether the job finished: its ``done.json`` and its final model exist."""
        return (self.folder / DONE).is_file() and (self.folder / FINAL).is_file()

    def train_config(self) -> TrainConfig:
        """The job's :class:`TrainConfig`: the grid's settings with the spec's model."""
        return dataclasses.replace(
            TrainConfig.from_dict(self.config),
            arch=self.spec.arch,
            encoder=self.spec.encoder,
            weights=self.spec.weights,
            freeze_encoder=self.spec.freeze_encoder,
        )


def run_job(job: Job) -> str:
    """Run one job where it stands (skipped if done, resumed from ``last.pt`` if cut off); returns its name.

    The image cache is found again by its key, so workers sharing a file system decode each image once.
    """
    config = job.train_config()
    cache = build_cache(read_manifest(job.manifest), config.size, progress=job.progress)
    run_fold(config, cache, job.fold, job.folder, progress=job.progress, device=job.device)
    return job.name


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``: shard ``i`` (0-based) of ``n``.

    Raises:
        DataError: not two whole numbers with ``0 <= i < n``.
    """
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise DataError(
            f"--shard takes i/n (shard i of n, 0-based), e.g. 0/4 or "
            f"$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; got {text!r}"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise DataError(
            f"--shard {text}: the shard must lie in 0..n-1 "
            f"(a SLURM array for {count} shards is --array=0-{count - 1})"
        )
    return index, count


def select_shard(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Shard ``index`` of ``count``: every ``count``-th job of the grid sorted by name, from ``index`` on.

    The shards of one grid are disjoint and together hold every job, whatever order the jobs came in.
    """
    ordered = sorted(jobs, key=lambda job: job.name)
    return ordered[index::count]


def run_jobs(
    jobs: Sequence[Job],
    work: Callable[[Job], str] = run_job,
    engine: str = "local",
    gpus_per_job: float = 0.0,
    cpus_per_job: float = 1.0,
    max_retries: int = 3,
    address: str | None = None,
    progress: bool = True,
) -> list[str]:
    """Run the jobs not done yet; returns the names of those run.

    Args:
        jobs: the grid (or a shard of it).
        work: what runs one job (:func:`run_job`); a module-level function for Ray to ship.
        engine: ``local`` (one after the other, here) or ``ray`` (tasks on the cluster at ``address``,
            or on a local one started here).
        gpus_per_job, cpus_per_job: each Ray task's resources.
        max_retries: times Ray runs a task again after its worker died.
        progress: a bar over the jobs.

    Raises:
        CxrmapError: an unknown engine, or ``ray`` without Ray installed.
    """
    if engine not in ENGINES:
        raise CxrmapError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    pending = [job for job in jobs if not job.done]
    if not pending:
        return []
    if engine == "ray":
        return _run_ray(pending, work, gpus_per_job, cpus_per_job, max_retries, address, progress)
    done = []
    for job in tqdm(pending, desc="jobs", unit="job", disable=not progress):
        done.append(work(job))
    return done


def _run_ray(pending, work, gpus_per_job, cpus_per_job, max_retries, address, progress) -> list[str]:
    try:
        import ray  # optional dependency: the ``ray`` extra
    except ImportError:
        raise CxrmapError(
            "the ray engine needs Ray: pip install 'cxrmap[ray]' (or run without --engine ray)"
        ) from None
    if not ray.is_initialized():
        path = os.environ.get("PYTHONPATH")  # workers import cxrmap as this process does
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=progress,
            runtime_env={"env_vars": {"PYTHONPATH": path}} if path else None,
        )
    task = ray.remote(num_gpus=gpus_per_job, num_cpus=cpus_per_job, max_retries=max_retries)(work)
    refs = [task.remote(job) for job in pending]
    done = []
    with tqdm(total=len(refs), desc="jobs", unit="job", disable=not progress) as bar:
        while refs:
            ready, refs = ray.wait(refs, num_returns=1)
            done += ray.get(ready)
            bar.update(len(ready))
    return done
