"""Inference backends: one interface from a radiograph batch to per-pixel probabilities (Sec. II-D, Eq. 1).

A :class:`Backend` turns images (uint8 ``N x S x S`` or float ``N x 1 x S x S`` in ``[0, 1]``, as
:func:`cxrmap.models.input.as_batch` takes them) into float32 probabilities ``N x C x S x S``. The
:class:`~cxrmap.predict.predictor.Predictor` runs its network through one, so ``cxrmap predict``, the
servers and the annotation candidates all compute the same way. Backends (:data:`BACKENDS`):

``torch``
    the network in eager PyTorch (:func:`cxrmap.predict.inference.predict_probabilities`), fp32 unless
    mixed precision is asked for; the reference the others are held to.
``torch-bf16``
    eager with bf16 autocast, offered only where the hardware computes bf16 natively
    (:func:`cxrmap.core.runtime.resolve_amp`).
``torch-compile``
    eager through ``torch.compile`` (slow to start; not an ``auto`` candidate).
``onnx``
    the network exported to ONNX (:func:`export_onnx`) and run by ONNX Runtime.
``onnx-int8``
    that graph statically quantised to int8 (QDQ format, weights per channel), calibrated on training
    images (:func:`quantize_int8`); the network's last convolution, which gives the logits, stays fp32.

An exported ``.onnx`` file carries the checkpoint's metadata as JSON in its ``metadata_props`` (key
:data:`META_KEY`), so it is a model file of its own: :func:`load_onnx` (and ``Predictor.from_checkpoint``)
read it without the ``.pt``.

The parity gate (:func:`parity`) holds a backend to eager fp32 on held-out images: pixel F1 within
:data:`MAX_F1_DELTA` points and the same detection decision for at least :data:`MIN_AGREEMENT` of the
images. ``auto`` (:func:`select_backend`) takes the fastest backend at batch 1 that passed it on this
machine; the result is kept per network and machine under the cache folder, so the gate runs once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from cxrmap.core.errors import CheckpointError, ModelError
from cxrmap.core.fileio import json_safe, write_bytes_atomic, write_json_atomic
from cxrmap.core.runtime import machine, resolve_amp, resolve_channels_last, resolve_device
from cxrmap.data.cache import default_cache_dir
from cxrmap.data.phantom.shapes import FINDINGS, MIN_SIZE, render_case
from cxrmap.models.checkpoint import CheckpointMeta
from cxrmap.models.input import as_batch
from cxrmap.predict.detect import DEFAULT_THRESHOLD, is_covid
from cxrmap.predict.inference import predict_probabilities

BACKENDS = ("torch", "torch-bf16", "torch-compile", "onnx", "onnx-int8")
AUTO_CANDIDATES = ("torch", "torch-bf16", "onnx", "onnx-int8")
"""What ``auto`` measures (``torch-compile`` is left out: it compiles for minutes on a small CPU)."""

META_KEY = "cxrmap.meta"
"""``metadata_props`` key of an exported ONNX file holding the checkpoint's metadata as JSON."""

MAX_F1_DELTA = 0.5
"""Largest pixel-F1 difference from eager fp32, in points, that passes the parity gate."""

MIN_AGREEMENT = 0.99
"""Smallest share of images with eager fp32's detection decision that passes the parity gate."""

QUANTISED_OPS = ["Conv", "Concat", "Resize"]
"""Operators int8 quantises. DenseNet's BatchNorms follow concatenations, so they cannot be folded into a
convolution; left in fp32 they cost nothing and keep parity (on the quick-shaped network: pixel F1 +0.05
points from eager, against +0.41 with every operator quantised, at the same speed)."""

GATE_IMAGES = 32
CALIBRATION_IMAGES = 32
OPSET = 17
FAST_EXTRA = "pip install 'cxrmap[fast]'"


class Backend:
    """Runs one network: images in, float32 probabilities ``N x C x S x S`` out.

    Attributes:
        name: the backend's name (one of :data:`BACKENDS`).
    """

    name = "backend"

    def probabilities(self, images: Any) -> np.ndarray:
        """``sigmoid(logits)`` of the network on ``images`` (as :func:`cxrmap.models.input.as_batch`)."""
        raise NotImplementedError


class TorchBackend(Backend):
    """The network in PyTorch: eager (optionally bf16/fp16 autocast, channels_last) or ``torch.compile``d.

    Args:
        model: the segmentation network.
        device: where to compute.
        amp: mixed precision as :func:`cxrmap.core.runtime.resolve_amp` (``False``: fp32).
        channels_last: memory format; ``None`` takes :func:`cxrmap.core.runtime.resolve_channels_last`.
        compile: run through ``torch.compile``.
    """

    def __init__(
        self, model, device="cpu", amp: bool | str = False, channels_last: bool | None = None, compile=False
    ) -> None:
        self.device = resolve_device(device)
        self.amp = amp
        dtype = resolve_amp(amp, self.device)
        self.name = (
            "torch-compile" if compile else "torch" if dtype is None else f"torch-{_dtype_name(dtype)}"
        )
        fmt = (
            torch.channels_last
            if resolve_channels_last(self.device, channels_last)
            else torch.preserve_format
        )
        self.model = model.to(self.device, memory_format=fmt).eval()
        self.network = torch.compile(self.model) if compile else self.model

    def probabilities(self, images: Any) -> np.ndarray:
        return predict_probabilities(self.network, images, max(len(images), 1), self.device, self.amp)


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """The same sigmoid as the eager path, on a numpy array."""
    return torch.sigmoid(torch.from_numpy(logits)).numpy().astype(np.float32, copy=False)


class OnnxBackend(Backend):
    """An exported network run by ONNX Runtime (CUDA where the device is a GPU and the build has it).

    Args:
        model: the ``.onnx`` file, or its bytes.
        device: ``cpu`` or a CUDA device.
        name: ``onnx`` or ``onnx-int8``.
        threads: intra-op threads; default ``torch.get_num_threads()`` (one setting for every backend).
        providers: ONNX Runtime execution providers to use instead (e.g. TensorRT's), best first.
    """

    def __init__(
        self,
        model: str | Path | bytes,
        device="cpu",
        name="onnx",
        threads: int | None = None,
        providers: list[str] | None = None,
    ):
        ort = _import("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if providers is None:
            providers = ["CPUExecutionProvider"]
            cuda = resolve_device(device).type == "cuda"
            if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, options, providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.name = name

    def probabilities(self, images: Any) -> np.ndarray:
        batch = as_batch(images).numpy()
        return _sigmoid(self.session.run(None, {self.input: batch})[0])


def _import(name: str):
    """Import an optional heavy dependency, or say how to install it."""
    try:
        # Optional heavy dependencies of the fast backends (extra `fast`): imported only when used.
        if name == "onnxruntime":
            import onnxruntime as module
        else:
            import onnx as module
    except ImportError as error:
        raise ModelError(
            f"the {name} package is not installed, which this backend needs; install it with {FAST_EXTRA}"
        ) from error
    return module


def backend_versions() -> dict[str, str | None]:
    """Installed version of each package the backends use (``None``: not installed)."""
    versions: dict[str, str | None] = {"torch": torch.__version__}
    for name in ("onnx", "onnxruntime"):
        try:
            versions[name] = _import(name).__version__
        except ModelError:
            versions[name] = None
    return versions


# ----------------------------------------------------------------------------------------------------
# Export and quantisation.


def _meta_json(meta: CheckpointMeta) -> str:
    return json.dumps(json_safe(meta.to_dict()), sort_keys=True)


def _with_meta(graph, meta_json: str, precision: str) -> bytes:
    """The serialised ONNX ``graph`` with ``meta_json`` and its precision in ``metadata_props``."""
    del graph.metadata_props[:]
    for key, value in ((META_KEY, meta_json), ("cxrmap.precision", precision)):
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    return graph.SerializeToString()


def export_onnx(model, meta: CheckpointMeta, out: str | Path | None = None) -> bytes:
    """Export ``model`` (fp32, CPU) to ONNX with a dynamic batch axis and ``meta`` carried inside.

    The graph takes ``image`` (float32 ``N x 1 x S x S`` in ``[0, 1]``, S the checkpoint's ``input_size``)
    and gives ``logits`` ``N x C x S x S``.

    Returns:
        The ONNX bytes (also written to ``out`` atomically when given).
    """
    onnx = _import("onnx")
    size = meta.input_size
    network = getattr(model, "module", model)
    was_training = network.training
    params = next(network.parameters(), None)
    old = params.device if params is not None else torch.device("cpu")
    network.to("cpu").eval()
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Tracing fixes the input checks' Python branches for the traced size: as meant, since the
            # graph serves one input size (the batch axis stays dynamic).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                network,
                (torch.full((1, 1, size, size), 0.5),),
                buffer,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: several times faster here, and needs no onnxscript
            )
    finally:
        network.to(old).train(was_training)
    data = _with_meta(onnx.load_from_string(buffer.getvalue()), _meta_json(meta), "fp32")
    if out is not None:
        write_bytes_atomic(Path(out), data)
    return data


class _Calibration:
    """Feeds ONNX Runtime's calibrator one image at a time (``CalibrationDataReader`` protocol)."""

    def __init__(self, images: np.ndarray, name: str) -> None:
        self.batches = iter([{name: batch[None]} for batch in as_batch(images).numpy()])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self) -> None:  # pragma: no cover - called by some calibration methods only
        pass


def quantize_int8(onnx_model: bytes, calibration: np.ndarray, out: str | Path | None = None) -> bytes:
    """Statically quantise an exported network to int8 (QDQ, per-channel weights, MinMax calibration).

    Convolutions, concatenations and resizes are quantised (:data:`QUANTISED_OPS`), the logits' last
    convolution excepted.

    Args:
        onnx_model: :func:`export_onnx`'s bytes (their metadata is kept).
        calibration: training images, uint8 ``N x S x S`` at the model's input size (a few dozen suffice).
        out: where to write the quantised model too.

    Returns:
        The quantised ONNX bytes.
    """
    onnx = _import("onnx")
    _import("onnxruntime")
    # Optional heavy dependency (extra `fast`), as above.
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graph = onnx.load_from_string(onnx_model)
    meta_json = next(p.value for p in graph.metadata_props if p.key == META_KEY)
    output = graph.graph.output[0].name
    last = [node.name for node in graph.graph.node if output in node.output]
    with tempfile.TemporaryDirectory(prefix="cxrmap-int8-") as work:
        source, prepared, target = (Path(work) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(onnx_model)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(target),
            _Calibration(calibration, graph.graph.input[0].name),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=last,
            op_types_to_quantize=QUANTISED_OPS,
        )
        data = _with_meta(onnx.load(str(target)), meta_json, "int8")
    if out is not None:
        write_bytes_atomic(Path(out), data)
    return data


def _onnx_props(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an exported ONNX file.

    Raises:
        CheckpointError: the file is missing, not ONNX, or was not written by ``cxrmap export``.
    """
    onnx = _import("onnx")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"ONNX model {path} does not exist; write one with `cxrmap export CKPT --out FILE`"
        )
    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, ValueError... on damaged files
        raise CheckpointError(
            f"{path} cannot be read as an ONNX model ({type(error).__name__}); export it again"
        ) from error
    props = {p.key: p.value for p in graph.metadata_props}
    if META_KEY not in props:
        raise CheckpointError(
            f"{path} is an ONNX model without cxrmap metadata ({META_KEY!r}); write it with `cxrmap export`"
        )
    return props


def onnx_meta(path: str | Path) -> CheckpointMeta:
    """The checkpoint metadata an exported ONNX file carries, validated as a checkpoint's is.

    Raises:
        CheckpointError: the file is missing, not ONNX, not written by ``cxrmap export``, or its metadata
            is not valid.
    """
    try:
        data = json.loads(_onnx_props(path)[META_KEY])
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{path}: its cxrmap metadata is not valid JSON ({error}); export it again"
        ) from None
    return CheckpointMeta.from_dict(data, path)


def load_onnx(path: str | Path, device="cpu") -> tuple[OnnxBackend, CheckpointMeta]:
    """``(backend, meta)`` of an exported ``.onnx`` file (:func:`export_onnx` or :func:`quantize_int8`)."""
    name = "onnx-int8" if _onnx_props(path).get("cxrmap.precision") == "int8" else "onnx"
    return OnnxBackend(path, device=device, name=name), onnx_meta(path)


# ----------------------------------------------------------------------------------------------------
# Held-out and calibration images, and the parity gate.


def phantom_set(size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` phantom radiographs (half COVID-19, half controls) and their infection masks at ``size`` px.

    Seeds ``[seed, i]`` are drawn apart from the phantom data sets' streams; images are rendered at
    least at the phantom's minimum size and resized as the image cache resizes.
    """
    kinds = ("covid", "normal", "covid", *FINDINGS)
    images, masks = [], []
    for index in range(n):
        kind = "covid" if index % 2 == 0 else kinds[(index // 2) % len(kinds)]
        kind = "normal" if kind == "covid" and index % 2 else kind
        image, infection, _ = render_case(np.random.default_rng([seed, index]), max(size, MIN_SIZE), kind)
        if image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
            infection = (
                cv2.resize(infection.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) >= 0.5
            )
        images.append(image)
        masks.append(infection)
    return np.stack(images), np.stack(masks)


GATE_SEED = 911_000
CALIBRATION_SEED = 912_000


@dataclasses.dataclass
class Parity:
    """How one backend compares with eager fp32 on the held-out images, and its speed.

    Attributes:
        backend: the backend's name.
        passed: it passed the parity gate.
        f1_delta: pixel F1 minus eager fp32's, in points (``None`` when it could not run).
        agreement: share of images with eager fp32's detection decision.
        ms_per_image: median milliseconds for one image at batch 1.
        reason: why it failed (empty when it passed).
    """

    backend: str
    passed: bool
    f1_delta: float | None = None
    agreement: float | None = None
    ms_per_image: float | None = None
    reason: str = ""


def pixel_f1(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Pixel F1 in points (0-100) over all pixels of all images (100 when both are empty)."""
    tp = int(np.count_nonzero(predicted & truth))
    wrong = int(np.count_nonzero(predicted ^ truth))
    return 100.0 if tp + wrong == 0 else 100.0 * 2 * tp / (2 * tp + wrong)


def parity(
    reference: np.ndarray,
    candidate: np.ndarray,
    masks: np.ndarray | None,
    threshold: float = DEFAULT_THRESHOLD,
    name: str = "candidate",
) -> Parity:
    """Hold ``candidate``'s infection probabilities (N x S x S) to the ``reference`` (eager fp32) ones.

    Pixel F1 is measured against ``masks`` (the ground truth); without masks, against the reference's own
    segmentation (so the reference scores 100). The decision is :func:`cxrmap.predict.detect.is_covid`.
    """
    truth = (reference >= threshold) if masks is None else np.asarray(masks, bool)
    delta = pixel_f1(candidate >= threshold, truth) - pixel_f1(reference >= threshold, truth)
    agreement = float(np.mean(is_covid(candidate, threshold) == is_covid(reference, threshold)))
    reasons = []
    if not abs(delta) <= MAX_F1_DELTA:
        reasons.append(f"pixel F1 {delta:+.2f} points from eager fp32 (at most {MAX_F1_DELTA:g} allowed)")
    if agreement < MIN_AGREEMENT:
        reasons.append(
            f"the detection decision agrees with eager fp32 on {100 * agreement:.1f}% of the images "
            f"(at least {100 * MIN_AGREEMENT:g}% needed)"
        )
    return Parity(name, not reasons, round(delta, 3) + 0.0, agreement, reason="; ".join(reasons))


def measure(runs: dict[str, Any], rounds: int = 7, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each ``runs[name]()``, timed in turns (one call of each per round) so that a
    change of load on a shared machine hits every contender alike."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


# ----------------------------------------------------------------------------------------------------
# Building backends, and ``auto``.


def network_digest(model, meta: CheckpointMeta) -> str:
    """A short hash of a network's weights and metadata: what a cached gate result belongs to."""
    digest = hashlib.sha256(_meta_json(meta).encode())
    for name, tensor in getattr(model, "module", model).state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _work_dir(model, meta: CheckpointMeta, work_dir: str | Path | None) -> Path:
    """``work_dir``, or the network's own folder under the cache folder."""
    if work_dir is not None:
        return Path(work_dir)
    return default_cache_dir() / "backends" / network_digest(model, meta)


def make_backend(
    name: str,
    model,
    meta: CheckpointMeta,
    device="cpu",
    amp: bool | str = False,
    calibration: np.ndarray | None = None,
    work_dir: str | Path | None = None,
) -> Backend:
    """Build backend ``name`` (one of :data:`BACKENDS`, or ``auto``: :func:`select_backend`) for ``model``.

    Args:
        model: the segmentation network (its metadata ``meta`` gives the input size).
        device: where to compute.
        amp: the ``torch`` backend's mixed precision.
        calibration: training images (uint8 ``N x S x S``) for ``onnx-int8``; default phantom images.
        work_dir: where exported graphs are kept (default: a folder per network in the cache folder).

    Raises:
        ModelError: an unknown name, a backend this machine lacks (``torch-bf16`` without native bf16), or
            a missing optional package (the message gives the pip command).
    """
    if name == "auto":
        return select_backend(model, meta, device=device, calibration=calibration, work_dir=work_dir)[0]
    if name not in BACKENDS:
        raise ModelError(f"unknown inference backend {name!r}; use one of {', '.join(BACKENDS)} or auto")
    if name == "torch":
        return TorchBackend(model, device, amp)
    if name == "torch-compile":
        return TorchBackend(model, device, compile=True)
    if name == "torch-bf16":
        if resolve_amp("auto", resolve_device(device)) != torch.bfloat16:
            raise ModelError(
                "torch-bf16 needs native bf16 (a GPU, or a CPU with AVX-512 BF16 or AMX); this machine "
                "has none: use the torch or onnx backend (`cxrmap doctor` lists what it has)"
            )
        return TorchBackend(model, device, "bf16")
    folder = _work_dir(model, meta, work_dir)
    fp32 = folder / "model.onnx"
    if not fp32.is_file():
        export_onnx(model, meta, fp32)
    if name == "onnx":
        return OnnxBackend(fp32, device)
    int8 = folder / "model-int8.onnx"
    if calibration is not None or not int8.is_file():
        size = meta.input_size
        images = (
            calibration
            if calibration is not None
            else phantom_set(size, CALIBRATION_IMAGES, CALIBRATION_SEED)[0]
        )
        quantize_int8(fp32.read_bytes(), images, int8)
    return OnnxBackend(int8, device, name="onnx-int8")


def select_backend(
    model,
    meta: CheckpointMeta,
    device="cpu",
    images: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    calibration: np.ndarray | None = None,
    candidates: tuple[str | Backend, ...] = AUTO_CANDIDATES,
    work_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[Backend, list[Parity]]:
    """The fastest backend at batch 1 that passes the parity gate here, and every candidate's figures.

    The gate runs once per network and machine (:meth:`cxrmap.core.runtime.Machine.key`): its figures are
    kept in ``gate-<machine>.json`` beside the exported graphs, and later calls build the chosen backend
    straight away (when the gate ran on the default held-out images). A candidate that cannot be built
    (a missing package, no native bf16) or fails the gate is never chosen; its :class:`Parity` says why.
    Eager ``torch`` is always measured and qualifies.

    Args:
        images, masks: held-out radiographs (uint8 ``N x S x S``) and infection masks; default
            :data:`GATE_IMAGES` phantom images with their masks.
        calibration: training images for ``onnx-int8``.
        candidates: backend names, or built backends (measured as they are).
    """
    folder = _work_dir(model, meta, work_dir)
    record = folder / f"gate-{machine().key()}.json"
    default_images = images is None
    if record.is_file() and default_images:
        saved = json.loads(record.read_text())
        results = [Parity(**entry) for entry in saved["results"]]
        try:
            return make_backend(saved["choice"], model, meta, device, work_dir=folder), results
        except ModelError:  # a package went away since: measure again
            pass
    size = meta.input_size
    threshold = meta.threshold
    infection = list(meta.channels).index("infection")
    if images is None:
        images, masks = phantom_set(size, GATE_IMAGES, GATE_SEED)
    reference_backend = TorchBackend(model, device)
    reference = reference_backend.probabilities(images)[:, infection]
    results, built = [], {}
    candidates = ("torch", *(c for c in candidates if c != "torch"))
    for candidate in tqdm(candidates, desc="backends", unit="backend", disable=not progress):
        name = candidate.name if isinstance(candidate, Backend) else candidate
        try:
            if isinstance(candidate, Backend):
                backend = candidate
            elif name == "torch":
                backend = reference_backend
            else:
                backend = make_backend(name, model, meta, device, calibration=calibration, work_dir=folder)
            result = parity(reference, backend.probabilities(images)[:, infection], masks, threshold, name)
        except ModelError as error:
            result = Parity(name, False, reason=f"unavailable: {error}")
        except Exception as error:  # a runtime that cannot take this graph must not stop prediction
            result = Parity(name, False, reason=f"failed: {type(error).__name__}: {str(error)[:200]}")
        if name == "torch":
            result.passed, result.reason = True, ""
        results.append(result)
        if result.f1_delta is not None:  # it ran: timed too, chosen only if it passed
            built[name] = backend
    one = images[:1]
    seconds = measure({name: (lambda b=backend: b.probabilities(one)) for name, backend in built.items()})
    for result in results:
        if result.backend in seconds:
            result.ms_per_image = round(1000 * seconds[result.backend], 3)
    choice = min((r for r in results if r.passed), key=lambda r: r.ms_per_image)
    if default_images:  # the record stands for the default held-out set only
        write_json_atomic(record, {"choice": choice.backend, "machine": dataclasses.asdict(machine()),
                                   "results": [dataclasses.asdict(r) for r in results]})  # fmt: skip
    return built[choice.backend], results
