"""The run report: one folder per run with a self-contained ``report.html`` (tables, curves, maps)."""

from cxrmap.report.card import ModelCard, build_card
from cxrmap.report.html import (
    ReportData,
    as_table,
    environment_info,
    markdown_blocks,
    render_report,
    write_report,
)

__all__ = [
    "ModelCard",
    "build_card",
    "ReportData",
    "as_table",
    "environment_info",
    "markdown_blocks",
    "render_report",
    "write_report",
]
