"""The clinical demo: a web page and a JSON API that turn an uploaded chest X-ray into an infection map.

``create_app`` builds the FastAPI application around one checkpoint, loaded once:

- ``GET /`` the page (static HTML/JS/CSS, no external asset, no inline script);
- ``POST /api/v1/predict`` multipart field ``file`` (PNG, JPEG or monochrome DICOM) -> the COVID-19 decision
  (paper Sec. II-D: any pixel probability >= threshold), its score, the infected share of the lungs per zone,
  the radiograph and its infection map (paper Sec. II-D, Fig. 5) as PNG data URIs;
- ``GET /api/v1/model`` the model card; ``GET /healthz``; ``GET /colorbar.png`` the map's colour legend;
- ``GET /api/v1/openapi.json`` the OpenAPI schema (no interactive docs: they need external scripts).

Uploads are vetted by the shared HTTP layer (:mod:`cxrmap.serving.http`: size cap while streaming, format by
content, declared pixel count, DICOM header) and processed in memory; nothing is written to disk and no
DICOM tag is echoed.
Uploads are decoded and their maps drawn in a bounded pool of worker threads; the network runs in one
batching thread (:mod:`cxrmap.serving.demo.batching`) that passes the requests waiting for it through one
``Predictor.predict`` call (up to ``batch_size``). The map is drawn at display size
(:func:`cxrmap.predict.maps.display_shape`: longest side at most 1024 px); the decision and figures come from
the network's output as in ``cxrmap predict``. Beyond the queue limit the server answers 503 with
``Retry-After`` rather than piling up work, so ``/healthz`` and the page stay responsive under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, create_model

from cxrmap import __version__
from cxrmap.core.citation import PAPER
from cxrmap.core.errors import BusyError, CxrmapError, DataError
from cxrmap.core.fileio import json_safe
from cxrmap.core.images import FAST_PNG, data_uri, encode_png, file_sha256
from cxrmap.data.io import decode_image
from cxrmap.models.checkpoint import load_model
from cxrmap.predict.maps import DISPLAY_SIDE, display_image
from cxrmap.predict.predictor import Prediction, Predictor
from cxrmap.predict.severity import REGIONS
from cxrmap.report.card import build_card
from cxrmap.serving.demo.batching import Batcher
from cxrmap.serving.http.errors import install_error_handlers
from cxrmap.serving.http.middleware import install_middleware
from cxrmap.serving.http.uploads import check_upload

STATIC_DIR = Path(__file__).parent / "static"

DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
"""Largest request body accepted: 50 MiB (an uncompressed 16-bit 4k x 3k DICOM is about 25 MiB)."""

DEFAULT_MAX_PIXELS = 40_000_000
"""Largest image accepted (width x height): 40 megapixels, about twice a large flat-panel detector."""

RESEARCH_NOTICE = (
    "Research use only. cxrmap is not a medical device: its maps and decisions must not be used to diagnose, "
    "treat or triage patients."
)

PHANTOM_WARNING = (
    "This model was trained on synthetic phantom radiographs, not on patient images: its decisions and maps "
    "on real chest X-rays are meaningless. Train on real data (cxrmap run --data ROOT) before judging it."
)


# ----------------------------------------------------------------------------------------------- schema
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable reason, e.g. 'too_many_pixels'.")
    message: str = Field(description="What was expected, what came, and how to fix it.")
    request_id: str = Field(description="The request's id, as in its X-Request-ID header and the logs.")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class _SeverityBase(BaseModel):
    """Infected share of the lungs, overall and per zone (fractions in [0, 1]; patient's right/left)."""

    image_share: float = Field(description="Infected share of all pixels of the image.")
    lung_share: float = Field(description="Infected share of the lung pixels.")
    lung_pixels: int
    infected_lung_pixels: int
    note: str = ""


Severity = create_model(
    "Severity",
    __base__=_SeverityBase,
    __doc__=_SeverityBase.__doc__,
    **{
        region: (float | None, Field(default=None, description=f"Infected share of the {region} region."))
        for region in REGIONS
    },
)
"""The severity answer: :class:`_SeverityBase` and one share per region of
:data:`cxrmap.predict.severity.REGIONS`."""


class PredictResponse(BaseModel):
    decision: Literal["covid", "no_covid"] = Field(
        description="COVID-19 when the infection probability reaches the threshold at any pixel (Sec. II-D)."
    )
    covid: bool
    score: float = Field(description="The image's score: its highest pixel probability of infection.")
    threshold: float
    severity: Severity | None = Field(description="Infected share of the lungs; null when unavailable.")
    severity_note: str | None = Field(description="Why the severity is unavailable, when it is.")
    width: int = Field(description="Width of the uploaded image, in pixels.")
    height: int = Field(description="Height of the uploaded image, in pixels.")
    map_png: str = Field(
        description=f"The infection map (paper Fig. 5) as a PNG data URI, drawn at display size: the "
        f"image's aspect ratio, longest side at most {DISPLAY_SIDE} px (map_width x map_height)."
    )
    map_width: int = Field(description=f"Width of map_png, in pixels (longest side <= {DISPLAY_SIDE}).")
    map_height: int = Field(description=f"Height of map_png, in pixels (longest side <= {DISPLAY_SIDE}).")
    cxr_png: str = Field(
        description="The radiograph as read (8-bit grayscale) as a PNG data URI, at the map's size "
        "(map_width x map_height), so the two overlay pixel for pixel."
    )
    model_id: str = Field(description="Short SHA-256 of the checkpoint file that answered.")
    trained_on_phantoms: bool
    warnings: list[str]
    notice: str
    elapsed_ms: float


class CardTable(BaseModel):
    title: str
    columns: list[str]
    values: list[str]


class PaperCard(BaseModel):
    rows: list[tuple[str, str]] = Field(description="Label and text: model, input size, threshold, data...")
    tables: list[CardTable] = Field(description="Tables I and III of the stored figures, with 95% intervals.")
    figures_note: str = Field(description="How the figures were obtained.")


class Citation(BaseModel):
    authors: list[str]
    title: str
    journal: str
    volume: str
    article: str
    year: int
    doi: str
    doi_url: str
    arxiv: str
    short: str
    text: str


class ModelCard(BaseModel):
    card: PaperCard = Field(description="The card in the paper's terms, as the demo page shows it.")
    citation: Citation = Field(description="The paper the method comes from.")
    model_id: str
    checkpoint: str = Field(description="File name of the checkpoint (not its path on the server).")
    arch: str
    encoder: str
    weights: str | None = Field(description="Encoder initialisation the model was trained from.")
    backend: str = Field(description="Inference backend the predictions run on (torch, onnx, ...).")
    parameters: int
    input_size: int | None
    channels: list[str]
    threshold: float
    trained_on: str
    data_kind: str
    trained_on_phantoms: bool
    preset: str | None
    metrics: dict[str, Any] = Field(description="Cross-validated figures stored with the checkpoint.")
    cxrmap_version: str | None
    created: str | None
    warnings: list[str]
    notice: str


class Health(BaseModel):
    status: Literal["ok"]
    model_id: str
    in_flight: int = Field(description="Prediction requests running or queued now.")
    capacity: int = Field(description="Requests accepted at once (workers + queue) before answering 503.")


# ----------------------------------------------------------------------------------------------- model
class ModelService:
    """One loaded checkpoint, its card, the batcher that runs its predictions and the bounded pool that
    decodes uploads and draws maps.

    Args:
        path: the checkpoint (``cxrmap.models.checkpoint.save_checkpoint`` format).
        workers: threads decoding uploads and drawing maps.
        max_queue: requests allowed to wait beyond ``workers``; more at once are refused with 503.
        max_pixels: the largest image accepted (width x height).
        device: where the model runs ("cpu", "cuda", ...).
        backend: inference backend (:data:`cxrmap.predict.backends.BACKENDS` or ``auto``).
        batch_size: most requests run through the network together (1: one at a time).
    """

    def __init__(
        self,
        path: str | Path,
        workers: int = 1,
        max_queue: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
        backend: str = "torch",
        batch_size: int = 8,
    ):

        if workers < 1 or max_queue < 0:
            raise CxrmapError(f"workers must be >= 1 and the queue >= 0; got {workers} and {max_queue}")
        self.path = Path(path)
        model, meta = load_model(self.path, device=device)
        self.meta = meta
        self.predictor = Predictor(model, meta, device=device, batch_size=batch_size, backend=backend)
        self.model_id = file_sha256(self.path)[:12]
        self.max_pixels = int(max_pixels)
        self.phantom = meta.phantom
        self.warnings = [PHANTOM_WARNING] if self.phantom else []
        self.card = self._card(model)
        self.capacity = workers + max_queue
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxrmap-decode")
        self.batcher = Batcher(
            functools.partial(self.predictor.predict, map_side=DISPLAY_SIDE), max_batch=batch_size
        )
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._lock = threading.Lock()
        self.in_flight = 0
        self._colorbar: bytes | None = None

    def _card(self, model: Any) -> dict[str, Any]:
        """``GET /api/v1/model``: the card in the paper's terms (``card``), the citation, the raw fields."""
        meta = self.meta
        parameters = int(sum(p.numel() for p in model.parameters()))
        return {
            "card": build_card(meta, threshold=self.predictor.threshold, parameters=parameters).to_dict(),
            "citation": PAPER.to_dict(),
            "model_id": self.model_id,
            "checkpoint": self.path.name,
            "arch": meta.arch,
            "encoder": meta.encoder,
            "weights": meta.weights,
            "backend": self.predictor.backend.name,
            "parameters": parameters,
            "input_size": self.predictor.input_size,
            "channels": list(meta.channels),
            "threshold": self.predictor.threshold,
            "trained_on": meta.data.description,
            "data_kind": meta.data.kind,
            "trained_on_phantoms": self.phantom,
            "preset": meta.provenance.preset,
            "metrics": json_safe(meta.metrics),
            "cxrmap_version": meta.provenance.cxrmap_version,
            "created": meta.provenance.created,
            "warnings": self.warnings,
            "notice": RESEARCH_NOTICE,
        }

    def colorbar_png(self) -> bytes:
        """The infection map's colour legend as PNG (drawn once)."""
        if self._colorbar is None:
            from cxrmap.predict.maps import colorbar

            self._colorbar = encode_png(colorbar(height=320, width=96), FAST_PNG)
        return self._colorbar

    def acquire(self) -> None:
        """Take a place among the requests in flight, or raise :class:`BusyError` when all ``capacity``
        places are taken."""
        if not self._slots.acquire(blocking=False):
            raise BusyError(
                f"The server is busy ({self.capacity} predictions running or queued); retry in a few "
                "seconds.",
                retry_after=5,
            )
        with self._lock:
            self.in_flight += 1

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self._slots.release()

    async def analyse(self, data: bytes) -> dict[str, Any]:
        """Vet, decode and predict one upload (batched with the others waiting); the response's fields.

        Raises:
            CxrmapError: the upload is refused (see :meth:`decode`), or its prediction failed.
        """
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        self.batcher.expect()
        try:
            image = await loop.run_in_executor(self.executor, self.decode, data)
        except BaseException:
            self.batcher.withdraw()
            raise
        prediction = await asyncio.wrap_future(self.batcher.submit(image))
        answer = await loop.run_in_executor(self.executor, self.answer, image, prediction)
        answer["elapsed_ms"] = round(1000.0 * (time.perf_counter() - start), 1)
        return answer

    def decode(self, data: bytes) -> np.ndarray:
        """The upload's pixels, uint8 (H, W).

        Raises:
            CxrmapError: the upload is refused (see :func:`cxrmap.serving.http.uploads.check_upload`);
                DataError ``unreadable_image``: its pixels cannot be decoded.
        """
        kind, _ = check_upload(data, self.max_pixels)
        try:
            return decode_image(data, name="the uploaded image", max_pixels=self.max_pixels)
        except DataError as error:
            # DICOM messages could quote header values; say only that the pixels could not be decoded.
            reason = "its pixel data could not be decoded" if kind == "dicom" else str(error)
            raise DataError(
                f"The {kind.upper()} file could not be read: {reason}. Re-export the image and retry.",
                code="unreadable_image",
            ) from None

    def answer(self, image: np.ndarray, prediction: Prediction) -> dict[str, Any]:
        """The :class:`PredictResponse` fields (but ``elapsed_ms``) of ``prediction`` on ``image``."""
        height, width = image.shape
        cxr = display_image(image)
        return {
            "decision": "covid" if prediction.covid else "no_covid",
            "covid": bool(prediction.covid),
            "score": float(prediction.score),
            "threshold": float(prediction.threshold),
            "severity": prediction.severity,
            "severity_note": prediction.severity_note,
            "width": int(width),
            "height": int(height),
            "map_png": data_uri(encode_png(prediction.map(cxr), FAST_PNG)),
            "map_width": int(cxr.shape[1]),
            "map_height": int(cxr.shape[0]),
            "cxr_png": data_uri(encode_png(cxr, FAST_PNG)),
            "model_id": self.model_id,
            "trained_on_phantoms": self.phantom,
            "warnings": self.warnings,
            "notice": RESEARCH_NOTICE,
        }

    def close(self) -> None:
        """Stop the batcher (after the predictions already submitted) and the worker pool."""
        self.batcher.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------------------------- app
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 415, 422, 500, 503)}


def create_app(
    model_path: str | Path | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
    max_queue: int = 8,
    device: str = "cpu",
    allowed_hosts: list[str] | None = None,
    backend: str = "torch",
    batch_size: int = 8,
) -> FastAPI:
    """Build the demo app around one checkpoint (loaded now, once).

    Args:
        model_path: the checkpoint; None takes the newest ``runs/*/model.pt`` under the current directory
            (the lookup of ``cxrmap predict``, :func:`cxrmap.predict.predictor.latest_model`).
        max_upload_bytes: largest request body; larger ones get 413 before the body is read whole.
        max_pixels: largest declared image size (width x height); larger ones get 413 before decoding.
        workers: threads decoding uploads and drawing maps (the network runs in one batching thread).
        max_queue: requests allowed to wait beyond ``workers``; beyond that 503 with ``Retry-After``.
        device: where the model runs ("cpu", "cuda", ...).
        allowed_hosts: accepted ``Host`` header values (None: any). A server on loopback should list only
            its loopback names, so that a web page elsewhere cannot reach it through DNS rebinding.
        backend: inference backend (:data:`cxrmap.predict.backends.BACKENDS` or ``auto``).
        batch_size: most requests run through the network in one batch (1: one at a time).

    Raises:
        CheckpointError: no checkpoint given or found, or it cannot be loaded.
        ModelError: the backend is unknown or this machine lacks it.
    """
    if model_path is None:
        from cxrmap.predict.predictor import latest_model

        model_path = latest_model(Path.cwd())
    service = ModelService(
        model_path,
        workers=workers,
        max_queue=max_queue,
        max_pixels=max_pixels,
        device=device,
        backend=backend,
        batch_size=batch_size,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(
        title="cxrmap",
        version=__version__,
        description="COVID-19 infection maps and detection from chest X-rays. " + RESEARCH_NOTICE,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    install_middleware(app, max_upload_bytes, allowed_hosts)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/colorbar.png", include_in_schema=False)
    async def legend() -> Response:
        png = await asyncio.get_running_loop().run_in_executor(None, service.colorbar_png)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/healthz", response_model=Health, tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness and load: the model's id, the predictions in flight and how many are accepted at once."""
        return {
            "status": "ok",
            "model_id": service.model_id,
            "in_flight": service.in_flight,
            "capacity": service.capacity,
        }

    @app.get("/api/v1/model", response_model=ModelCard, tags=["model"])
    async def model_card() -> dict[str, Any]:
        """The model card: architecture, training data, threshold and the cross-validated figures."""
        return service.card

    @app.post("/api/v1/predict", response_model=PredictResponse, responses=_ERRORS, tags=["model"])
    async def predict(file: UploadFile = File(description="Chest X-ray: PNG, JPEG or monochrome DICOM.")):
        """Detect COVID-19 and map the infection in one chest X-ray (paper Sec. II-D, Fig. 5).

        The image is COVID-19 when any pixel's infection probability reaches the threshold; the answer also
        gives the infected share of the lungs per zone and the map as a PNG data URI, drawn at display size
        (longest side at most 1024 px; its size in ``map_width`` x ``map_height``). Busy: 503 with
        ``Retry-After``.
        """
        service.acquire()
        try:
            data = await file.read()
            return await service.analyse(data)
        finally:
            await file.close()
            service.release()

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


@contextlib.contextmanager
def serve_in_background(app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0):
    """Run ``app`` on uvicorn in a background thread for the duration of a ``with`` block.

    Used by the browser tests and the serving benchmark. ``port=0`` takes a free port.

    Yields:
        The server's base URL, e.g. ``"http://127.0.0.1:41234"``.

    Example:
        >>> with serve_in_background(create_app("runs/quick/model.pt")) as url:  # doctest: +SKIP
        ...     httpx.get(url + "/healthz").json()["status"]
        'ok'
    """

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", server_header=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="cxrmap-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the server did not start on {host}:{port} within {timeout:.0f} s")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout)
