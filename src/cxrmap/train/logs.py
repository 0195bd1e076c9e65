"""Training logs: ``history.csv`` (one row per epoch) and TensorBoard event files under ``tensorboard/``.

Only the main process logs. The CSV is rewritten whole (atomically) from the run's history after every
epoch, so a resumed run continues it without duplicated or missing rows; TensorBoard's writer purges the
events past the resumed epoch.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from cxrmap.core.fileio import write_text_atomic


class TrainLogger:
    """Write a run's per-epoch figures to CSV and TensorBoard.

    Args:
        out_dir: the run's folder.
        enabled: False in the processes other than rank 0 (nothing is written).
        start_epoch: epochs already done (a resumed run); later TensorBoard events are dropped.
        tensorboard: write TensorBoard events besides the CSV.
    """

    def __init__(
        self, out_dir: str | os.PathLike, enabled: bool = True, start_epoch: int = 0, tensorboard: bool = True
    ) -> None:
        self.path = Path(out_dir) / "history.csv"
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=start_epoch + 1)

    def log(self, history: list[dict]) -> None:
        """Record the last entry of ``history`` (TensorBoard) and rewrite the CSV from all of it."""
        if not self.enabled or not history:
            return
        entry = history[-1]
        if self.writer is not None:
            for key, value in entry.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, entry["epoch"])
            self.writer.flush()
        columns = list(dict.fromkeys(key for row in history for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
        write_text_atomic(self.path, buffer.getvalue())

    def close(self) -> None:
        """Flush and close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
