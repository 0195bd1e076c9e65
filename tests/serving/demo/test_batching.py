"""Request batching: the batcher's grouping, errors and shutdown, and the demo API answering through it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from cxrmap.core.errors import BusyError, DataError  # noqa: E402
from cxrmap.predict.maps import display_image  # noqa: E402
from cxrmap.serving.demo.app import create_app, serve_in_background  # noqa: E402
from cxrmap.serving.demo.batching import Batcher  # noqa: E402
from tests.helpers.checkpoints import write_tiny_checkpoint  # noqa: E402
from tests.serving.demo.test_api import decode_data_uri, gradient, png_of  # noqa: E402


def wait_until(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Held:
    """A batch function that records its batches and holds the first until ``release`` is set."""

    def __init__(self, run=lambda items: [item * 10 for item in items]):
        self.inner = run
        self.batches: list[list] = []
        self.release = threading.Event()

    def __call__(self, items):
        self.batches.append(list(items))
        if len(self.batches) == 1:
            assert self.release.wait(20)
        return self.inner(items)


# ------------------------------------------------------------------------------------------ the batcher
def test_requests_arriving_while_busy_run_as_one_batch_each_with_its_result():
    run = Held()
    batcher = Batcher(run, max_batch=4, max_wait=0)
    try:
        first = batcher.submit(1)
        wait_until(lambda: run.batches)  # the first call is running (held)
        later = [batcher.submit(value) for value in range(2, 8)]
        assert batcher.queued == 6
        run.release.set()
        assert first.result(10) == 10
        assert [future.result(10) for future in later] == [20, 30, 40, 50, 60, 70]
        assert run.batches == [[1], [2, 3, 4, 5], [6, 7]]  # at most max_batch per call, in order
    finally:
        batcher.close()


def test_a_failing_item_gets_its_error_and_the_others_their_results():
    def run(items):
        if "bad" in items:
            raise DataError("cannot read 'bad'")
        return [item.upper() for item in items]

    held = Held(run)
    batcher = Batcher(held, max_batch=8, max_wait=0)
    try:
        first = batcher.submit("a")
        wait_until(lambda: held.batches)
        futures = [batcher.submit(item) for item in ("b", "bad", "c")]
        held.release.set()
        assert first.result(10) == "A"
        assert futures[0].result(10) == "B" and futures[2].result(10) == "C"
        with pytest.raises(DataError, match="cannot read 'bad'"):
            futures[1].result(10)
        # the batch failed as a whole, then each item ran alone
        assert held.batches == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"]]
    finally:
        batcher.close()


def test_a_batch_waits_for_announced_requests_only():
    batches: list[list] = []

    def run(items):
        batches.append(list(items))
        return items

    batcher = Batcher(run, max_batch=8, max_wait=30.0)
    try:
        for _ in range(3):  # three requests on their way (decoding): the batch waits for them
            batcher.expect()
        start = time.monotonic()
        first = batcher.submit("a")
        time.sleep(0.2)
        second = batcher.submit("b")
        time.sleep(0.2)
        assert batches == []  # still waiting for the third
        batcher.withdraw()  # the third was refused before it was submitted: nobody else is coming
        assert first.result(20) == "a" and second.result(20) == "b"
        assert batches == [["a", "b"]]
        assert time.monotonic() - start < 20  # far below the 30 s window
    finally:
        batcher.close()


def test_a_lone_request_does_not_wait():
    batcher = Batcher(lambda items: items, max_batch=8, max_wait=30.0)
    try:
        start = time.monotonic()
        assert batcher.submit("x").result(20) == "x"
        batcher.expect()
        batcher.withdraw()  # announced, then refused before it was submitted: nobody is coming
        assert batcher.submit("y").result(20) == "y"
        assert time.monotonic() - start < 20  # far below the 30 s window
    finally:
        batcher.close()


def test_close_answers_what_was_submitted_stops_the_thread_and_refuses_more():
    run = Held()
    batcher = Batcher(run, max_batch=2, max_wait=0)
    first = batcher.submit(1)
    wait_until(lambda: run.batches)
    queued = [batcher.submit(2), batcher.submit(3)]
    cancelled = batcher.submit(4)
    assert cancelled.cancel()  # its request went away: left out of the batch
    closer = threading.Thread(target=batcher.close)
    closer.start()
    run.release.set()
    closer.join(20)
    assert first.result(1) == 10 and [future.result(1) for future in queued] == [20, 30]
    assert run.batches == [[1], [2, 3]]
    assert not batcher._thread.is_alive()
    with pytest.raises(BusyError, match="shutting down"):
        batcher.submit(5)


def test_batcher_refuses_bad_settings():
    with pytest.raises(Exception, match="at least 1"):
        Batcher(lambda items: items, max_batch=0)


# ------------------------------------------------------------------------------------------ through the API
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def predictor(checkpoint):
    from cxrmap.predict.predictor import Predictor

    return Predictor.from_checkpoint(checkpoint)


def concurrent_posts(url: str, uploads: list[bytes]) -> list:
    import httpx

    def post(data: bytes):
        with httpx.Client(base_url=url, timeout=60) as http:
            return http.post("/api/v1/predict", files={"file": ("cxr.png", data, "image/png")})

    with ThreadPoolExecutor(len(uploads)) as pool:
        return list(pool.map(post, uploads))


def hold_first_batch_until_all_queued(service, count: int) -> list[list]:
    """Make the service's first batch wait until the ``count - 1`` other requests are queued behind it."""
    run, batches = service.batcher.run, []

    def held(images):
        if not batches:
            wait_until(lambda: len(images) + service.batcher.queued == count)
        batches.append([image.shape for image in images])
        return run(images)

    service.batcher.run = held
    return batches


def test_concurrent_requests_each_get_the_prediction_of_their_own_image(checkpoint, predictor):
    images = [
        gradient(80, 72),
        255 - gradient(64, 96),
        gradient(120, 50) // 2,
        np.full((70, 70), 9, np.uint8),
    ]
    app = create_app(checkpoint, workers=2, max_queue=8, batch_size=8)
    service = app.state.service
    batches = hold_first_batch_until_all_queued(service, len(images))
    with serve_in_background(app) as url:
        responses = concurrent_posts(url, [png_of(image) for image in images])
    # those that came while the first batch ran went through the network together, all in one call (or
    # all four in the first, when they were all accepted before it started); each image exactly once
    assert len(batches) <= 2 and sorted(shape for batch in batches for shape in batch) == sorted(
        image.shape for image in images
    )
    scores = set()
    for image, response in zip(images, responses, strict=True):
        assert response.status_code == 200, response.text
        body, expected = response.json(), predictor.predict([image])[0]
        assert (body["height"], body["width"]) == image.shape
        assert body["score"] == pytest.approx(expected.score, abs=1e-5)
        assert body["severity"]["lung_share"] == pytest.approx(expected.severity["lung_share"], abs=1e-6)
        assert decode_data_uri(body["cxr_png"]).size == (image.shape[1], image.shape[0])
        scores.add(round(body["score"], 6))
    assert len(scores) > 1  # the images differ, so do their answers: no answer went to another request
    assert service.in_flight == 0


def test_a_failing_image_in_a_batch_fails_alone(checkpoint, predictor):
    good, bad, other = gradient(80, 72), gradient(77, 91), 255 - gradient(60, 60)
    app = create_app(checkpoint, workers=2, max_queue=8, batch_size=8)
    service = app.state.service
    predict = service.batcher.run

    def failing(images):
        if any(image.shape == bad.shape for image in images):
            raise DataError("this image breaks the network", code="unreadable_image")
        return predict(images)

    service.batcher.run = failing
    batches = hold_first_batch_until_all_queued(service, 3)
    with serve_in_background(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(concurrent_posts, url, [png_of(good)])
        wait_until(lambda: service.batcher.batches == 1)  # the good image alone is in the network (held)
        later = concurrent_posts(url, [png_of(bad), png_of(other)])
        responses = first.result(60) + later
    # the two that came while the network was busy ran as one batch, which failed; then each ran alone
    assert batches[0] == [good.shape] and sorted(batches[1]) == sorted([bad.shape, other.shape])
    assert sorted(batches[2:]) == sorted([[bad.shape], [other.shape]])
    for image, response in ((good, responses[0]), (other, responses[2])):
        assert response.status_code == 200, response.text
        assert response.json()["score"] == pytest.approx(predictor.predict([image])[0].score, abs=1e-5)
    assert responses[1].status_code == 422
    assert responses[1].json()["error"]["message"] == "this image breaks the network"


def test_the_map_of_a_large_film_is_drawn_at_display_size(checkpoint, predictor):
    image = cv2.GaussianBlur(gradient(1500, 1100), (0, 0), 3)
    with TestClient(create_app(checkpoint, max_pixels=4_000_000)) as client:
        response = client.post("/api/v1/predict", files={"file": ("big.png", png_of(image), "image/png")})
        schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["PredictResponse"]
    assert response.status_code == 200, response.text
    body = response.json()
    expected = predictor.predict([image])[0]
    assert (body["width"], body["height"]) == (1100, 1500)  # the figures are of the film as uploaded
    assert body["score"] == pytest.approx(expected.score, abs=1e-5)
    assert body["severity"]["lung_share"] == pytest.approx(expected.severity["lung_share"], abs=1e-6)
    assert (body["map_width"], body["map_height"]) == (751, 1024)  # 1100 * 1024 / 1500 = 750.9
    overlay = np.asarray(decode_data_uri(body["map_png"]))
    assert overlay.shape == (1024, 751, 3)
    # the map's value (HSV V = the brightest channel) is the radiograph's gray level (paper Sec. II-D)
    small = cv2.resize(image, (751, 1024), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(overlay.max(axis=2).astype(int) - small).max() <= 1
    cxr = np.asarray(decode_data_uri(body["cxr_png"]))  # the radiograph the map lies on, at its size
    np.testing.assert_array_equal(cxr, display_image(image))
    assert "1024" in schema["properties"]["map_png"]["description"]
    assert {"map_width", "map_height"} <= set(schema["properties"])


def test_serve_with_the_onnx_backend(tmp_path, monkeypatch, checkpoint, predictor):
    pytest.importorskip("onnx", reason="the onnx backend needs the onnx package (pip install 'cxrmap[fast]')")
    pytest.importorskip(
        "onnxruntime", reason="the onnx backend needs onnxruntime (pip install 'cxrmap[fast]')"
    )
    import uvicorn
    from typer.testing import CliRunner

    from cxrmap.cli import app as cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(app))
    args = ["serve", "--model", str(checkpoint), "--backend", "onnx", "--batch-size", "4"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "inference backend onnx, batches of up to 4" in result.output
    service = calls[0].state.service
    assert service.batcher.max_batch == 4 and service.predictor.backend.name == "onnx"
    image = gradient(90, 70)
    with TestClient(calls[0], base_url="http://127.0.0.1:8000") as client:
        response = client.post("/api/v1/predict", files={"file": ("x.png", png_of(image), "image/png")})
        assert client.get("/api/v1/model").json()["backend"] == "onnx"
    assert response.status_code == 200, response.text
    assert response.json()["score"] == pytest.approx(predictor.predict([image])[0].score, abs=1e-4)
