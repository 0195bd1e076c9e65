"""Both servers' OpenAPI schemas describe every route."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from cxrmap.serving.annotate.app import create_app as create_annotate_app  # noqa: E402
from cxrmap.serving.demo.app import create_app as create_demo_app  # noqa: E402
from tests.helpers.checkpoints import write_tiny_checkpoint  # noqa: E402


def undescribed(app) -> list[str]:
    """Operations without a description. FastAPI fills every summary from the function's name, so the
    description (the route's docstring, or an explicit ``description=``) is what says what a route does."""
    return [
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if not (operation.get("description") or "").strip()
    ]


def test_every_route_of_both_servers_is_described(tmp_path):
    demo = create_demo_app(write_tiny_checkpoint(tmp_path / "model.pt"))
    annotate = create_annotate_app(tmp_path / "annotate", worker=False, fast_hash=True)
    for app, at_least in ((demo, 3), (annotate, 36)):
        operations = sum(len(ops) for ops in app.openapi()["paths"].values())
        assert operations >= at_least
        assert undescribed(app) == []
        assert all(op.get("summary") for ops in app.openapi()["paths"].values() for op in ops.values())
