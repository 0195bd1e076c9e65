"""The paper cxrmap implements, cited the same way everywhere: README, pages, run report and CLI help."""

from __future__ import annotations

import html
from dataclasses import dataclass

PLACEHOLDER = "<!-- cxrmap:citation -->"
"""Where a served page shows :data:`PAPER` (:func:`cite_in`)."""


@dataclass(frozen=True)
class Citation:
    """A journal article's bibliographic record."""

    authors: tuple[str, ...]
    title: str
    journal: str
    volume: str
    article: str
    year: int
    doi: str
    arxiv: str

    @property
    def doi_url(self) -> str:
        """The article's DOI as a link."""
        return f"https://doi.org/{self.doi}"

    @property
    def short(self) -> str:
        """``Degerli et al., Health Information Science and Systems 9, 15 (2021)``."""
        return (
            f"{self.authors[0].split()[0]} et al., {self.journal} {self.volume}, {self.article} ({self.year})"
        )

    @property
    def text(self) -> str:
        """The full reference: authors, "title", journal volume, article (year), doi, arXiv."""
        authors = ", ".join(self.authors)
        return (
            f'{authors}, "{self.title}", {self.journal} {self.volume}, {self.article} ({self.year}), '
            f"doi:{self.doi}, arXiv:{self.arxiv}"
        )

    @property
    def html(self) -> str:
        """The full reference as HTML: the title in italics, the DOI and arXiv as links."""
        authors = html.escape(", ".join(self.authors))
        return (
            f"{authors}, <em>{html.escape(self.title)}</em>, {html.escape(self.journal)} {self.volume}, "
            f'{self.article} ({self.year}), <a href="{self.doi_url}">doi:{self.doi}</a>, '
            f'<a href="https://arxiv.org/abs/{self.arxiv}">arXiv:{self.arxiv}</a>'
        )

    def to_dict(self) -> dict:
        """Fields and formatted strings, as the demo's API serves them."""
        return {
            "authors": list(self.authors),
            "title": self.title,
            "journal": self.journal,
            "volume": self.volume,
            "article": self.article,
            "year": self.year,
            "doi": self.doi,
            "doi_url": self.doi_url,
            "arxiv": self.arxiv,
            "short": self.short,
            "text": self.text,
        }


PAPER = Citation(
    authors=(
        "Degerli A.",
        "Ahishali M.",
        "Yamac M.",
        "Kiranyaz S.",
        "Chowdhury M.E.H.",
        "Hameed K.",
        "Hamid T.",
        "Mazhar R.",
        "Gabbouj M.",
    ),
    title="COVID-19 infection map generation and detection from chest X-ray images",
    journal="Health Information Science and Systems",
    volume="9",
    article="15",
    year=2021,
    doi="10.1007/s13755-021-00146-8",
    arxiv="2009.12698",
)
"""Degerli et al. (2021), the paper whose method cxrmap reproduces."""


def cite_in(page: str) -> str:
    """``page`` (HTML text) with :data:`PLACEHOLDER` replaced by the paper's reference."""
    return page.replace(PLACEHOLDER, PAPER.html)
