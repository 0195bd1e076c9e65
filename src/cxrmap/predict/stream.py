"""Radiographs streamed from files to the network: decoded and resized in worker processes, in order.

``cxrmap predict`` on thousands of films of 2-8 Mpx spends most of its time decoding; a
:class:`torch.utils.data.DataLoader` over :class:`Films` does that in ``workers`` processes while the main
process runs the network, draws the maps and writes the files. Each item carries the model's input
(:func:`cxrmap.predict.predictor.model_input`) and the radiograph at its display size
(:func:`cxrmap.predict.maps.display_image`), never the full film past the worker; at most
``workers x 2`` batches wait decoded, so memory stays bounded whatever the number of files. A file that
cannot be decoded comes back with the reason instead of its pixels. Workers are spawned, not forked: a
fork of a process running PyTorch's and OpenCV's thread pools can inherit a lock no thread will release.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import DataLoader, Dataset

from cxrmap.core.errors import DataError
from cxrmap.core.runtime import default_threads
from cxrmap.data.io import read_image
from cxrmap.predict.maps import display_image
from cxrmap.predict.predictor import model_input

PREFETCH = 2
"""Decoded batches each worker keeps ready (the bound on memory)."""


@dataclass
class Film:
    """One file, decoded and resized, or the reason it could not be.

    Attributes:
        index: its position in the list given to :class:`Films`.
        path: the file.
        input: uint8 (S, S), the network's input; None when unreadable.
        display: uint8 (h, w), the radiograph at its display size; None when unreadable.
        error: why the file could not be read; empty otherwise.
    """

    index: int
    path: Path
    input: np.ndarray | None = None
    display: np.ndarray | None = None
    error: str = ""


class Films(Dataset):
    """The files ``paths`` as :class:`Film` items: model input at ``input_size``, display at ``map_side``."""

    def __init__(self, paths: list[Path], input_size: int, map_side: int) -> None:
        self.paths, self.input_size, self.map_side = list(paths), int(input_size), int(map_side)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Film:
        path = self.paths[index]
        try:
            image = read_image(path)
        except (DataError, OSError, ValueError, MemoryError) as error:  # reported, never a dead worker
            return Film(index, path, error=str(error) or type(error).__name__)
        return Film(index, path, model_input(image, self.input_size), display_image(image, self.map_side))


def default_workers(processes: int = 1) -> int:
    """Decoding workers for one of ``processes`` predicting processes: its share of the physical cores
    less the one it computes on; none (decode in-process) with 2 cores or fewer.

    On 2 cores the network's threads already take both: 48 films of 2-8 Mpx went at 5.5 images/s in-process
    and 3.0 with one worker (AMD EPYC, 2 cores), which also pays a few seconds to start.
    """
    share = default_threads() // max(1, processes)
    return share - 1 if share > 2 else 0


def _single_thread(_: int) -> None:
    """In each worker: one OpenCV thread (the workers are the parallelism)."""
    cv2.setNumThreads(1)


def stream(
    paths: list[Path], input_size: int, map_side: int, batch_size: int, workers: int
) -> Iterator[list[Film]]:
    """The :class:`Film` items of ``paths`` in order, ``batch_size`` at a time.

    Args:
        workers: decoding processes; 0 decodes in this process.
    """
    if workers < 0:
        raise DataError(f"--workers must be 0 (decode in this process) or more; got {workers}.")
    loader = DataLoader(
        Films(paths, input_size, map_side),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=list,
        prefetch_factor=PREFETCH if workers else None,
        worker_init_fn=_single_thread if workers else None,
        multiprocessing_context="spawn" if workers else None,  # a fork copies locks held by threads
    )
    yield from loader
