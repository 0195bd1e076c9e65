"""The model card in the paper's terms: what the model is, what it learnt from, and how good it is.

A checkpoint's metadata holds about sixty raw figures; the card shows the few a reader asks for: Table I
(infected region segmentation: F1, sensitivity, specificity) and Table III (COVID-19 detection:
sensitivity, specificity, F1), each with its 95% interval (Eq. 13), then the data the model was trained
on, its input size, its detection threshold and where that came from, and when it was trained. The demo
page (``GET /api/v1/model``, key ``card``) and the run report show the same card.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cxrmap.models.checkpoint import CheckpointMeta
from cxrmap.models.segmentation import title

PAPER_THRESHOLD = 0.5
"""The paper's detection threshold (Sec. II-D)."""

TABLES = (
    ("segmentation", "Table I: infected region segmentation (pixels)", ("f1", "sensitivity", "specificity")),
    ("detection", "Table III: COVID-19 detection (images)", ("sensitivity", "specificity", "f1")),
)
"""Which figures each of the card's tables shows, in the paper's order."""

LABELS = {"f1": "F1", "sensitivity": "Sensitivity", "specificity": "Specificity"}
DATA_KINDS = {"phantom": "synthetic phantoms (not patients)", "real": "real chest X-rays"}


@dataclass(frozen=True)
class CardTable:
    """One of the paper's tables, one row: each figure as ``"83.20% ± 0.41%"``."""

    title: str
    columns: tuple[str, ...]
    values: tuple[str, ...]


@dataclass(frozen=True)
class ModelCard:
    """The card: labelled rows (model, data, input size, threshold...), the figures, how they were got."""

    rows: tuple[tuple[str, str], ...]
    tables: tuple[CardTable, ...]
    figures_note: str

    def to_dict(self) -> dict:
        """JSON for the demo's API: ``{"rows": [[label, text]...], "tables": [...], "figures_note"}``."""
        return {
            "rows": [list(row) for row in self.rows],
            "tables": [asdict(table) for table in self.tables],
            "figures_note": self.figures_note,
        }

    def html(self) -> str:
        """The card as HTML (the run report's section)."""
        rows = "".join(
            f'<tr><th scope="row">{html.escape(label)}</th><td>{html.escape(text)}</td></tr>'
            for label, text in self.rows
        )
        parts = [f'<table class="card"><tbody>{rows}</tbody></table>']
        for table in self.tables:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
            cells = "".join(f"<td>{html.escape(v)}</td>" for v in table.values)
            parts.append(
                f"<table><caption>{html.escape(table.title)}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody><tr>{cells}</tr></tbody></table>"
            )
        parts.append(f'<p class="note">{html.escape(self.figures_note)}</p>')
        return "\n".join(parts)


def card_fields(meta: CheckpointMeta) -> dict[str, Any]:
    """What the card reads from a checkpoint's metadata (the only place it is read)."""
    metrics = meta.metrics
    return {
        "arch": meta.arch or "classifier",
        "encoder": meta.encoder,
        "weights": meta.weights,
        "input_size": meta.input_size,
        "threshold": meta.threshold,
        "trained_on": meta.data.description,
        "data_kind": meta.data.kind,
        "preset": meta.provenance.preset,
        "created": meta.provenance.created,
        "version": meta.provenance.cxrmap_version,
        "cross_validated": metrics.get("cross_validated"),
        "folds": metrics.get("folds"),
        "held_out": {task: metrics[task] for task, _, _ in TABLES if isinstance(metrics.get(task), Mapping)},
        "fold": metrics.get("fold"),
        "validation": {
            "segmentation": {k: metrics.get(k) for k in ("f1", "sensitivity", "specificity")},
            "detection": {k: metrics.get(f"detection_{k}") for k in ("sensitivity", "specificity", "f1")},
        }
        if "f1" in metrics
        else None,
    }


def _percent(value: Any) -> str | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return f"{100 * number:.2f}%" if math.isfinite(number) else None


def format_figure(figures: Mapping[str, Any], name: str) -> str:
    """``"83.20% ± 0.41%"`` from ``figures[name]`` and ``figures[name + "_ci"]``; ``–`` if undefined."""
    value = _percent(figures.get(name))
    if value is None:
        return "–"
    interval = _percent(figures.get(f"{name}_ci"))
    return value if interval is None else f"{value} ± {interval}"


def _figures(fields: dict) -> tuple[dict, str]:
    """The figures per task and a sentence saying how they were obtained."""
    if isinstance(fields["cross_validated"], Mapping):
        folds = fields["folds"] or fields["cross_validated"].get("detection", {}).get("folds")
        return fields["cross_validated"], (
            f"Held-out figures, mean over {folds or 'k'} cross-validation folds, ± the 95% interval (Eq. 13)."
        )
    if fields["held_out"]:
        fold = "" if fields["fold"] is None else f" (fold {fields['fold']})"
        return fields["held_out"], f"Figures on one held-out fold{fold}, ± the 95% interval (Eq. 13)."
    if fields["validation"] is not None:
        return fields["validation"], "Validation figures after the last training epoch (no interval stored)."
    return {}, "No evaluation figures are stored with this model."


def _threshold(fields: dict, threshold: float | None) -> str:
    value = float(threshold if threshold is not None else fields["threshold"])
    if float(fields["threshold"]) != value:
        origin = f"set at start-up; the model was trained with {float(fields['threshold']):.2f}"
    else:
        origin = "stored with the model: its training setting"
    paper = "as in the paper" if value == PAPER_THRESHOLD else f"the paper uses {PAPER_THRESHOLD:.2f}"
    return f"{value:.2f} ({origin}; {paper}, Sec. II-D)"


def build_card(
    meta: CheckpointMeta, threshold: float | None = None, parameters: int | None = None
) -> ModelCard:
    """The card of a checkpoint's metadata.

    Args:
        meta: the checkpoint's metadata (``load_model(path)[1]``).
        threshold: the detection threshold in use, where it overrides the checkpoint's.
        parameters: the network's parameter count, where known.
    """
    fields = card_fields(meta)
    arch = title(fields["arch"])
    encoder = title(fields["encoder"])
    weights = fields["weights"]
    rows = [("Model", f"{arch} + {encoder}" + (f" (initialised from {weights})" if weights else ""))]
    if parameters is not None:
        rows.append(("Parameters", f"{parameters:,}"))
    size = fields["input_size"]
    rows.append(("Input size", f"{size} × {size} px"))
    rows.append(("Detection threshold", _threshold(fields, threshold)))
    kind = fields["data_kind"]
    rows.append(("Data", DATA_KINDS.get(kind, str(kind or "unknown"))))
    rows.append(("Trained on", str(fields["trained_on"] or "unknown")))
    when = [str(fields["created"] or "unknown date")]
    if fields["version"]:
        when.append(f"cxrmap {fields['version']}")
    if fields["preset"]:
        when.append(f"preset {fields['preset']}")
    rows.append(("Trained", ", ".join(when)))
    figures, note = _figures(fields)
    tables = tuple(
        CardTable(
            title,
            tuple(LABELS[name] for name in names),
            tuple(format_figure(figures[task], name) for name in names),
        )
        for task, title, names in TABLES
        if isinstance(figures.get(task), Mapping)
    )
    return ModelCard(tuple(rows), tables, note)
