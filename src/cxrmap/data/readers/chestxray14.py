"""ChestX-ray14 (in Control Group II): a fixed Train/Test split, findings from ``Data_Entry_2017.csv``."""

from __future__ import annotations

from pathlib import Path

from cxrmap.data.readers.common import Collected, control_entries, read_csv

CHESTXRAY14_FOLDERS = ("chestxray_14", "chestxray14", "chestx_ray14", "chest_xray_14")


def collect_chestxray14(folder: Path, dataset: str) -> Collected:
    out = control_entries(folder, "II", "chestxray14", dataset, "")
    findings, warnings = _chestxray14_findings(folder)
    out.warnings += warnings
    for entry in out.entries:
        first = entry.image.relative_to(folder).parts[0]
        entry.split = {"train": "train", "test": "test", "val": "val"}.get(first.lower(), "")
        entry.finding = findings.get(entry.image.name, "")
    return out


def _chestxray14_findings(folder: Path) -> tuple[dict[str, str], list[str]]:
    """``Finding Labels`` by ``Image Index`` from the nearest ``Data_Entry_2017.csv`` (empty if none)."""
    for directory in (folder, *folder.parents):
        table = directory / "Data_Entry_2017.csv"
        if table.is_file():
            rows, warning = read_csv(table, ("Image Index", "Finding Labels"))
            if warning:
                return {}, [warning]
            return {row["Image Index"].strip(): row["Finding Labels"].strip() for row in rows}, []
    return {}, []
