"""Property tests of everything a reviewer can send: RLE masks, PNG mask uploads, and the JSON bodies of
the submit and draft endpoints. Each example gives a project error (a MaskError, a 4xx JSON answer) or a
correct result; never another exception, never a 500. The ``slow`` variants run many more examples."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cxrmap.serving.annotate.masks import MaskError, decode_mask_upload, decode_rle, encode_rle

QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_PIXELS = 4096

# Counts mostly near the mask's size, sometimes anywhere in (and beyond) 64 bits.
COUNT = st.one_of(
    st.integers(0, 20),
    st.integers(-3, 3),
    st.sampled_from([2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63), 10**30]),
    st.integers(),
)
COUNTS = st.one_of(
    st.lists(COUNT, max_size=40),
    st.lists(
        st.one_of(
            COUNT,
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
            st.text(max_size=3),
            st.none(),
        ),
        max_size=6,
    ),
    st.none(),
    st.text(max_size=5),
)
SIDE = st.integers(1, 12)


def check_rle(counts, width, height) -> None:
    try:
        mask = decode_rle(counts, width, height)
    except MaskError:
        return
    assert mask.shape == (height, width) and mask.dtype == bool
    assert int(mask.sum()) == sum(counts[1::2])
    assert np.array_equal(decode_rle(encode_rle(mask), width, height), mask)


@QUICK
@given(COUNTS, SIDE, SIDE)
def test_rle_gives_a_mask_error_or_the_mask(counts, width, height):
    check_rle(counts, width, height)


@QUICK
@given(st.data(), SIDE, SIDE)
def test_rle_of_any_mask_decodes_back(data, width, height):
    bits = data.draw(st.lists(st.booleans(), min_size=width * height, max_size=width * height))
    mask = np.array(bits, bool).reshape(height, width)
    assert np.array_equal(decode_rle(encode_rle(mask), width, height), mask)


@pytest.mark.slow
@LONG
@given(COUNTS, SIDE, SIDE)
def test_rle_long(counts, width, height):
    check_rle(counts, width, height)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@st.composite
def png_bytes(draw) -> bytes:
    """Bytes that are, or nearly are, a PNG: a real binary/grey/colour PNG, maybe cut or altered; a PNG
    header declaring any size over any data; or any bytes at all."""
    kind = draw(st.sampled_from(["real", "header", "any"]))
    if kind == "any":
        return draw(st.binary(max_size=200))
    if kind == "header":
        width, height = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
        depth, colour = draw(st.sampled_from([1, 2, 8, 16])), draw(st.sampled_from([0, 2, 3, 4, 6]))
        ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
        rest = draw(st.binary(max_size=100))
        idat = _chunk(b"IDAT", zlib.compress(rest)) if draw(st.booleans()) else rest
        return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + idat + _chunk(b"IEND", b"")
    width, height = draw(SIDE), draw(SIDE)
    mode = draw(st.sampled_from(["1", "L", "RGB", "LA", "P", "I;16"]))
    levels = draw(st.sampled_from([(0, 255), (0, 1), (0, 7, 255)]))
    values = draw(st.lists(st.sampled_from(levels), min_size=width * height, max_size=width * height))
    array = np.array(values, np.uint8).reshape(height, width)
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format="PNG")
    data = buffer.getvalue()
    cut = draw(st.sampled_from([None, "cut", "flip"]))
    if cut == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif cut == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


def check_png_upload(data: bytes, width: int, height: int, text: str | None = None) -> None:
    body = {"format": "png", "data": base64.b64encode(data).decode() if text is None else text}
    try:
        mask = decode_mask_upload(body, width, height, MAX_PIXELS)
    except MaskError:
        return
    assert mask.shape == (height, width) and mask.dtype == bool
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (width, height)
        assert np.array_equal(np.asarray(image.convert("L")) > 0, mask)


@QUICK
@given(png_bytes(), SIDE, SIDE)
def test_png_upload_gives_a_mask_error_or_the_mask(data, width, height):
    check_png_upload(data, width, height)


@QUICK
@given(st.text(max_size=60))
def test_png_upload_of_any_text_as_base64(text):
    check_png_upload(b"", 4, 4, text)


@pytest.mark.slow
@LONG
@given(png_bytes(), SIDE, SIDE)
def test_png_upload_long(data, width, height):
    check_png_upload(data, width, height)


# ------------------------------------------------------------------------------ the API's JSON bodies
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def submit_bodies(draw):
    """Submit bodies: any JSON, or objects shaped like a submission with any values in their fields."""
    if draw(st.integers(0, 3)) == 0:
        return draw(JSON)
    body = draw(st.dictionaries(st.sampled_from(["decision", "choice", "start_from", "mask", "x"]), JSON))
    body["decision"] = draw(st.sampled_from(["choose", "reject"]) | JSON)
    if body["decision"] == "reject" and draw(st.booleans()):
        fmt = draw(st.sampled_from(["rle", "png"]) | JSON)
        mask = {"format": fmt, "width": draw(COUNT | JSON), "height": draw(COUNT | JSON)}
        mask["counts" if fmt == "rle" else "data"] = draw(COUNTS | JSON)
        if fmt == "png" and draw(st.booleans()):
            mask["data"] = base64.b64encode(draw(png_bytes())).decode()
        body["mask"] = mask
    return body


@st.composite
def draft_bodies(draw):
    if draw(st.integers(0, 3)) == 0:
        return draw(JSON)
    return {
        "seq": draw(COUNT | JSON),
        "state": draw(JSON),
        **draw(st.dictionaries(st.text(max_size=4), JSON)),
    }


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A review server with ``rev1`` holding one open review: ``(rev1 client, review item)``."""
    pytest.importorskip("fastapi")
    pytest.importorskip("argon2")
    from tests.helpers.annotate import review_server, tiny_data

    folder = tmp_path_factory.mktemp("fuzz")
    with review_server(folder / "srv", tiny_data(folder / "data", n_images=8)) as (_, rev1, item):
        yield rev1, item


def check_answer(response) -> None:
    assert response.status_code < 500, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"} and isinstance(body["error"]["message"], str)


def fuzz_submit(api, body) -> None:
    rev1, item = api
    answer = rev1.client.post(
        f"/api/v1/reviews/{item['token']}/submit", json=body, headers={"X-CSRF-Token": rev1.csrf}
    )
    check_answer(answer)
    if answer.status_code == 200:
        assert answer.json()["status"] == "submitted"


def fuzz_draft(api, body) -> None:
    rev1, item = api
    answer = rev1.client.put(
        f"/api/v1/reviews/{item['token']}/draft", json=body, headers={"X-CSRF-Token": rev1.csrf}
    )
    check_answer(answer)
    if answer.status_code == 200:
        saved = answer.json()
        assert saved["seq"] == body["seq"] if saved["saved"] else saved["seq"] > body["seq"]


# Drafts first: a successful submission closes the review's draft (409 afterwards, still checked).
@QUICK
@given(body=draft_bodies())
def test_draft_bodies_never_give_a_500(api, body):
    fuzz_draft(api, body)


@QUICK
@given(body=submit_bodies())
def test_submit_bodies_never_give_a_500(api, body):
    fuzz_submit(api, body)


@pytest.mark.slow
@LONG
@given(body=draft_bodies())
def test_draft_bodies_long(api, body):
    fuzz_draft(api, body)


@pytest.mark.slow
@LONG
@given(body=submit_bodies())
def test_submit_bodies_long(api, body):
    fuzz_submit(api, body)
