"""Synthetic chest X-ray data sets with exact masks, in the QaTa-COV19 layout (DESIGN.md sec. 4).

Two kinds: ``shapes`` draws 2D anatomy (:mod:`.shapes`, fast, no files needed); ``ct`` renders
radiographs from a real chest CT with findings inserted in 3D (:mod:`.ct`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cxrmap.core.errors import DataError
from cxrmap.data.phantom import ct, shapes

GENERATORS = {"shapes": shapes.generate, "ct": ct.generate}
"""The phantom kinds and their writers; all take the same options and write the same layout."""


def generate(out: str | os.PathLike, *, kind: str = "shapes", **options) -> Path:
    """Write a phantom data set of ``kind`` (``shapes`` or ``ct``) under ``out``; ``options`` as
    :func:`cxrmap.data.phantom.shapes.generate` takes them.

    Raises:
        DataError: an unknown kind, or what the kind's generator raises.
    """
    if kind not in GENERATORS:
        raise DataError(f"unknown phantom kind {kind!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[kind](out, **options)
