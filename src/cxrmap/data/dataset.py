"""The torch Dataset of segmentation training and evaluation, read from an :class:`ImageCache`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cxrmap.core.errors import DataError
from cxrmap.data.augment import balanced_plan, shift_rotate
from cxrmap.data.cache import ImageCache


class SegmentationDataset(Dataset):
    """Images with their infection and lung masks, optionally class-balanced by augmentation.

    With ``balance=True`` an epoch is every row once plus COVID-19 repeats up to the number of controls
    (:func:`~cxrmap.data.augment.balanced_plan`, paper Sec. III-B / Table II); every repeat is randomly
    shifted and rotated (:func:`~cxrmap.data.augment.shift_rotate`). With ``augment=True`` every item is.
    The random transform of item ``i`` is drawn from a generator seeded with ``(seed, epoch, i)``, so it is
    the same whatever the DataLoader's worker count; call :meth:`set_epoch` before each epoch (with
    non-persistent workers, which copy the dataset at each epoch) for fresh transforms and repeats.

    Args:
        cache: the image cache.
        indices: rows of the cache in this dataset (e.g. ``fold_indices(cache.manifest, 0)[0]``).
        balance: repeat COVID-19 rows up to the number of control rows.
        augment: shift/rotate every item, not only the repeats.
        seed: non-negative seed of the repeats and transforms.

    Items are dicts:
        ``image`` float32 ``(1, S, S)`` in [0, 1]; ``target`` float32 ``(2, S, S)`` (infection, lung) in
        {0, 1}; ``has_lung`` and ``has_mask`` bool tensors (a COVID-19 row without a mask has an unknown,
        all-zero infection target); ``label`` int (1 COVID-19, 0 control); ``index`` int (the cache row).

    Example:
        >>> train_idx, _ = fold_indices(cache.manifest, 0)  # doctest: +SKIP
        >>> data = SegmentationDataset(cache, train_idx, balance=True)  # doctest: +SKIP
        >>> data[0]["image"].shape  # doctest: +SKIP
        torch.Size([1, 224, 224])
    """

    def __init__(
        self,
        cache: ImageCache,
        indices: Sequence[int] | np.ndarray,
        balance: bool = False,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.cache = cache
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = (self.indices < 0) | (self.indices >= len(cache))
        if bad.any():
            raise DataError(
                f"dataset index {int(self.indices[bad][0])} is outside the cache's rows 0..{len(cache) - 1}; "
                "take indices from the cache's own manifest (cache.manifest), not the one it was built from"
            )
        if seed < 0:
            raise DataError(f"seed must be a non-negative integer, got {seed}")
        self.balance = balance
        self.augment = augment
        self.seed = int(seed)
        self._covid = (cache.manifest["label"].to_numpy()[self.indices] == "covid").astype(np.int64)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's plan (which COVID-19 images take the remainder repeats) and transforms."""
        self.epoch = int(epoch)
        if self.balance:
            self.plan = balanced_plan(self._covid, np.random.default_rng([self.seed, self.epoch, 0]))
        else:
            self.plan = np.arange(len(self.indices), dtype=np.int64)

    @property
    def labels(self) -> np.ndarray:
        """int64 label of each item in order (1 COVID-19, 0 control), length ``len(self)``."""
        return self._covid[self.plan]

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, item: int) -> dict:
        if not -len(self) <= item < len(self):
            raise IndexError(f"item {item} out of range for a dataset of {len(self)}")
        item = int(item) % len(self)
        position = self.plan[item]
        row = int(self.indices[position])
        image = self.cache.images[row]
        masks = [self.cache.masks[row], self.cache.lungs[row]]
        if self.augment or item >= len(self.indices):
            rng = np.random.default_rng([self.seed, self.epoch, 1, item])
            image, masks = shift_rotate(image, masks, rng)
        return {
            "image": torch.from_numpy(image.astype(np.float32)[None] / 255.0),
            "target": torch.from_numpy(np.stack(masks).astype(np.float32)),
            "has_lung": torch.tensor(bool(self.cache.has_lung[row])),
            "has_mask": torch.tensor(bool(self.cache.has_mask[row])),
            "label": int(self._covid[position]),
            "index": row,
        }
