"""Grad-CAM activation maps of the classification networks (paper Sec. III-C, Eq. 14-15).

The paper compares its infection maps with the activation maps of classifiers built from the same
encoders. For class ``c`` with pre-softmax score ``m_c`` and feature maps ``A^k`` of the target layer,

    alpha_k^c = 1/Z sum_i sum_j d m_c / d A^k_ij                                   (Eq. 14)
    L^c_Grad-CAM = ReLU(sum_k alpha_k^c A^k)                                       (Eq. 15)

computed here by pytorch-grad-cam's ``GradCAM``, upsampled to the input size and scaled to ``[0, 1]`` per
image (its ``scale_cam_image``: minus the minimum, divided by the maximum). A map that the ReLU sets to
zero everywhere stays all zeros.

:class:`GradCAMExplainer` is a context manager: on exit it removes every hook it registered and puts the
classifier back as it found it (each module's train/eval mode, each parameter's ``requires_grad`` and
``.grad``), also when the body raised. Inside the block the target layer's output is made a leaf of the
autograd graph, so each map costs one forward pass and a backward pass through the head only, and frozen
encoders (``requires_grad=False``) need no change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from cxrmap.core.errors import ModelError
from cxrmap.core.progress import track
from cxrmap.models.classifier import COVID_CLASS
from cxrmap.models.input import as_batch, fit_size


def _graph_leaf(module: nn.Module, inputs: Any, output: Any) -> Any:
    """Forward hook: the same feature maps, detached from what precedes them and requiring a gradient."""
    if isinstance(output, torch.Tensor):
        return output.detach().requires_grad_(True)
    return None


class GradCAMExplainer:
    """Grad-CAM maps of the COVID-19 class of a classifier, as a context manager (Eq. 14-15).

    Args:
        classifier: a network from :func:`cxrmap.models.create_classifier` (``N x 1 x H x W`` in
            ``[0, 1]`` -> logits ``N x 2``).
        target_layer: the convolutional layer whose feature maps ``A^k`` are weighted; default
            ``classifier.target_layer`` (the encoder's last feature block).
        target_class: output neuron explained; default 1, COVID-19.
        batch_size: images per forward/backward pass in :meth:`explain`.
        input_size: the classifier's training input size (``ClassifierResult.config.input_size``): larger
            images are downsampled to it before the network and the maps resized back; None: as given.

    Shape:
        ``explain(images)``: ``N x H x W`` (or ``N x 1 x H x W``) -> float32 ``N x H x W`` in ``[0, 1]``.

    Example:
        >>> with GradCAMExplainer(classifier) as explainer:  # doctest: +SKIP
        ...     maps = explainer.explain(cache.images[:8])
    """

    def __init__(
        self,
        classifier: nn.Module,
        target_layer: nn.Module | None = None,
        target_class: int = COVID_CLASS,
        batch_size: int = 8,
        input_size: int | None = None,
    ) -> None:
        layer = target_layer if target_layer is not None else getattr(classifier, "target_layer", None)
        if not isinstance(layer, nn.Module):
            raise ModelError(
                "Grad-CAM needs a target layer: pass target_layer=... or use a classifier from "
                f"cxrmap.models.create_classifier (it has .target_layer); got {type(layer).__name__}"
            )
        if not any(module is layer for module in classifier.modules()):
            raise ModelError("target_layer is not a module of the classifier; pass one of its own layers")
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        self.classifier = classifier
        self.target_layer = layer
        self.target_class = target_class
        self.batch_size = batch_size
        self.input_size = input_size
        self._cam = None
        self._cut = None
        self._saved: tuple[list[tuple[nn.Module, bool]], list[tuple[nn.Parameter, bool, Any]]] | None = None

    def __enter__(self) -> GradCAMExplainer:

        if self._cam is not None:
            raise ModelError("this GradCAMExplainer is already open; use one `with` block at a time")
        modes = [(module, module.training) for module in self.classifier.modules()]
        params = [(p, p.requires_grad, p.grad) for p in self.classifier.parameters()]
        self._saved = (modes, params)
        self.classifier.eval()
        # Eq. 14 needs d m_c / d A^k only: the target layer's output becomes a leaf of the graph, so the
        # backward pass runs through the head alone (also when the encoder's weights are frozen).
        self._cut = self.target_layer.register_forward_hook(_graph_leaf)
        try:
            self._cam = GradCAM(model=self.classifier, target_layers=[self.target_layer])
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> bool:
        self._restore()
        return False

    def _restore(self) -> None:
        """Remove the hooks and give the classifier back its modes, ``requires_grad`` and gradients."""
        if self._cam is not None:
            self._cam.activations_and_grads.release()
            self._cam = None
        if self._cut is not None:
            self._cut.remove()
            self._cut = None
        if self._saved is not None:
            modes, params = self._saved
            for module, training in modes:
                module.training = training
            for param, requires_grad, grad in params:
                param.requires_grad_(requires_grad)
                param.grad = grad
            self._saved = None

    def explain(self, images: Any, progress: bool = False) -> np.ndarray:
        """Grad-CAM maps of :attr:`target_class` for a batch of radiographs.

        Args:
            images: see :func:`as_batch` (uint8 ``N x H x W`` radiographs, e.g. ``cache.images[idx]``).
            progress: show a progress bar over the batches.

        Returns:
            float32 ``N x H x W`` in ``[0, 1]``, one map per image at the input's size.

        Raises:
            ModelError: called outside the ``with`` block, or the target layer gives no 2-D feature maps.
        """

        if self._cam is None:
            raise ModelError("call explain() inside `with GradCAMExplainer(classifier) as explainer:`")
        batch = as_batch(images)
        if len(batch) == 0:
            return np.zeros((0, *batch.shape[2:]), np.float32)
        maps = []
        starts: Sequence[int] = range(0, len(batch), self.batch_size)
        bar = track(
            starts,
            stage="Grad-CAM",
            unit="batch",
            count=lambda start: min(self.batch_size, len(batch) - start),
            enabled=progress,
        )
        for start in bar:
            chunk = fit_size(batch[start : start + self.batch_size], self.input_size)
            targets = [ClassifierOutputTarget(self.target_class)] * len(chunk)
            try:
                with torch.enable_grad():
                    maps.append(self._cam(input_tensor=chunk, targets=targets))
            except ValueError as error:
                raise ModelError(
                    f"Grad-CAM needs convolutional feature maps (N x C x h x w) from the target layer "
                    f"{type(self.target_layer).__name__}: {error}"
                ) from error
            finally:
                self._cam.activations_and_grads.clear()
                self.classifier.zero_grad(set_to_none=True)
        maps = np.concatenate(maps).astype(np.float32)
        if maps.shape[1:] != batch.shape[2:]:
            import cv2

            height, width = batch.shape[2:]
            maps = np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in maps])
        return np.clip(maps, 0.0, 1.0)


def explain(
    classifier: nn.Module,
    images: Any,
    target_layer: nn.Module | None = None,
    target_class: int = COVID_CLASS,
    batch_size: int = 8,
    input_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """One-shot :meth:`GradCAMExplainer.explain`: open, explain ``images``, restore the classifier."""
    with GradCAMExplainer(classifier, target_layer, target_class, batch_size, input_size) as explainer:
        return explainer.explain(images, progress=progress)
