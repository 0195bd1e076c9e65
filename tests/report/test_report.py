"""The self-contained HTML report: tables, embedded images, no external assets."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrmap.core.errors import DataError
from cxrmap.report import ReportData, as_table, environment_info, write_report
from cxrmap.report.html import format_seconds


class _Collector(HTMLParser):
    """Collects every tag's attributes and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Collector:
    parser = _Collector()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _png(path: Path, value: int) -> Path:
    Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture
def data(tmp_path) -> ReportData:
    figures = tmp_path / "inputs"
    figures.mkdir()
    table = pd.DataFrame({"model": ["U-Net <b>", "UNet++"], "sensitivity": [0.9871, 0.5]})
    return ReportData(
        title="Phantom run",
        config={"preset": "quick", "folds": 3, "model": {"arch": "unet", "encoder": "densenet121"}},
        environment={"python": "3.12", "torch": "2.x", "date": "2024-01-01T00:00:00+00:00"},
        tables={
            "Table III: segmentation": table,
            "Table IV: detection": "| Model | F1 |\n|---|---:|\n| U-Net | 97.5 |\n| DLA | 96.1 |",
            "Localisation": "method,pointing_hit\nGrad-CAM,0.25\nU-Net,0.875\n",
        },
        figures=[
            ("ROC curves", _png(figures / "roc.png", 10)),
            ("Fig. 7 grid", _png(figures / "grid.png", 20)),
        ],
        gallery=[("covid_1: ground truth and map", _png(figures / "map1.png", 30))],
        timings={"cross-validation": 3725.0, "inference per image": 0.0123},
        notes=["Phantom data: figures describe the code, not patients."],
    )


def test_report_is_self_contained_with_tables_and_embedded_images(tmp_path, data):
    path = write_report(tmp_path / "run", data)
    assert path == tmp_path / "run" / "report.html"
    html_text = path.read_text(encoding="utf-8")
    page = _parse(path)
    images = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert base64.b64decode(images[0].split(",", 1)[1]) == (tmp_path / "inputs" / "roc.png").read_bytes()
    assert "http://" not in html_text and "https://" not in html_text
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe")
        for name in ("src", "href"):
            assert not attrs.get(name, "#").startswith(("http:", "https:", "//"))
    text = " ".join(page.text)
    for needle in (
        "Table III: segmentation",
        "0.9871",
        "U-Net <b>",
        "97.5",
        "DLA",
        "0.875",
        "Grad-CAM",
        "Research use only",
        "1 h 2 min 5 s",
        "12.3 ms",
        "densenet121",
        "Phantom data",
    ):
        assert needle in text
    assert "U-Net &lt;b&gt;" in html_text  # cell text is escaped, not markup
    assert sum(tag == "table" for tag, _ in page.tags) == 3 + 3  # tables + timings, config, environment
    assert not list((tmp_path / "run").glob("figures"))


def test_report_linked_images_are_relative_and_copied(tmp_path, data):
    out = tmp_path / "run"
    out.mkdir()
    inside = _png(out / "pr.png", 40)
    data.figures.append(("PR curves", inside))
    path = write_report(out, data, embed=False)
    sources = [attrs["src"] for tag, attrs in _parse(path).tags if tag == "img"]
    assert "pr.png" in sources
    for src in sources:
        assert not src.startswith(("data:", "/", "http")) and (out / src).is_file()


def test_report_shows_missing_images_and_rejects_bad_tables(tmp_path):
    path = write_report(tmp_path, ReportData(figures=[("lost", tmp_path / "nope.png")]))
    assert "image not found" in path.read_text(encoding="utf-8")
    with pytest.raises(DataError, match="does not exist"):
        as_table(tmp_path / "missing.csv")


def test_as_table_reads_markdown_and_csv_files(tmp_path):
    markdown = as_table("| a | b |\n|:--|--:|\n| 1 | x |\n| 2 | y |\n")
    assert list(markdown.columns) == ["a", "b"] and markdown.values.tolist() == [["1", "x"], ["2", "y"]]
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    assert as_table(tmp_path / "t.csv").values.tolist() == [["1", "2"]]
    with pytest.raises(DataError, match="found 2"):
        as_table("| a |\n|---|\n| 1 |\n\n| b |\n|---|\n| 2 |")


def test_markdown_file_with_title_and_several_tables(tmp_path):
    markdown = tmp_path / "confusion.md"
    markdown.write_text(
        "**Table IV: confusion**\n\n*U-Net*\n\n| GT \\ Pred | Control | COVID-19 |\n|---|---|---|\n"
        "| Control | 50 | 1 |\n\n*DLA*\n\n| GT \\ Pred | Control | COVID-19 |\n|---|---|---|\n"
        "| Control | 48 | 3 |\n"
    )
    page = write_report(tmp_path / "run", ReportData(tables={"Table IV": markdown})).read_text()
    assert page.count("<table") == 2 and "<strong>Table IV: confusion</strong>" in page
    assert "<em>U-Net</em>" in page and "<em>DLA</em>" in page and "<td>48</td>" in page


def test_environment_info_and_seconds():
    info = environment_info()
    for key in ("python", "torch", "cxrmap", "cpu", "gpu", "date", "command"):
        assert info[key]
    assert format_seconds(59.0) == "59 s" and format_seconds(61) == "1 min 1 s"
