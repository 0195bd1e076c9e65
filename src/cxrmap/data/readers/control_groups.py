"""The control groups: ``Control_Group_I`` (normal radiographs) and ``Control_Group_II`` (other findings)."""

from __future__ import annotations

from pathlib import Path

from cxrmap.data.readers.chestxray14 import CHESTXRAY14_FOLDERS, collect_chestxray14
from cxrmap.data.readers.common import Collected, control_entries, subfolders


def collect_control_group_i(folder: Path) -> Collected:
    """Group I: normal radiographs, in any sub-folder."""
    out = control_entries(folder, "I", "control-group-I", "control-group-I", "normal")
    out.layouts = [("control-group-I", str(folder))]
    return out


def collect_control_group_ii(folder: Path) -> Collected:
    """Group II: ChestX-ray14 (fixed Train/Test split), pediatric pneumonia, and any other finding folder."""
    dataset = "control-group-II"
    out = control_entries(folder, "II", dataset, dataset, "", recursive=False)
    out.layouts = [(dataset, str(folder))]
    for key, sub in subfolders(folder).items():
        if key in CHESTXRAY14_FOLDERS:
            out.extend(collect_chestxray14(sub, dataset))
        elif key.startswith("pediatric"):
            out.extend(control_entries(sub, "II", "pediatric-pneumonia", dataset, sub.name))
        else:
            out.extend(control_entries(sub, "II", dataset, dataset, sub.name))
    return out
