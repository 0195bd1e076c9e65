"""Metadata validation under arbitrary input: a CheckpointMeta or a CheckpointError, nothing else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cxrmap.core.errors import CheckpointError
from cxrmap.models.checkpoint import LEGACY_KEYS, CheckpointMeta

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
VALID = {
    "version": 2,
    "task": "segmentation",
    "model": {"arch": "unet", "encoder": "resnet18", "weights": None, "classes": 1},
    "channels": ["infection"],
    "input_size": 64,
    "threshold": 0.5,
    "data": {"kind": "phantom", "description": "phantom", "manifest_hash": "0"},
    "provenance": {"preset": "quick", "config": {}, "cxrmap_version": "0.1.0", "created": "now"},
    "metrics": {},
}
FIELDS = st.sampled_from(sorted({*VALID, *LEGACY_KEYS, "kind"}))


def _validate(data) -> None:
    try:
        meta = CheckpointMeta.from_dict(data, "fuzz.pt")
    except CheckpointError as error:
        assert "fuzz.pt" in str(error)
        return
    assert isinstance(meta, CheckpointMeta) and 0.0 <= meta.threshold <= 1.0 and meta.input_size >= 1
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta  # what validates round-trips


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=12) | FIELDS, VALUES, max_size=12) | VALUES)
def test_arbitrary_metadata_gives_meta_or_checkpoint_error(data):
    _validate(data)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(FIELDS, VALUES, max_size=6), st.sets(FIELDS, max_size=4), st.booleans())
def test_valid_metadata_with_fields_changed_or_dropped(changes, dropped, legacy):
    data = dict(VALID)
    if legacy:  # version 1: flat, no version
        data = {key: VALID.get(key, "x") for key in LEGACY_KEYS}
        data.update(config={}, metrics={})
    data.update(changes)
    for key in dropped:
        data.pop(key, None)
    _validate(data)


def test_the_valid_examples_validate():
    assert CheckpointMeta.from_dict(VALID).encoder == "resnet18"
    legacy = {key: VALID.get(key, "x") for key in LEGACY_KEYS}
    assert CheckpointMeta.from_dict({**legacy, "config": {}, "metrics": {}}).data.kind == "x"
