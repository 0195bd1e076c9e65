"""A small QaTa-COV19-shaped tree and a stand-in job for the study grid's tests."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from cxrmap.study.cv import DONE
from cxrmap.train.loop import FINAL, LAST
from tests.helpers.images import write_png

LOG = "runs.log"


def qata_tree(
    root: Path,
    covid: int = 4,
    group1: int = 6,
    chest_train: int = 6,
    chest_test: int = 2,
    bacterial: int = 4,
    viral: int = 4,
    official_test: tuple[str, ...] = (),
) -> Path:
    """QaTa-COV19-v1 with masks, Control_Group_I, Control_Group_II (ChestX-ray14 Train/Test, pediatric).

    ``official_test``: ChestX-ray14 file names listed in ``test_list.txt`` (every other one is in
    ``train_val_list.txt``); without them no list files are written.
    """
    image = np.full((16, 16), 100, np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    qata = root / "QaTa-COV19-v1"
    for i in range(covid):
        write_png(qata / "Images" / f"covid_{i}.png", image)
        write_png(qata / "Ground-truths" / f"mask_covid_{i}.png", mask)
    for i in range(group1):
        write_png(root / "Control_Group" / "Control_Group_I" / f"normal_{i}.png", image)
    group2 = root / "Control_Group" / "Control_Group_II"
    chest = group2 / "CHESTXRAY-14"
    names = []
    for split, count in (("Train", chest_train), ("Test", chest_test)):
        for i in range(count):
            names.append(f"{split.lower()}_{i:05d}.png")
            write_png(chest / split / names[-1], image)
    for folder, count in (("Pediatric_Bacterial_Pneumonia", bacterial), ("Pediatric_Viral_Pneumonia", viral)):
        for i in range(count):
            write_png(group2 / folder / f"{folder.split('_')[1].lower()}_{i}.png", image)
    if official_test:
        (chest / "test_list.txt").write_text("\n".join(official_test) + "\n")
        (chest / "train_val_list.txt").write_text(
            "\n".join(n for n in names if n not in official_test) + "\n"
        )
    return root


def recording_work(job) -> str:
    """Stand-in for :func:`cxrmap.study.grid.run_job`: writes the job's done files and logs the run.

    A job whose config holds ``kill`` dies by SIGKILL on its first attempt, after writing ``last.pt``
    (a worker killed mid-job, its pid in ``last.pt``); the attempt that resumes logs ``resumed``.
    """
    job.folder.mkdir(parents=True, exist_ok=True)
    last = job.folder / LAST
    if job.config.get("kill") and not last.exists():
        last.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    resumed = last.exists()
    (job.folder / FINAL).write_text("model")
    (job.folder / DONE).write_text("{}")
    with open(Path(job.config["log"]), "a") as handle:
        handle.write(f"{job.name} {'resumed' if resumed else 'fresh'} {os.getpid()}\n")
    return job.name
