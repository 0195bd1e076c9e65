"""The manifest: one row per image, the single table every later stage reads.

Columns (strings; empty where unknown):

============== ==================================================================================
image_path     absolute path of the radiograph
mask_path      infection mask (``{0,255}`` PNG); empty where none exists (controls usually have none)
lung_mask_path lung mask; empty where none exists
label          ``covid`` or ``control``
group          ``covid``, ``I`` (normal controls) or ``II`` (other findings), paper Sec. II-A
source         where the image came from (a dataset, a hospital, a phantom source)
split          a fixed split where the dataset defines one (``train``, ``val``, ``test``)
fold           cross-validation fold (``0`` .. ``k-1``), written by :func:`cxrmap.data.splits.assign_folds`
finding        finer class where known (``normal``, ``consolidation``, ``Pediatric_Viral_Pneumonia``...)
============== ==================================================================================
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from cxrmap.core.errors import DataError
from cxrmap.core.fileio import atomic_write

COLUMNS = (
    "image_path",
    "mask_path",
    "lung_mask_path",
    "label",
    "group",
    "source",
    "split",
    "fold",
    "finding",
)
LABELS = ("covid", "control")
GROUPS = ("covid", "I", "II")


def empty_manifest() -> pd.DataFrame:
    """A manifest with the standard columns and no rows."""
    return pd.DataFrame({column: pd.Series(dtype=str) for column in COLUMNS})


def normalise_manifest(rows: pd.DataFrame | list[dict]) -> pd.DataFrame:
    """Return a manifest with exactly :data:`COLUMNS` (plus any extra columns), all strings, checked.

    Raises:
        DataError: a row has an unknown label or group, or no image path.
    """
    frame = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame = frame.fillna("").astype(str)
    extra = [c for c in frame.columns if c not in COLUMNS]
    frame = frame[list(COLUMNS) + extra].reset_index(drop=True)
    bad_label = ~frame["label"].isin(LABELS)
    if bad_label.any():
        row = frame[bad_label].iloc[0]
        raise DataError(
            f"manifest row for {row['image_path']!r} has label {row['label']!r}; expected one of {LABELS}"
        )
    bad_group = ~frame["group"].isin(GROUPS)
    if bad_group.any():
        row = frame[bad_group].iloc[0]
        raise DataError(
            f"manifest row for {row['image_path']!r} has group {row['group']!r}; expected one of {GROUPS}"
        )
    if (frame["image_path"] == "").any():
        raise DataError("manifest has a row without image_path; every row needs the radiograph's path")
    return frame


_SNIFF = 8192  # bytes read to tell a text file from a binary one


def check_manifest_file(path: str | os.PathLike) -> Path:
    """Check cheaply that ``path`` is a manifest CSV: an existing, non-empty UTF-8 text file.

    Raises:
        DataError: missing, a folder, empty, or binary (NUL bytes, not UTF-8).
    """
    path = Path(path)
    if not path.is_file():
        what = "does not exist" if not path.exists() else "is not a regular file"
        raise DataError(f"manifest {path} {what}; create one with `cxrmap index ROOT --out {path}`")
    with open(path, "rb") as handle:
        head = handle.read(_SNIFF)
    if not head.strip():
        raise DataError(f"manifest {path} is empty; write it again with `cxrmap index ROOT --out {path}`")
    if b"\0" in head:
        raise _binary(path)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        cut_at_the_end = len(head) == _SNIFF and error.start >= _SNIFF - 3  # a character split by the read
        if not cut_at_the_end:
            raise _binary(path) from None
    return path


def _binary(path: Path) -> DataError:
    return DataError(
        f"manifest {path} is not a text CSV (binary or not UTF-8); give the CSV written by `cxrmap index`"
    )


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest CSV written by :func:`write_manifest` (or by hand with the same columns).

    Raises:
        DataError: the file is missing, empty, binary, not parseable as CSV, or lacks the required columns.
    """
    path = check_manifest_file(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise DataError(
            f"manifest {path} cannot be parsed as CSV ({reason}); write it again with `cxrmap index`"
        ) from None
    missing = [c for c in ("image_path", "label") if c not in frame.columns]
    if missing:
        raise DataError(f"manifest {path} lacks the columns {missing}; expected at least {COLUMNS[:5]}")
    return normalise_manifest(frame)


def missing_images(frame: pd.DataFrame) -> list[str]:
    """The rows' ``image_path`` values that name no existing file, in manifest order."""
    return [path for path in frame["image_path"] if not os.path.isfile(path)]


def require_images(
    frame: pd.DataFrame, path: str | os.PathLike, *, skip_missing: bool = False
) -> pd.DataFrame:
    """``frame`` if every image it names exists; with ``skip_missing``, ``frame`` without those rows.

    Raises:
        DataError: rows point at missing images (and ``skip_missing`` is off), or every row does.
    """
    missing = missing_images(frame)
    if not missing:
        return frame
    first = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    if skip_missing and len(missing) < len(frame):
        return frame[~frame["image_path"].isin(set(missing))].reset_index(drop=True)
    fix = (
        "no row is left to use; index the data again"
        if skip_missing
        else "index the data again with `cxrmap index`, or pass --skip-missing to use the other rows"
    )
    raise DataError(
        f"manifest {path}: {len(missing)} of {len(frame)} rows point at images that do not exist "
        f"({first}); {fix}"
    )


def write_manifest(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` as CSV atomically (a crash leaves the previous manifest intact)."""
    path = Path(path)
    with atomic_write(path, "w") as handle:
        normalise_manifest(frame).to_csv(handle, index=False)
    return path


def manifest_hash(frame: pd.DataFrame) -> str:
    """SHA-256 (hex, 16 chars) of the manifest's rows: the identity of a data set for caches, checkpoints."""
    digest = hashlib.sha256()
    for row in normalise_manifest(frame)[list(COLUMNS)].itertuples(index=False):
        digest.update("\x1f".join(row).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()[:16]
