"""One citation everywhere: the README, CITATION.cff, the served pages, the run report and the CLI help."""

from __future__ import annotations

import html
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cxrmap.cli import app as cli_app
from cxrmap.core.citation import PAPER, PLACEHOLDER, cite_in
from cxrmap.report import ReportData, render_report
from cxrmap.serving.annotate.app import PAGES
from cxrmap.serving.annotate.app import create_app as create_annotate_app
from cxrmap.serving.demo.app import create_app as create_demo_app
from tests.helpers.checkpoints import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_reference_reads_as_published():
    assert PAPER.text == (
        "Degerli A., Ahishali M., Yamac M., Kiranyaz S., Chowdhury M.E.H., Hameed K., Hamid T., Mazhar R., "
        'Gabbouj M., "COVID-19 infection map generation and detection from chest X-ray images", Health '
        "Information Science and Systems 9, 15 (2021), doi:10.1007/s13755-021-00146-8, arXiv:2009.12698"
    )
    assert PAPER.short == "Degerli et al., Health Information Science and Systems 9, 15 (2021)"
    assert cite_in(f"<p>After {PLACEHOLDER}.</p>") == f"<p>After {PAPER.html}.</p>"
    assert '<a href="https://doi.org/10.1007/s13755-021-00146-8">' in PAPER.html


def test_readme_and_citation_file_carry_the_paper():
    readme = _flat((REPO / "README.md").read_text())
    for part in (", ".join(PAPER.authors), PAPER.title, f"{PAPER.journal} {PAPER.volume}, {PAPER.article}"):
        assert part in readme
    assert PAPER.doi in readme and f"arXiv:{PAPER.arxiv}" in readme
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    paper = cff["preferred-citation"]
    assert (paper["title"], paper["journal"], paper["doi"]) == (PAPER.title, PAPER.journal, PAPER.doi)
    names = [f"{a['family-names']} {a['given-names']}" for a in paper["authors"]]
    assert names == list(PAPER.authors)
    assert (str(paper["volume"]), str(paper["start"]), paper["year"]) == (PAPER.volume, PAPER.article, 2021)


def test_no_other_citation_of_the_paper_is_left():
    sources = [REPO / "README.md", REPO / "docs" / "DESIGN.md", *(REPO / "src" / "cxrmap").rglob("*"),
               *(REPO / "benchmarks").rglob("*")]  # fmt: skip
    stale = [str(p) for p in sources if p.is_file() and p.suffix != ".pyc" and "JBHI" in p.read_text("utf-8")]
    assert stale == []


def test_served_pages_cite_the_paper(tmp_path):
    annotate = create_annotate_app(tmp_path / "annotate", fast_hash=True, worker=False)
    with TestClient(annotate) as client:
        for route in PAGES:
            page = client.get(route).text
            assert PAPER.html in page and PLACEHOLDER not in page, route
    demo = create_demo_app(write_tiny_checkpoint(tmp_path / "model.pt"))
    with TestClient(demo) as client:
        assert client.get("/api/v1/model").json()["citation"] == PAPER.to_dict()
        assert 'id="citation"' in client.get("/").text  # filled from the card by app.js


def test_report_and_cli_help_cite_the_paper(tmp_path):
    assert html.escape(PAPER.text) in render_report(ReportData(title="t"), tmp_path)
    result = CliRunner().invoke(cli_app, ["--help"], terminal_width=400)
    assert result.exit_code == 0 and PAPER.short in _flat(result.output)
