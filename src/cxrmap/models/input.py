"""The one place where a radiograph becomes an encoder's input: channels, normalisation, checks.

Every network of :mod:`cxrmap.models` takes ``N x 1 x H x W`` (grey) or ``N x in_channels x H x W``
float images in ``[0, 1]``. :class:`InputAdapter`, its first module, checks the size and the value
range at run time and converts the image to the encoder's convention:

- grey repeated to 3 channels for ImageNet encoders, 3 channels averaged to 1 for CheXNet;
- ImageNet mean/std (Inception-v3 and ResNet-50 v2: mean = std = 0.5, i.e. ``[-1, 1]``), or for CheXNet
  (torchxrayvision) the linear map of ``[0, 1]`` onto ``[-1024, 1024]``.

Sizes: H and W must be multiples of :func:`input_multiple` (32: five 2x down-samplings) and at least
:func:`min_input_size` (32). Every multiple of 32 works for every encoder, 224, 256 and 512 included;
Inception-v3 too, since its encoder is padded 'same' (the original network needs at least 75 x 75 and
gives feature maps that do not halve exactly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from cxrmap.core.errors import DataError, ModelError
from cxrmap.models.encoders import DEPTH, check_encoder

RANGE_TOLERANCE = 1e-3
"""How far outside ``[0, 1]`` an input value may be (resampling overshoot) before it is refused."""


def input_multiple(encoder: str) -> int:
    """H and W of a model's input must be multiples of this (the encoder's output stride, 32)."""
    check_encoder(encoder)
    return 2**DEPTH


def min_input_size(encoder: str) -> int:
    """Smallest H and W a model with this encoder takes (32 for all, one pixel at stride 32)."""
    return input_multiple(encoder)


class InputAdapter(nn.Module):
    """Check a ``[0, 1]`` image batch and convert it to the encoder's channels and normalisation.

    Args:
        in_channels: channels the model accepts besides 1 (grey).
        encoder_channels: channels of the encoder's first convolution.
        mean, std: per-encoder-channel normalisation: ``(x - mean) / std``.
        multiple: H and W must be multiples of this.
        min_size: H and W must be at least this.

    Shape:
        ``N x C x H x W`` with C in {1, in_channels} -> ``N x encoder_channels x H x W``.

    Raises:
        ModelError: wrong rank, channels, size or dtype, or values outside ``[0, 1]`` (checked unless
            the model is being compiled, exported or captured in a CUDA graph).
    """

    def __init__(
        self,
        in_channels: int,
        encoder_channels: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        multiple: int = 32,
        min_size: int = 32,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.encoder_channels = encoder_channels
        self.multiple = multiple
        self.min_size = min_size
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, encoder_channels={self.encoder_channels}, "
            f"multiple={self.multiple}, min_size={self.min_size}"
        )

    def check(self, x: torch.Tensor) -> None:
        """Raise :class:`ModelError` when ``x`` is not a batch this model can take."""
        if x.ndim != 4:
            raise ModelError(
                f"expected an image batch N x C x H x W, got shape {tuple(x.shape)}; add the missing axes "
                "(e.g. image[None, None] for one H x W image)"
            )
        accepted = sorted({1, self.in_channels})
        if x.shape[1] not in accepted:
            raise ModelError(f"expected {' or '.join(map(str, accepted))} channels, got {x.shape[1]}")
        height, width = x.shape[-2:]
        if height % self.multiple or width % self.multiple or min(height, width) < self.min_size:
            raise ModelError(
                f"image size {height} x {width} does not fit: H and W must be multiples of {self.multiple} "
                f"and at least {self.min_size} (e.g. 224, 256, 512); resize or pad the image"
            )
        if not x.is_floating_point():
            raise ModelError(
                f"expected a float image in [0, 1], got dtype {x.dtype}; divide uint8 images by 255"
            )
        if x.numel() and not (torch.compiler.is_compiling() or torch.jit.is_tracing() or _capturing(x)):
            low, high = torch.aminmax(x.detach())
            low, high = float(low), float(high)
            if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE or low != low or high != high:
                raise ModelError(
                    f"expected image values in [0, 1], got [{low:.4g}, {high:.4g}]; the model normalises "
                    "internally: pass image / 255 for uint8 data, not mean/std-normalised tensors"
                )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        if x.shape[1] != self.encoder_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.encoder_channels, -1, -1)
            else:
                x = x.mean(dim=1, keepdim=True)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def _capturing(x: torch.Tensor) -> bool:
    """A CUDA graph is being captured: reading values back to the host is not allowed then."""
    return x.is_cuda and torch.cuda.is_current_stream_capturing()


def as_batch(images: Any) -> torch.Tensor:
    """Turn radiographs into the classifiers' input: float32 ``N x 1 x H x W`` in ``[0, 1]``.

    Args:
        images: a uint8 array ``N x H x W`` (divided by 255), a float array or tensor ``N x H x W`` or
            ``N x 1 x H x W`` already in ``[0, 1]``, or a list of equally sized uint8 ``H x W`` arrays.

    Raises:
        DataError: wrong number of dimensions, unequal sizes or float values outside ``[0, 1]``.
    """
    if isinstance(images, (list, tuple)):
        shapes = {np.shape(image) for image in images}
        if len(shapes) > 1:
            raise DataError(
                f"images of one batch must share one size, got {sorted(shapes)}; resize them first "
                "(cxrmap.data.cache.resize_image)"
            )
        images = np.stack([np.asarray(image) for image in images]) if images else np.zeros((0, 1, 1))
    if isinstance(images, np.ndarray):
        scale = 255.0 if images.dtype == np.uint8 else 1.0
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)) / scale
    elif isinstance(images, torch.Tensor):
        batch = images.detach().float()
    else:
        raise DataError(f"images must be a numpy array, a tensor or a list of arrays, got {type(images)}")
    if batch.ndim == 3:
        batch = batch[:, None]
    if batch.ndim != 4 or batch.shape[1] != 1:
        raise DataError(
            f"images must be N x H x W or N x 1 x H x W grayscale, got shape {tuple(batch.shape)}"
        )
    if batch.numel() and (batch.min() < 0 or batch.max() > 1):
        raise DataError(
            f"float images must lie in [0, 1], got [{batch.min():.3g}, {batch.max():.3g}]; pass uint8 "
            "radiographs or divide by 255"
        )
    return batch


def fit_size(images: torch.Tensor, input_size: int | None) -> torch.Tensor:
    """Downsample ``N x 1 x S x S`` images to ``input_size`` (antialiased bilinear) when they are larger."""
    if input_size is None or images.shape[-1] <= input_size:
        return images
    return nn.functional.interpolate(
        images, size=(input_size, input_size), mode="bilinear", antialias=True, align_corners=False
    ).clamp_(0.0, 1.0)
