"""The model card: Tables I and III with their intervals, the data, the input size, the threshold."""

from __future__ import annotations

from dataclasses import replace

from cxrmap.models.checkpoint import Provenance, TrainingData
from cxrmap.report.card import build_card, format_figure
from tests.helpers.checkpoints import CROSS_VALIDATED, make_meta

META = replace(
    make_meta(
        model={"arch": "unet", "encoder": "densenet121", "weights": "imagenet", "classes": 2},
        input_size=224,
        metrics=CROSS_VALIDATED,
    ),
    data=TrainingData("real", "real data: 300 images (100 COVID-19), folds 1-4 of 5", "0" * 16),
    provenance=Provenance("paper", {}, "0.1.0", "2026-01-02T03:04:05+00:00"),
)


def test_card_rows_and_tables_in_the_papers_terms():
    card = build_card(META, parameters=12345678)
    assert dict(card.rows) == {
        "Model": "U-Net + DenseNet-121 (initialised from imagenet)",
        "Parameters": "12,345,678",
        "Input size": "224 × 224 px",
        "Detection threshold": (
            "0.50 (stored with the model: its training setting; as in the paper, Sec. II-D)"
        ),
        "Data": "real chest X-rays",
        "Trained on": "real data: 300 images (100 COVID-19), folds 1-4 of 5",
        "Trained": "2026-01-02T03:04:05+00:00, cxrmap 0.1.0, preset paper",
    }
    table_i, table_iii = card.tables
    assert table_i.title.startswith("Table I:") and table_i.columns == ("F1", "Sensitivity", "Specificity")
    assert table_i.values == ("83.20% ± 0.41%", "80.00% ± 0.50%", "99.00% ± 0.02%")
    assert table_iii.title.startswith("Table III:")
    assert table_iii.values == ("94.96% ± 0.79%", "99.88% ± 0.02%", "–")  # F1 undefined (NaN)
    assert card.figures_note.startswith("Held-out figures, mean over 5 cross-validation folds")
    page = card.html()
    assert (
        "<caption>Table III: COVID-19 detection (images)</caption>" in page and "sensitivity_ci" not in page
    )


def test_card_of_a_single_fold_a_bare_model_and_an_overridden_threshold():
    held_out = replace(META, metrics={"fold": 2, **CROSS_VALIDATED["cross_validated"]})
    assert build_card(held_out).figures_note.startswith("Figures on one held-out fold (fold 2)")
    bare = build_card(make_meta(model={"arch": "dla", "encoder": "x", "classes": 2}, metrics={}))
    assert bare.tables == () and bare.figures_note == "No evaluation figures are stored with this model."
    assert dict(bare.rows)["Model"] == "DLA + x"
    assert dict(bare.rows)["Detection threshold"] == (
        "0.50 (stored with the model: its training setting; as in the paper, Sec. II-D)"
    )
    assert dict(bare.rows)["Data"] == "synthetic phantoms (not patients)"
    assert dict(bare.rows)["Input size"] == "64 × 64 px"
    validated = build_card(make_meta(metrics={"f1": 0.7, "sensitivity": 0.6, "detection_sensitivity": 0.9}))
    assert [t.values for t in validated.tables] == [("70.00%", "60.00%", "–"), ("90.00%", "–", "–")]
    assert validated.figures_note == "Validation figures after the last training epoch (no interval stored)."
    override = dict(build_card(META, threshold=0.3).rows)["Detection threshold"]
    assert (
        override == "0.30 (set at start-up; the model was trained with 0.50; the paper uses 0.50, Sec. II-D)"
    )


def test_figures_without_an_interval_or_a_value():
    assert format_figure({"f1": 0.5}, "f1") == "50.00%"
    assert format_figure({"f1": None, "f1_ci": 0.1}, "f1") == "–"
    assert format_figure({}, "f1") == "–"
