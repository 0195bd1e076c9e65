"""Drawn-mask decoding: run lengths are checked as Python integers before any array is made, so counts whose
64-bit sum wraps (or that overflow 64 bits) are a clear error, alone and through the review API."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from cxrmap.core.errors import DataError
from cxrmap.serving.annotate.masks import MaskError, decode_mask_upload, decode_rle, encode_rle

BIG = 2**63 - 1


def test_mask_error_is_a_data_error():
    assert issubclass(MaskError, DataError)


@pytest.mark.parametrize(
    ("counts", "words"),
    [
        ([BIG, BIG, 256 * 256 + 2], "sum to more than the 256 x 256 = 65,536 pixels"),
        ([2**64], "sum to more than the 256 x 256"),
        ([0, 2**64, -(2**64) + 65536], "negative"),
        ([65536, -1, 1], "negative"),
        ([0] * (65536 + 2), "holds 65,538 run lengths but a 256 x 256 mask has at most 65,537"),
        ([65535], "sum to 65535 pixels but the mask is 256 x 256 = 65536"),
        ([1.0] * 4, "whole numbers"),
        ([True, 65535], "whole numbers"),
        ("65536", "whole numbers"),
    ],
)
def test_run_lengths_that_wrap_or_overflow_are_refused(counts, words):
    with pytest.raises(MaskError, match=words):
        decode_rle(counts, 256, 256)


def test_the_wrapping_counts_do_not_crash_the_interpreter():
    code = (
        "from cxrmap.serving.annotate.masks import MaskError, decode_rle\n"
        "try:\n"
        "    decode_rle([2**63 - 1, 2**63 - 1, 256 * 256 + 2], 256, 256)\n"
        "except MaskError as error:\n"
        "    print('refused:', error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused: mask.counts sum to more than")


def test_zero_runs_and_a_leading_zero_still_decode():
    mask = np.array([[1, 1], [0, 1]], bool)
    assert np.array_equal(decode_rle(encode_rle(mask), 2, 2), mask)
    assert np.array_equal(decode_rle([0, 0, 1, 3], 2, 2), np.array([[0, 1], [1, 1]], bool))
    upload = {"format": "rle", "width": 2, "height": 2, "counts": [0, 2, 1, 1]}
    assert np.array_equal(decode_mask_upload(upload, 2, 2, 100), mask)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.helpers.annotate import tiny_data

    return tiny_data(tmp_path_factory.mktemp("masks-data"), n_images=8, manual_share=0.5)


@pytest.mark.parametrize("counts", [[BIG, BIG, "PIXELS+2"], [2**64], [2**70, 1]])
def test_wrapping_counts_over_http_are_a_422_and_the_server_still_answers(tmp_path, data, counts):
    pytest.importorskip("fastapi")
    pytest.importorskip("argon2")
    from tests.helpers.annotate import review_server

    with review_server(tmp_path / "srv", data) as (app, rev1, item):
        w, h = item["image"]["width"], item["image"]["height"]
        counts = [w * h + 2 if c == "PIXELS+2" else c for c in counts]
        body = {"decision": "reject", "mask": {"format": "rle", "width": w, "height": h, "counts": counts}}
        submit = f"/api/v1/reviews/{item['token']}/submit"
        answer = rev1.client.post(submit, json=body, headers={"X-CSRF-Token": rev1.csrf})
        assert answer.status_code == 422
        assert answer.json()["error"]["code"] == "invalid_mask"
        assert "mask.counts sum to more than" in answer.json()["error"]["message"]
        assert rev1.get("/healthz").status_code == 200
        good = {"format": "rle", "width": w, "height": h, "counts": [w * h]}
        done = rev1.send("POST", submit, {"decision": "reject", "mask": good})
        assert done["status"] == "submitted"
