"""Cross-validation folds (Group-I) and the fixed train/test split (Group-II), paper Sec. III-B.

Group-I: stratified 5-fold cross-validation, 80% training / 20% test per fold (Table II).
Group-II: ChestX-ray14 comes with its own train/test split, which is kept; the COVID-19 and pediatric
pneumonia images are split at random at ChestX-ray14's train/test ratio (Table V).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from cxrmap.core.errors import DataError
from cxrmap.data.manifest import normalise_manifest

FIXED_SPLITS = ("train", "test")
OFFICIAL_LISTS = {"train": "train_val_list.txt", "test": "test_list.txt"}
"""ChestX-ray14's official split files (image names, one per line), beside ``Data_Entry_2017.csv``."""
GROUP_II_CLASSES = ("covid", "bacterial", "chestxray14", "viral")
"""The classes of Group II (Table V): COVID-19, pediatric bacterial and viral pneumonia, ChestX-ray14."""


def assign_folds(manifest: pd.DataFrame, k: int = 5, seed: int = 0) -> pd.DataFrame:
    """Return a copy of ``manifest`` with ``fold`` set to ``"0"`` .. ``"k-1"``, stratified on ``label``.

    Uses scikit-learn's ``StratifiedKFold(k, shuffle=True, random_state=seed)``, so each fold's test part
    holds about ``1/k`` of every class (paper Sec. III-B, Table II) and the same seed gives the same folds.

    Raises:
        DataError: ``k`` is below 2, or a class has fewer than ``k`` images.

    Example:
        >>> folds = assign_folds(manifest, k=5, seed=0)  # doctest: +SKIP
        >>> train_idx, test_idx = fold_indices(folds, 0)  # doctest: +SKIP
    """

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got k={k!r}; the paper uses k=5")
    frame = normalise_manifest(manifest)
    counts = frame["label"].value_counts()
    small = counts[counts < k]
    if not small.empty:
        label, count = small.index[0], int(small.iloc[0])
        raise DataError(
            f"class {label!r} has {count} image(s); {k}-fold cross-validation needs at least {k} per class. "
            "Add images of that class or use fewer folds."
        )
    folds = np.empty(len(frame), dtype=object)
    splitter = StratifiedKFold(n_splits=int(k), shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(frame)), frame["label"].to_numpy())):
        folds[test] = str(fold)
    frame["fold"] = folds.astype(str)
    return frame


def _is_chestxray14(frame: pd.DataFrame) -> pd.Series:
    """Rows whose source, finding or path names ChestX-ray14 (any spelling: CHESTXRAY-14, chestx-ray14...)."""
    text = frame["source"] + " " + frame["finding"] + " " + frame["image_path"]
    return text.map(lambda value: "chestxray14" in re.sub(r"[^a-z0-9]", "", value.lower()))


def find_official_lists(manifest: pd.DataFrame, root: str | os.PathLike) -> dict[str, Path]:
    """ChestX-ray14's ``train_val_list.txt`` and ``test_list.txt``: the nearest pair above its images.

    Looked up from the folder of each ChestX-ray14 image up to ``root``; ``{}`` where no folder holds both.
    """
    frame = normalise_manifest(manifest)
    root = Path(os.path.abspath(root))
    folders = [
        Path(folder)
        for folder in sorted({os.path.dirname(p) for p in frame.loc[_is_chestxray14(frame), "image_path"]})
    ]
    for folder in folders:
        for directory in (folder, *folder.parents):
            found = {split: directory / name for split, name in OFFICIAL_LISTS.items()}
            if all(path.is_file() for path in found.values()):
                return found
            if directory == root:
                break
    return {}


def apply_official_lists(manifest: pd.DataFrame, lists: dict[str, str | os.PathLike]) -> pd.DataFrame:
    """A copy of ``manifest`` whose ChestX-ray14 rows take their ``split`` from the official lists.

    Args:
        lists: ``{"train": train_val_list.txt, "test": test_list.txt}`` (:func:`find_official_lists`);
            an image named in neither keeps its split (from its ``Train``/``Test`` folder).

    Raises:
        DataError: a list cannot be read, or an image is named in both.
    """
    frame = normalise_manifest(manifest)
    names: dict[str, set[str]] = {}
    for split, path in lists.items():
        try:
            names[split] = {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"cannot read ChestX-ray14's split list {path}: {error}") from None
    both = names.get("train", set()) & names.get("test", set())
    if both:
        raise DataError(
            f"{len(both)} image(s) are in both official lists, e.g. {sorted(both)[0]}; "
            "give ChestX-ray14's own train_val_list.txt and test_list.txt"
        )
    chest = _is_chestxray14(frame).to_numpy()
    base = frame["image_path"].map(os.path.basename)
    split = frame["split"].to_numpy(dtype=object)
    for name, members in names.items():
        split[chest & base.isin(members).to_numpy()] = name  # hashed: np.isin on strings is quadratic
    frame["split"] = split.astype(str)
    return frame


def group2_classes(manifest: pd.DataFrame) -> pd.Series:
    """Each row's Group-II class (:data:`GROUP_II_CLASSES`, Table V), ``other`` for any other control."""
    frame = normalise_manifest(manifest)
    text = (frame["finding"] + " " + frame["source"] + " " + frame["image_path"]).str.lower()
    classes = np.where(
        frame["label"] == "covid",
        "covid",
        np.where(
            _is_chestxray14(frame),
            "chestxray14",
            np.where(
                text.str.contains("bacteria"),
                "bacterial",
                np.where(text.str.contains("viral"), "viral", "other"),
            ),
        ),
    )
    return pd.Series(classes, index=frame.index, name="class")


def group2_split(manifest: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Return a copy of ``manifest`` with ``split`` set to ``train`` or ``test`` (paper Sec. III-B, Group-II).

    Rows that already have ``split`` ``train`` or ``test`` (ChestX-ray14's fixed split, or any dataset's
    official one) keep it. Every other row is assigned at random, separately within each (label, finding)
    stratum, so that each stratum's training share equals that of the ChestX-ray14 rows (of all rows with a
    fixed split where no ChestX-ray14 row is present). Rows with another split (``val``) keep it.

    Raises:
        DataError: no row has a fixed train/test split to take the ratio from.
    """
    frame = normalise_manifest(manifest)
    fixed = frame["split"].isin(FIXED_SPLITS)
    reference = fixed & _is_chestxray14(frame)
    if not reference.any():
        reference = fixed
    if not reference.any():
        raise DataError(
            "group2_split keeps ChestX-ray14's fixed train/test split and splits the other images at its "
            "ratio, but no row has split 'train' or 'test'. Index ChestX-ray14 with its Train/Test folders, "
            "or use assign_folds for cross-validation."
        )
    ratio = float((frame.loc[reference, "split"] == "train").mean())
    rng = np.random.default_rng(seed)
    free = frame.index[frame["split"] == ""]
    strata = frame.loc[free, "label"] + "\x1f" + frame.loc[free, "finding"]
    split = frame["split"].to_numpy(dtype=object)
    for stratum in sorted(strata.unique()):
        rows = free[(strata == stratum).to_numpy()].to_numpy()
        order = rng.permutation(rows)
        n_train = int(round(len(rows) * ratio))
        split[order[:n_train]] = "train"
        split[order[n_train:]] = "test"
    frame["split"] = split.astype(str)
    return frame


def fold_indices(manifest: pd.DataFrame, fold: int | str) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (int64) of the training and test parts of ``fold``.

    The test part is the rows of that fold, the training part the rows of every other fold; rows without
    a fold belong to neither.

    Raises:
        DataError: the manifest has no folds, or not this one.
    """
    folds = manifest["fold"].astype(str).to_numpy()
    present = sorted({value for value in folds if value}, key=lambda value: (len(value), value))
    if not present:
        raise DataError("the manifest has no folds; assign them first with assign_folds(manifest, k=5)")
    if str(fold) not in present:
        raise DataError(f"fold {fold!r} is not in the manifest; it has folds {', '.join(present)}")
    test = folds == str(fold)
    return np.flatnonzero((folds != "") & ~test).astype(np.int64), np.flatnonzero(test).astype(np.int64)


def validation_split(
    manifest: pd.DataFrame, rows, share: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Set ``share`` of the training ``rows`` aside for validation, stratified on ``label``.

    The validation images tune what the paper fixes (the detection rule, :mod:`cxrmap.predict.detect`); they
    come from the training folds only, never from the test fold. ``share`` 0 keeps every row for training.

    Returns:
        ``(training rows, validation rows)``, int64 and sorted.

    Raises:
        DataError: ``share`` is outside [0, 1), or too small or too large to keep both classes on both sides.
    """
    rows = np.asarray(rows, np.int64)
    if not 0.0 <= share < 1.0:
        raise DataError(f"the validation share must lie in [0, 1), got {share!r}")
    if share == 0.0:
        return np.sort(rows), np.zeros(0, np.int64)
    labels = manifest["label"].to_numpy()
    problem = "the training images hold one class only"
    if len(set(labels[rows])) > 1:
        try:
            fit, held = train_test_split(rows, test_size=share, stratify=labels[rows], random_state=seed)
            if all(len(set(labels[part])) > 1 for part in (fit, held)):
                return np.sort(fit), np.sort(held)
            problem = "a side would hold one class only"
        except ValueError as error:
            problem = str(error)
    raise DataError(
        f"cannot set {share:g} of {len(rows)} training images aside for validation with both classes on "
        f"both sides ({problem}); use another validation share (0 for none) or more images"
    )


def split_indices(manifest: pd.DataFrame, split: str = "train") -> np.ndarray:
    """Row positions (int64) of the rows whose ``split`` is ``split`` (``train``, ``val`` or ``test``).

    Raises:
        DataError: no row has this split.
    """
    splits = manifest["split"].astype(str).to_numpy()
    chosen = np.flatnonzero(splits == split).astype(np.int64)
    if not len(chosen):
        present = sorted({value for value in splits if value})
        hint = f"it has {', '.join(present)}" if present else "assign one first with group2_split(manifest)"
        raise DataError(f"no row of the manifest has split {split!r}; {hint}")
    return chosen
