"""Prediction on radiographs of any size: probability maps, COVID-19 detection and severity.

:class:`Predictor` wraps a trained segmentation model and its checkpoint metadata. Each image is resized
to the model's input size (:func:`model_input`, area interpolation), run through the Predictor's inference
backend (:mod:`cxrmap.predict.backends`: eager PyTorch by default, ONNX Runtime, int8, or ``auto``) in
batches, and its probability map is resized (bilinear) to the size it is shown at: the image's own size by
default, or a display size (:func:`cxrmap.predict.maps.display_shape`, e.g. at most 1024 pixels a side).

The decision and the figures come from the network's output Ŷ at the model's input size, as in the
paper (Sec. II-D): the score is the maximum of Ŷ, the image is COVID-19 when the score reaches the
threshold (0.5 unless the checkpoint or the caller says otherwise), and the infected shares are computed
there too (shares of pixels do not change under the uniform resize back).

Severity is only reported when the model has a lung channel (checkpoint ``channels`` include ``"lung"``):
lungs are where the lung probability is >= 0.5, and :func:`cxrmap.predict.severity.severity` measures the
infected share of the lungs and of each lung zone. Without a lung channel severity is ``None`` and
``severity_note`` says why; it is never guessed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrmap.core.errors import CheckpointError, DataError, ModelError
from cxrmap.models.checkpoint import CheckpointMeta, load_model
from cxrmap.predict.backends import Backend, load_onnx, make_backend
from cxrmap.predict.detect import image_score, is_covid
from cxrmap.predict.maps import DISPLAY_FLOOR, display_shape, infection_map
from cxrmap.predict.severity import REGIONS, severity

LUNG_THRESHOLD = 0.5
"""Lung-channel probability from which a pixel counts as lung."""

NO_LUNG_CHANNEL = "the model has no lung channel; lung-relative severity unavailable"

FIELDS = ("covid", "score", "threshold", "image_share", "lung_share", *REGIONS, "severity_note")
"""Keys of :meth:`Prediction.to_dict`, in order (the columns of ``predictions.csv`` after path and map)."""


@dataclass
class Prediction:
    """What the model says about one radiograph.

    Attributes:
        prob: infection probability map, float32 (H, W) at the size it is shown at (for display): the
            input image's size unless a display side was asked for.
        lung_prob: lung probability map, float32 (H, W) likewise, or None when the model has no lung channel.
        score: image-level score, the maximum infection probability of the network output.
        covid: COVID-19 detected (``score >= threshold``, paper Sec. II-D).
        threshold: the detection threshold used.
        image_share: infected share of the image: its pixels with infection probability >= threshold.
        severity: :func:`cxrmap.predict.severity.severity` result (``lung_share``, the infected share of
            the lungs, and one share per zone), or None.
        severity_note: why severity is None (or what is missing from it); empty otherwise.
    """

    prob: np.ndarray
    lung_prob: np.ndarray | None
    score: float
    covid: bool
    threshold: float
    image_share: float
    severity: dict | None
    severity_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The prediction as plain JSON/CSV values (no arrays); ``None`` where a figure is unavailable.

        Keys (:data:`FIELDS`): covid, score, threshold, image_share, lung_share, one per lung region
        (:data:`cxrmap.predict.severity.REGIONS`), severity_note.
        """
        shares = self.severity or {}
        return {
            "covid": bool(self.covid),
            "score": float(self.score),
            "threshold": float(self.threshold),
            "image_share": float(self.image_share),
            "lung_share": shares.get("lung_share"),
            **{name: shares.get(name) for name in REGIONS},
            "severity_note": self.severity_note,
        }

    def map(self, cxr: np.ndarray, floor: float = DISPLAY_FLOOR, opacity: float = 1.0) -> np.ndarray:
        """The infection map of this prediction on ``cxr`` (uint8, the shape of :attr:`prob`): RGB uint8."""
        return infection_map(cxr, self.prob, floor=floor, opacity=opacity)


def model_input(image: np.ndarray, side: int) -> np.ndarray:
    """The radiograph as the network sees it: uint8 (H, W) -> uint8 (side, side), area interpolation.

    The one resize to the model's input size, shared by :meth:`Predictor.predict` and the streaming
    ``cxrmap predict`` (:mod:`cxrmap.predict.stream`), so both give the same figures.
    """
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


class Predictor:
    """A trained segmentation model ready to map, detect and grade radiographs of any size.

    Args:
        model: segmentation network returning logits N x C x S x S (C = len(meta.channels)).
        meta: its :class:`~cxrmap.models.checkpoint.CheckpointMeta`: ``channels`` (containing "infection",
            maybe "lung"), ``input_size`` (S) and ``threshold``.
        device: torch device to run on ("cpu", "cuda", "cuda:1", ...).
        batch_size: images per forward pass.
        threshold: detection threshold overriding the checkpoint's.
        amp: run in mixed precision (bfloat16 on CPU, float16 on CUDA).
        backend: inference backend name (:data:`cxrmap.predict.backends.BACKENDS` or ``auto``: the fastest
            that passes the parity gate here) or a built :class:`~cxrmap.predict.backends.Backend`;
            ``model`` may be None when a built backend is given.

    Example:
        >>> predictor = Predictor.from_checkpoint("runs/demo/model.pt")  # doctest: +SKIP
        >>> prediction = predictor.predict([read_image("chest.png")])[0]  # doctest: +SKIP
        >>> prediction.covid, prediction.score, prediction.severity["lung_share"]  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        meta: CheckpointMeta,
        device: str = "cpu",
        batch_size: int = 8,
        threshold: float | None = None,
        amp: bool = False,
        backend: str | Backend = "torch",
    ) -> None:
        channels = list(meta.channels)
        if "infection" not in channels:
            raise ModelError(
                f"the checkpoint's channels must include 'infection'; got {channels!r}. "
                "Use a segmentation checkpoint written by `cxrmap train` or `cxrmap run`."
            )
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1; got {batch_size}.")
        threshold = float(meta.threshold if threshold is None else threshold)
        if not 0.0 < threshold <= 1.0:
            raise DataError(f"the detection threshold must lie in (0, 1]; got {threshold}.")
        self.model = model.to(device).eval() if model is not None else None
        self.backend = (
            backend if isinstance(backend, Backend) else make_backend(backend, model, meta, device, amp)
        )
        self.meta = meta
        self.device = device
        self.batch_size = int(batch_size)
        self.amp = amp
        self.threshold = threshold
        self.input_size = meta.input_size
        self.channels = channels
        self._infection = channels.index("infection")
        self._lung = channels.index("lung") if "lung" in channels else None

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str = "cpu",
        batch_size: int = 8,
        threshold: float | None = None,
        backend: str = "torch",
    ) -> Predictor:
        """Load a checkpoint written by training (``model.pt``) or ``cxrmap export`` (``.onnx``) and wrap it.

        Raises:
            CheckpointError: the file is missing (the message says how to make one), truncated or corrupt.
        """

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(
                f"model checkpoint not found: {path}. Train one with `cxrmap run` (phantom data, end to end) "
                "or `cxrmap train`, then pass its model.pt with --model."
            )
        if path.suffix.lower() == ".onnx":
            onnx_backend, meta = load_onnx(path, device=device)
            return cls(
                None, meta, device=device, batch_size=batch_size, threshold=threshold, backend=onnx_backend
            )
        model, meta = load_model(path, device=device)
        return cls(model, meta, device=device, batch_size=batch_size, threshold=threshold, backend=backend)

    def _check(self, image: Any, index: int) -> np.ndarray:
        """Return ``image`` if it is a uint8 (H, W) array, else raise DataError saying how to fix it."""
        if (
            not isinstance(image, np.ndarray)
            or image.dtype != np.uint8
            or image.ndim != 2
            or 0 in image.shape
        ):
            got = (
                f"{image.dtype} array of shape {image.shape}"
                if isinstance(image, np.ndarray)
                else type(image)
            )
            raise DataError(
                f"image {index}: expected a non-empty uint8 grayscale array (H, W); got {got}. "
                "Read files with cxrmap.data.io.read_image (it converts 16-bit, RGB and DICOM to uint8 gray)."
            )
        return image

    def predict(self, images: list[np.ndarray], map_side: int | None = None) -> list[Prediction]:
        """Predict infection maps, detection and severity for radiographs of any sizes.

        Args:
            images: uint8 grayscale arrays (H_i, W_i), sizes may differ.
            map_side: longest side of the probability maps (:func:`~cxrmap.predict.maps.display_shape`);
                None or 0: each image's own size. The figures do not depend on it.

        Returns:
            One :class:`Prediction` per image, in order.
        """

        images = [self._check(image, index) for index, image in enumerate(images)]
        side = self.input_size
        predictions: list[Prediction] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            predictions.extend(
                self.predict_inputs(
                    np.stack([model_input(image, side) for image in chunk]),
                    [display_shape(image.shape, map_side or 0) for image in chunk],
                )
            )
        return predictions

    def predict_inputs(self, inputs: np.ndarray, shapes: list[tuple[int, int]]) -> list[Prediction]:
        """Predictions of images already resized by :func:`model_input`, in one forward pass.

        Args:
            inputs: uint8 (N, S, S), S the model's input size.
            shapes: the (height, width) each prediction's probability maps are given at.
        """
        probs = self.backend.probabilities(inputs)
        return [
            self._prediction(shape, np.asarray(output, dtype=np.float32))
            for shape, output in zip(shapes, probs, strict=True)
        ]

    def _prediction(self, shape: tuple[int, int], output: np.ndarray) -> Prediction:
        """Build the Prediction of one image from the network output (C, S, S), its maps at ``shape``."""

        def to_image_size(channel: np.ndarray) -> np.ndarray:
            resized = cv2.resize(channel, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
            return np.clip(resized, 0.0, 1.0).astype(np.float32)

        prob = output[self._infection]
        infection = prob >= self.threshold
        score = image_score(prob)
        lung_prob, grade, note = None, None, NO_LUNG_CHANNEL
        if self._lung is not None:
            lung_prob = to_image_size(output[self._lung])
            lungs = output[self._lung] >= LUNG_THRESHOLD
            if lungs.any():
                grade = severity(infection, lungs)
                note = grade["note"]
            else:
                note = f"no lungs found in this image (no pixel with lung probability >= {LUNG_THRESHOLD})"
        return Prediction(
            prob=to_image_size(prob),
            lung_prob=lung_prob,
            score=score,
            covid=is_covid(prob, self.threshold),
            threshold=self.threshold,
            image_share=float(infection.mean()),
            severity=grade,
            severity_note=note,
        )


def latest_model(root: Path) -> Path:
    """The most recently written ``runs/*/model.pt`` under ``root``.

    Raises:
        CheckpointError: none exists; the message says how to make one.
    """
    candidates = sorted(root.glob("runs/*/model.pt"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise CheckpointError(
            f"no trained model found (looked for runs/*/model.pt under {root.resolve()}). "
            "Run `cxrmap run` (phantom data, end to end) or `cxrmap train` first, or pass --model PATH."
        )
    return candidates[-1]
