"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, never loaded partially.

A checkpoint is a dict of tensors and plain python values:

``format``, ``version``
    ``"cxrmap-checkpoint"`` and :data:`VERSION`.
``meta``
    what a user of the model needs: ``model`` (the :func:`cxrmap.models.create_model`
    config), ``channels``, ``input_size``, ``threshold``, ``trained_on``, ``data_kind``, ``manifest_hash``,
    ``preset``, ``config`` (the :class:`~cxrmap.train.presets.TrainConfig` as a dict), ``metrics``,
    ``cxrmap_version``, ``created``.
``model``
    the state dict (strict load).
``optimizer``, ``scaler``, ``scheduler``, ``epoch``, ``rng``, ``plan``, ``history``, ``best``
    training state, in ``last.pt`` only: enough to resume a killed run exactly where it stopped.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from cxrmap.core.errors import CheckpointError, CxrmapError
from cxrmap.core.fileio import write_bytes_atomic
from cxrmap.models import create_model
from cxrmap.models.weights import load_failure, refused_code

FORMAT = "cxrmap-checkpoint"
VERSION = 1
META_KEYS = (
    "model",
    "channels",
    "input_size",
    "threshold",
    "trained_on",
    "data_kind",
    "manifest_hash",
    "preset",
    "config",
    "metrics",
    "cxrmap_version",
    "created",
)


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a crash leaves the previous file whole.

    Args:
        path: destination (``.pt``).
        state: tensors and plain python values only (``torch.load(weights_only=True)`` must read it back);
            ``format`` and ``version`` are added.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """

    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint onto the CPU with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, or not a cxrmap checkpoint.
    """

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; train one with `cxrmap train` or check the path"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError... on damaged files
        if refused_code(error):
            raise CheckpointError(
                f"checkpoint {path} holds code objects (Python objects other than tensors and plain "
                "values), so it was refused unread; use a checkpoint written by `cxrmap train`"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({load_failure(error)}); "
            "it is truncated, corrupt or not a PyTorch checkpoint. Use another checkpoint or train again."
        ) from error
    if (
        not isinstance(state, dict)
        or state.get("format") != FORMAT
        or "model" not in state
        or "meta" not in state
    ):
        raise CheckpointError(
            f"{path} is a PyTorch file but not a cxrmap checkpoint (expected a dict with format {FORMAT!r}, "
            "'meta' and 'model'); give a file written by `cxrmap train`"
        )
    if state.get("version", 0) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {state['version']}, newer than this cxrmap reads "
            f"({VERSION}); upgrade cxrmap"
        )
    return state


def build_model(meta: dict, path: str | os.PathLike = "checkpoint"):
    """Create the untrained network a checkpoint's ``meta`` describes (no pretrained weights are fetched).

    Raises:
        CheckpointError: ``meta`` lacks the model config or names a model this cxrmap cannot build.
    """

    config = meta.get("model") if isinstance(meta, dict) else None
    if not isinstance(config, dict) or "arch" not in config or "encoder" not in config:
        raise CheckpointError(f"checkpoint {path} has no model config in its metadata; it cannot be rebuilt")
    try:
        # The trained weights replace any pretrained ones, so none are loaded (they may be unavailable here).
        return create_model(**{**config, "weights": None})
    except (CxrmapError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path} describes a model that cannot be built: {error}") from error


def restore_weights(model, state_dict: dict, path: str | os.PathLike = "checkpoint") -> None:
    """Load ``state_dict`` into ``model`` strictly (every tensor, every shape), or raise.

    Raises:
        CheckpointError: missing or unexpected tensors, or shapes that differ: the checkpoint was written
            for another architecture, encoder or number of output channels.
    """
    model = getattr(model, "module", model)
    config = getattr(model, "config", {})

    def refuse(detail: str) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {path} does not fit the model {config.get('arch')}/{config.get('encoder')} "
            f"({detail}); it was written for another architecture. Load it with `load_model`, which builds "
            "the model its metadata names, or pick the matching checkpoint."
        )

    # Compare names and shapes first: load_state_dict copies what fits before it raises, which would
    # leave the model half loaded.
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if not isinstance(state_dict, dict):
        raise refuse(f"its weights are a {type(state_dict).__name__}, not a state dict")
    given = {k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong = sorted(k for k in set(expected) & set(given) if expected[k] != given[k])
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}")
        raise refuse("; ".join(parts))
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError) as error:
        raise refuse(str(error).replace("\n", " ")[:300]) from error


def check_same_model(meta: dict, config: dict, path: str | os.PathLike = "checkpoint") -> None:
    """Raise unless the checkpoint's model (arch, encoder, classes, channels in) is ``config``'s.

    Raises:
        CheckpointError: the checkpoint holds another architecture.
    """
    keys = ("arch", "encoder", "classes", "in_channels")
    saved = meta.get("model", {})
    diff = {k: (saved.get(k), config.get(k)) for k in keys if k in config and saved.get(k) != config.get(k)}
    if diff:
        text = ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"checkpoint {path} holds another model ({text}); resume with the settings it was trained "
            "with, or train into a new output folder"
        )


def load_model(path: str | os.PathLike, device="cpu"):
    """Build the model a checkpoint describes, load its weights strictly, and put it in eval mode.

    Args:
        path: ``model.pt``, ``best.pt`` or ``last.pt``.
        device: where to put the model.

    Returns:
        ``(model, meta)``: the ``nn.Module`` in eval mode on ``device`` and the checkpoint's metadata.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, or its weights do not fit its metadata.

    Example:
        >>> model, meta = load_model("runs/quick/model.pt")  # doctest: +SKIP
        >>> meta["channels"], meta["input_size"]  # doctest: +SKIP
        (['infection', 'lung'], 96)
    """
    state = load_checkpoint(path)
    meta = state["meta"]
    model = build_model(meta, path)
    restore_weights(model, state["model"], path)
    return model.to(device).eval(), meta


def update_meta(path: str | os.PathLike, **changes) -> dict:
    """Rewrite a checkpoint with ``changes`` merged into its metadata (e.g. cross-validated ``metrics``).

    Returns:
        The new metadata.
    """
    state = load_checkpoint(path)
    state["meta"] = {**state["meta"], **changes}
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})
    return state["meta"]
