"""Fuzz the servers' upload check: any bytes give a format and size within the limit, or a project error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cxrmap.core.errors import CxrmapError
from cxrmap.serving.http.uploads import ALLOWED_FORMATS, check_upload

LIMIT = 4_000_000
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring any size, followed by nothing."""
    body = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + body + struct.pack(">I", zlib.crc32(body))


uploads = st.one_of(
    st.binary(max_size=512),
    st.builds(_png, st.integers(1, 64), st.integers(1, 64)),
    st.builds(_header, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.builds(
        lambda data, cut: data[:cut],
        st.builds(_png, st.integers(1, 32), st.integers(1, 32)),
        st.integers(0, 80),
    ),  # fmt: skip
    st.builds(
        lambda prefix, rest: prefix + rest,
        st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"DICM", b"\x00" * 128 + b"DICM"]),
        st.binary(max_size=256),
    ),  # fmt: skip
)


def _check(data: bytes) -> None:
    try:
        kind, (width, height) = check_upload(data, LIMIT)
    except CxrmapError as error:
        assert str(error)  # a message that says what was wrong
        return
    assert kind in ALLOWED_FORMATS and width > 0 and height > 0 and width * height <= LIMIT


@QUICK
@given(uploads)
def test_fuzz_upload_check(data):
    _check(data)


@pytest.mark.slow
@LONG
@given(uploads)
def test_fuzz_upload_check_long(data):
    _check(data)
