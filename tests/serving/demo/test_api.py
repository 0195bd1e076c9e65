"""The demo's JSON API: correct answers, every refusal of bad input, security headers, the OpenAPI schema."""

from __future__ import annotations

import base64
import io
import re
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from cxrmap.serving.demo.app import create_app, serve_in_background  # noqa: E402
from cxrmap.serving.http.middleware import SECURITY_HEADERS  # noqa: E402
from cxrmap.serving.http.uploads import check_upload  # noqa: E402
from tests.helpers.checkpoints import write_tiny_checkpoint

MAX_UPLOAD = 2 * 2**20
MAX_PIXELS = 4_000_000
PATIENT_NAME = "Doe^Jane^Secretname"


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def app(checkpoint):
    return create_app(checkpoint, max_upload_bytes=MAX_UPLOAD, max_pixels=MAX_PIXELS, workers=1, max_queue=2)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def predictor(checkpoint):
    from cxrmap.predict.predictor import Predictor

    return Predictor.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def phantom_images(tmp_path_factory) -> list[Path]:
    from cxrmap.data.phantom.shapes import generate

    out = tmp_path_factory.mktemp("phantom")
    root = generate(out, n_covid=1, n_control=1, size=96, seed=3, progress=False)
    images = sorted((root / "QaTa-COV19-v1" / "Images").glob("*.png"))
    images += sorted((root / "Control_Group" / "Control_Group_I").glob("*.png"))
    assert len(images) == 2
    return images


def png_of(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(height: int = 80, width: int = 72) -> np.ndarray:
    return (np.add.outer(np.arange(height) * 2, np.arange(width)) % 256).astype(np.uint8)


def decode_data_uri(uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    data = base64.b64decode(uri[len(prefix) :])
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data))


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose valid IHDR (correct CRC) declares ``width`` x ``height`` 8-bit gray pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    chunks = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def dicom_bytes(photometric: str = "MONOCHROME2") -> bytes:
    """A small DICOM radiograph with a patient name, written with pydicom (grayscale 16-bit or RGB 8-bit)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = "ID-998877"
    ds.Modality = "DX"
    ds.Rows, ds.Columns = 48, 40
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = np.full((48, 40, 3), 120, np.uint8).tobytes()
    else:
        ds.SamplesPerPixel = 1
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = (gradient(48, 40).astype(np.uint16) * 16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def post(client, data: bytes, name: str = "cxr.png", content_type: str = "image/png"):
    return client.post("/api/v1/predict", files={"file": (name, data, content_type)})


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert len(body["error"]["message"]) > 20
    assert_security_headers(response)
    return body["error"]


def assert_security_headers(response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "img-src 'self' data: blob:" in csp
    script = re.search(r"script-src ([^;]*)", csp).group(1)
    assert "unsafe-inline" not in script and "unsafe-eval" not in script


# ------------------------------------------------------------------------------------------ answers
def assert_same_as_predictor(body: dict, image: np.ndarray, predictor) -> None:
    expected = predictor.predict([image])[0]
    assert body["covid"] is bool(expected.covid)
    assert body["decision"] == ("covid" if expected.covid else "no_covid")
    assert body["score"] == pytest.approx(expected.score, abs=1e-6)
    assert body["threshold"] == pytest.approx(expected.threshold)
    assert body["covid"] is (body["score"] >= body["threshold"])
    if expected.severity is None:
        assert body["severity"] is None and body["severity_note"]
    else:
        for key, value in expected.severity.items():
            assert body["severity"][key] == (pytest.approx(value) if isinstance(value, float) else value)
    height, width = image.shape
    assert (body["width"], body["height"]) == (width, height)
    overlay = decode_data_uri(body["map_png"])
    assert overlay.size == (width, height) and overlay.mode == "RGB"
    assert (body["map_width"], body["map_height"]) == (width, height)  # small images: drawn at their size
    cxr = decode_data_uri(body["cxr_png"])
    assert cxr.size == (width, height) and cxr.mode == "L"
    np.testing.assert_array_equal(np.asarray(cxr), image)
    from cxrmap.predict.maps import infection_map

    np.testing.assert_array_equal(np.asarray(overlay), infection_map(image, expected.prob))


def test_predict_phantom_images(client, predictor, phantom_images):
    from cxrmap.data.io import read_image

    for path in phantom_images:
        response = post(client, path.read_bytes(), name=path.name)
        assert response.status_code == 200, response.text
        body = response.json()
        assert_security_headers(response)
        assert response.headers["cache-control"] == "no-store"
        assert body["trained_on_phantoms"] is True and body["warnings"] and "phantom" in body["warnings"][0]
        assert re.fullmatch(r"[0-9a-f]{12}", body["model_id"])
        assert "research use only" in body["notice"].lower()
        assert body["elapsed_ms"] > 0
        assert path.name not in response.text  # the upload's name is not echoed
        assert_same_as_predictor(body, read_image(path), predictor)


def test_predict_real_samples(client, predictor, samples_root):
    from cxrmap.data.io import read_image

    images = sorted(samples_root.glob("Infection Segmentation Data/Test/*/images/*.png"))[:2]
    assert images, f"no sample images under {samples_root}"
    for path in images:
        response = post(client, path.read_bytes(), name=path.name)
        assert response.status_code == 200, response.text
        assert_same_as_predictor(response.json(), read_image(path), predictor)


def test_predict_jpeg_and_monochrome_dicom(client, predictor):
    from cxrmap.data.io import decode_image

    buffer = io.BytesIO()
    Image.fromarray(gradient()).save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    response = post(client, jpeg, name="x.jpg", content_type="image/jpeg")
    assert response.status_code == 200, response.text
    assert_same_as_predictor(response.json(), decode_image(jpeg), predictor)

    dicom = dicom_bytes("MONOCHROME2")
    response = post(client, dicom, name="x.dcm", content_type="application/dicom")
    assert response.status_code == 200, response.text
    assert_same_as_predictor(response.json(), decode_image(dicom), predictor)
    for secret in ("Secretname", "Doe", "998877"):
        assert secret not in response.text


def test_model_card_and_health(client, checkpoint):
    response = client.get("/api/v1/model")
    assert response.status_code == 200
    card = response.json()
    assert (card["arch"], card["encoder"], card["input_size"]) == ("unet", "resnet18", 64)
    assert card["channels"] == ["infection", "lung"] and card["threshold"] == 0.5
    assert card["trained_on_phantoms"] is True and card["data_kind"] == "phantom"
    assert "phantom" in card["warnings"][0] and "research use only" in card["notice"].lower()
    assert card["metrics"]["sensitivity"] == 0.91 and card["metrics"]["f1"] == {"mean": 0.8, "ci": 0.02}
    assert card["metrics"]["auc"] is None  # an undefined figure (NaN) is sent as null, valid JSON
    assert card["checkpoint"] == "model.pt" and str(checkpoint.parent) not in response.text
    assert card["parameters"] > 1_000_000
    rows = dict(card["card"]["rows"])  # the card in the paper's terms, as the page shows it
    assert rows["Model"] == "U-Net + resnet18" and rows["Parameters"] == f"{card['parameters']:,}"
    assert rows["Data"] == "synthetic phantoms (not patients)" and rows["Input size"] == "64 × 64 px"
    assert [t["title"][:10] for t in card["card"]["tables"]] == ["Table I: i", "Table III:"]
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["model_id"] == card["model_id"]
    assert_security_headers(health)


def test_real_data_model_has_no_phantom_warning(tmp_path):
    app = create_app(write_tiny_checkpoint(tmp_path / "real.pt", data_kind="real"))
    card = TestClient(app).get("/api/v1/model").json()
    assert card["trained_on_phantoms"] is False and card["warnings"] == []


# ------------------------------------------------------------------------------------------ refusals
def test_oversize_body_refused_from_content_length(client):
    response = post(client, b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_UPLOAD + 10))
    error = assert_error(response, 413, "upload_too_large")
    assert f"{MAX_UPLOAD:,}" in error["message"]


def test_oversize_body_refused_without_content_length(client):
    """Chunked upload (no Content-Length): refused by counting the received bytes."""

    def body():
        yield b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        yield b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n"
        for _ in range(64):
            yield b"\0" * 65536

    response = client.post(
        "/api/v1/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=xyz"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "upload_too_large")


def test_body_limit_stops_reading_when_the_cap_is_crossed():
    """ASGI level: the body is read chunk by chunk and reading stops at the first chunk over the cap."""
    import asyncio

    from cxrmap.serving.http.middleware import BodySizeLimitMiddleware

    chunk, cap = 1000, 4500
    consumed, sent = [], []

    async def app(scope, receive, send):  # reads the whole body, as a form parser would
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        consumed.append(chunk)
        return {"type": "http.request", "body": b"x" * chunk, "more_body": len(consumed) < 100}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/v1/predict", "headers": []}
    asyncio.run(BodySizeLimitMiddleware(app, max_bytes=cap)(scope, receive, send))
    assert len(consumed) == cap // chunk + 1
    assert sent[0]["status"] == 413 and b"upload_too_large" in sent[1]["body"]


def test_wrong_magic_with_png_name_refused(client):
    error = assert_error(post(client, b"GIF89a" + b"\0" * 200, name="chest.png"), 415, "unsupported_format")
    assert "PNG, JPEG or DICOM" in error["message"]
    assert_error(
        post(client, b"<svg xmlns='http://www.w3.org/2000/svg'/>", name="x.png"), 415, "unsupported_format"
    )


def test_decompression_bomb_refused_before_decoding(client):
    data = bomb_png(10000, 9000)
    assert len(data) < 200
    assert check_upload(data, 10**9) == ("png", (10000, 9000))
    error = assert_error(post(client, data), 413, "too_many_pixels")
    assert "10000 x 9000" in error["message"] and f"{MAX_PIXELS:,}" in error["message"]
    # sizes beyond what Pillow opens at all are refused the same way
    assert_error(post(client, bomb_png(30000, 30000)), 413, "too_many_pixels")


def test_truncated_and_corrupt_png_refused(client):
    data = png_of(gradient())
    assert_error(post(client, data[: len(data) // 2]), 422, "unreadable_image")
    assert_error(post(client, data[:20]), 422, "unreadable_image")  # cut inside the IHDR chunk
    corrupt = bytearray(data)
    corrupt[20] ^= 0xFF  # a byte of the declared height: the IHDR checksum no longer matches
    error = assert_error(post(client, bytes(corrupt)), 422, "unreadable_image")
    assert "PNG" in error["message"] and "checksum" in error["message"]


def test_rgb_dicom_refused_without_echoing_tags(client):
    response = post(client, dicom_bytes("RGB"), name="scan.dcm", content_type="application/dicom")
    error = assert_error(response, 422, "dicom_refused")
    assert "monochrome" in error["message"].lower()
    for secret in ("Secretname", "Doe", "998877", "scan.dcm"):
        assert secret not in response.text


def test_empty_upload_and_missing_field(client):
    assert_error(post(client, b""), 400, "empty_upload")
    response = client.post("/api/v1/predict", files={"other": ("x.png", png_of(gradient()), "image/png")})
    error = assert_error(response, 422, "missing_field")
    assert "file" in error["message"]
    assert_error(client.post("/api/v1/predict"), 422, "missing_field")


def test_unknown_route_and_method_answer_json(client):
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.get("/api/v1/predict"), 405, "method_not_allowed")
    assert client.get("/docs").status_code == 404  # interactive docs would load external scripts


def test_header_readers():
    buffer = io.BytesIO()
    Image.fromarray(gradient(33, 47)).save(buffer, format="JPEG", progressive=True)
    assert check_upload(buffer.getvalue(), 10_000) == ("jpeg", (47, 33))
    assert check_upload(png_of(gradient(5, 7)), 100) == ("png", (7, 5))
    assert check_upload(dicom_bytes(), 10_000) == ("dicom", (40, 48))


# ------------------------------------------------------------------------------------------ load
def test_busy_server_answers_503_and_health_stays_responsive(checkpoint):
    """With one worker and no queue, a second prediction is refused at once; /healthz still answers."""
    import httpx

    app = create_app(checkpoint, workers=1, max_queue=0)
    service = app.state.service
    release = threading.Event()
    predict = service.batcher.run

    def slow_predict(images):
        release.wait(20)
        return predict(images)

    service.batcher.run = slow_predict
    data = png_of(gradient())
    with serve_in_background(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        first: dict = {}

        def first_request():
            first["r"] = http.post("/api/v1/predict", files={"file": ("a.png", data)})

        thread = threading.Thread(target=first_request)
        thread.start()
        deadline = time.monotonic() + 10
        while service.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        health = http.get("/healthz")  # answered while the prediction is still held: not queued behind it
        assert health.status_code == 200 and health.json()["in_flight"] == 1
        busy = http.post("/api/v1/predict", files={"file": ("b.png", data)})
        assert_error(busy, 503, "busy")
        assert int(busy.headers["retry-after"]) > 0
        release.set()
        thread.join(30)
    assert first["r"].status_code == 200
    assert service.in_flight == 0


# ------------------------------------------------------------------------------------------ page, schema
def test_page_has_no_inline_script_or_external_asset(client):
    response = client.get("/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert_security_headers(response)
    html = response.text
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html)  # script elements hold no code
    assert not re.search(r"\son[a-z]+\s*=", html)  # no inline event handlers
    assert not re.search(r"<style\b|\sstyle\s*=", html)
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # no external asset
    for asset in re.findall(r"(?:src|href)=\"(/[^\"]+)\"", html):
        assert client.get(asset).status_code == 200, asset
    assert 'name="viewport"' in html
    assert client.get("/colorbar.png").content.startswith(b"\x89PNG")


def test_openapi_schema_matches_answers(client, phantom_images):
    schema = client.get("/api/v1/openapi.json").json()
    paths = schema["paths"]
    assert "post" in paths["/api/v1/predict"]
    assert "get" in paths["/api/v1/model"] and "get" in paths["/healthz"]
    form = paths["/api/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in form
    components = schema["components"]["schemas"]

    def properties(name: str) -> set[str]:
        return set(components[name]["properties"])

    body = post(client, phantom_images[0].read_bytes()).json()
    assert properties("PredictResponse") == set(body)
    if body["severity"] is not None:
        assert properties("Severity") == set(body["severity"])
    assert properties("ModelCard") == set(client.get("/api/v1/model").json())
    assert properties("Health") == set(client.get("/healthz").json())
    assert properties("ErrorResponse") == {"error"}
    assert properties("ErrorDetail") == {"code", "message", "request_id"}
    responses = paths["/api/v1/predict"]["post"]["responses"]
    assert {"200", "413", "415", "422", "503"} <= set(responses)


# ------------------------------------------------------------------------------------------ finding the model
def test_default_model_is_the_latest_run_and_cli_says_so(tmp_path, monkeypatch, checkpoint):
    import os

    import uvicorn
    from typer.testing import CliRunner

    from cxrmap.cli import app as cli
    from cxrmap.core.errors import CheckpointError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="cxrmap run"):
        create_app()
    result = CliRunner().invoke(cli, ["serve"])
    assert isinstance(result.exception, CheckpointError)

    older, newer = tmp_path / "runs" / "a" / "model.pt", tmp_path / "runs" / "b" / "model.pt"
    for index, path in enumerate((older, newer)):
        path.parent.mkdir(parents=True)
        path.write_bytes(checkpoint.read_bytes())
        os.utime(path, (1_000_000 + index, 1_000_000 + index))
    assert create_app().state.service.path.resolve() == newer.resolve()

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    result = CliRunner().invoke(cli, ["serve", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert "most recent run" in result.output and str(Path("runs") / "b" / "model.pt") in result.output
    assert "phantom" in result.output
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8123
    # on loopback only loopback Host names are served (no DNS rebinding from a web page elsewhere)
    served = calls[0]["app"]
    assert TestClient(served, base_url="http://127.0.0.1:8123").get("/healthz").status_code == 200
    assert TestClient(served, base_url="http://localhost:8123").get("/healthz").status_code == 200
    refused = TestClient(served, base_url="http://rebound.example.com").get("/healthz")
    assert_error(refused, 400, "host_not_allowed")
    assert "rebound" not in refused.text
