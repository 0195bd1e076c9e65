"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``, never loaded partially.

A checkpoint is a dict of tensors and plain python values:

``format``, ``version``
    ``"cxrmap-checkpoint"`` and :data:`VERSION`.
``meta``
    what a user of the model needs, a :class:`CheckpointMeta` stored as :meth:`CheckpointMeta.to_dict`:
    the task, the network's builder arguments, its output channels, input size and threshold, the data it
    learnt from (:class:`TrainingData`), how it was made (:class:`Provenance`) and its figures.
``model``
    the state dict (strict load).
``optimizer``, ``scaler``, ``scheduler``, ``epoch``, ``rng``, ``plan``, ``history``, ``best``
    training state, in ``last.pt`` only: enough to resume a killed run exactly where it stopped.

Version 1 checkpoints (a flat metadata dict without a ``version``: :data:`LEGACY_KEYS`) still load.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cxrmap.core.errors import CheckpointError, CxrmapError
from cxrmap.core.fileio import write_bytes_atomic
from cxrmap.models import create_classifier, create_model
from cxrmap.models.weights import load_failure, refused_code

FORMAT = "cxrmap-checkpoint"
VERSION = 2
"""Format version of checkpoint files and of their metadata (1: the flat metadata dict, still read)."""
TASKS = ("segmentation", "classification")
"""What a checkpoint's network does: infection (and lung) maps, or COVID-19 / control logits."""
LEGACY_KEYS = (
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
"""The fields of version 1 metadata (segmentation networks), every one required."""


@dataclass(frozen=True)
class TrainingData:
    """What a network learnt from.

    Attributes:
        kind: ``phantom`` (synthetic radiographs) or ``real``.
        description: for people, e.g. ``phantom: 12 images (6 COVID-19, 6 control), manifest 0123...``.
        manifest_hash: :func:`cxrmap.data.manifest.manifest_hash` of the manifest trained on.
    """

    kind: str
    description: str
    manifest_hash: str


@dataclass(frozen=True)
class Provenance:
    """How and when a checkpoint was made.

    Attributes:
        preset: the training preset (``quick``, ``paper``, ``custom``...).
        config: the training settings as a plain dict (:meth:`~cxrmap.train.presets.TrainConfig.to_dict`).
        cxrmap_version: the cxrmap that trained it.
        created: ISO 8601 time of writing.
    """

    preset: str
    config: dict
    cxrmap_version: str
    created: str


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's metadata, validated: every field present and of its type.

    Attributes:
        task: ``segmentation`` or ``classification`` (:data:`TASKS`).
        model: the builder's arguments (:func:`cxrmap.models.create_model` or
            :func:`cxrmap.models.create_classifier`); they rebuild the network.
        channels: the network's outputs in order (``infection``, ``lung``; or ``control``, ``covid``).
        input_size: side of the square images the network was trained on.
        threshold: probability from which a pixel (segmentation) or an image (classification) is COVID-19.
        data: what it learnt from.
        provenance: how and when it was made.
        metrics: figures measured on held-out images (nested dicts of numbers), possibly empty.
        version: :data:`VERSION`.
    """

    task: str
    model: dict
    channels: tuple[str, ...]
    input_size: int
    threshold: float
    data: TrainingData
    provenance: Provenance
    metrics: dict = field(default_factory=dict)
    version: int = VERSION

    @property
    def arch(self) -> str | None:
        """The segmentation architecture (``unet``...); None for a classifier."""
        return self.model.get("arch")

    @property
    def encoder(self) -> str:
        """The encoder's name (``densenet121``...)."""
        return self.model["encoder"]

    @property
    def weights(self) -> str | None:
        """The encoder's initial weights (``imagenet``, a file...); None for random initialisation."""
        return self.model.get("weights")

    @property
    def phantom(self) -> bool:
        """Trained on synthetic phantom radiographs."""
        return self.data.kind == "phantom"

    def to_dict(self) -> dict:
        """Plain python values (``weights_only`` checkpoints and JSON take them)."""
        data = dataclasses.asdict(self)
        data["channels"] = list(self.channels)
        return data

    def replace(self, **changes: Any) -> CheckpointMeta:
        """A copy with ``changes``; a dict given for ``data`` or ``provenance`` updates only its fields.

        Raises:
            CheckpointError: an unknown field, or a value of the wrong type.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise CheckpointError(
                f"checkpoint metadata has no field {unknown[0]!r}; its fields: {', '.join(sorted(names))}"
            )
        data = self.to_dict()
        for name, value in changes.items():
            if isinstance(value, dict) and name in ("data", "provenance"):
                data[name] = {**data[name], **value}
            else:
                data[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        return CheckpointMeta.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any, path: str | os.PathLike = "checkpoint") -> CheckpointMeta:
        """Validate stored metadata: this version's, or version 1's flat dict (:data:`LEGACY_KEYS`).

        Raises:
            CheckpointError: not a dict, an unknown version, a missing field or a value of the wrong type;
                the message names the field and ``path``.
        """
        fields = _Fields(path)
        if not isinstance(data, dict):
            raise fields.error(f"its metadata is a {type(data).__name__}, not a dict")
        if "version" not in data:
            return _from_legacy(data, fields)
        version = data["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version != VERSION:
            raise fields.error(
                f"its metadata has format version {version!r}, which this cxrmap does not read (it reads "
                f"{VERSION}, and 1 without a version); upgrade cxrmap or train the model again"
            )
        task = fields.choice(data, "task", TASKS)
        part = fields.mapping(data, "data")
        provenance = fields.mapping(data, "provenance")
        return cls(
            task=task,
            model=fields.model(data, "model", task),
            channels=fields.names(data, "channels"),
            input_size=fields.size(data, "input_size"),
            threshold=fields.share(data, "threshold"),
            data=TrainingData(
                kind=fields.text(part, "kind", "data."),
                description=fields.text(part, "description", "data."),
                manifest_hash=fields.text(part, "manifest_hash", "data."),
            ),
            provenance=Provenance(
                preset=fields.text(provenance, "preset", "provenance."),
                config=fields.mapping(provenance, "config", "provenance."),
                cxrmap_version=fields.text(provenance, "cxrmap_version", "provenance."),
                created=fields.text(provenance, "created", "provenance."),
            ),
            metrics=fields.mapping(data, "metrics"),
        )


class _Fields:
    """Reads one field of stored metadata, or raises a CheckpointError naming it and the file."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path

    def error(self, detail: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {self.path} cannot be used: {detail}")

    def get(self, data: dict, name: str, prefix: str = "") -> Any:
        if name not in data:
            raise self.error(
                f"its metadata lacks the field {prefix + name!r}; it was not written by cxrmap or is "
                "damaged. Train the model again or use another checkpoint."
            )
        return data[name]

    def wrong(self, name: str, value: Any, expected: str) -> CheckpointError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return self.error(f"its metadata field {name!r} is {shown}, expected {expected}")

    def text(self, data: dict, name: str, prefix: str = "") -> str:
        value = self.get(data, name, prefix)
        if not isinstance(value, str):
            raise self.wrong(prefix + name, value, "a string")
        return value

    def mapping(self, data: dict, name: str, prefix: str = "") -> dict:
        value = self.get(data, name, prefix)
        if not isinstance(value, dict):
            raise self.wrong(prefix + name, value, "a dict")
        return value

    def choice(self, data: dict, name: str, choices: tuple[str, ...]) -> str:
        value = self.get(data, name)
        if not isinstance(value, str) or value not in choices:
            raise self.wrong(name, value, f"one of {', '.join(choices)}")
        return value

    def size(self, data: dict, name: str) -> int:
        value = self.get(data, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.wrong(name, value, "a positive whole number of pixels")
        return value

    def share(self, data: dict, name: str) -> float:
        value = self.get(data, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise self.wrong(name, value, "a number in [0, 1]")
        return float(value)

    def names(self, data: dict, name: str) -> tuple[str, ...]:
        value = self.get(data, name)
        if (
            not isinstance(value, (list, tuple))
            or not value
            or not all(isinstance(v, str) for v in value)
            or len(set(value)) != len(value)
        ):
            raise self.wrong(name, value, "a non-empty list of distinct names")
        return tuple(value)

    def model(self, data: dict, name: str, task: str) -> dict:
        value = self.mapping(data, name)
        needed = ("arch", "encoder") if task == "segmentation" else ("encoder",)
        for key in needed:
            self.text(value, key, f"{name}.")
        weights = value.get("weights")
        if weights is not None and not isinstance(weights, str):
            raise self.wrong(f"{name}.weights", weights, "None, a weights name or a file path")
        return dict(value)


def _from_legacy(data: dict, fields: _Fields) -> CheckpointMeta:
    """Version 1: the flat dict of :data:`LEGACY_KEYS` written by segmentation training."""
    for name in LEGACY_KEYS:
        fields.get(data, name)
    return CheckpointMeta(
        task="segmentation",
        model=fields.model(data, "model", "segmentation"),
        channels=fields.names(data, "channels"),
        input_size=fields.size(data, "input_size"),
        threshold=fields.share(data, "threshold"),
        data=TrainingData(
            kind=fields.text(data, "data_kind"),
            description=fields.text(data, "trained_on"),
            manifest_hash=fields.text(data, "manifest_hash"),
        ),
        provenance=Provenance(
            preset=fields.text(data, "preset"),
            config=fields.mapping(data, "config"),
            cxrmap_version=fields.text(data, "cxrmap_version"),
            created=fields.text(data, "created"),
        ),
        metrics=fields.mapping(data, "metrics"),
    )


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a crash leaves the previous file whole.

    Args:
        path: destination (``.pt``).
        state: tensors and plain python values only (``torch.load(weights_only=True)`` must read it back),
            ``meta`` a :class:`CheckpointMeta`; ``format`` and ``version`` are added.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """

    meta = state.get("meta")
    if isinstance(meta, CheckpointMeta):
        state = {**state, "meta": meta.to_dict()}
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint onto the CPU with ``weights_only=True``; ``meta`` becomes a :class:`CheckpointMeta`.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, not a cxrmap checkpoint, or its metadata
            is incomplete or of another version.
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
    state["meta"] = CheckpointMeta.from_dict(state["meta"], path)
    return state


def build_model(meta: CheckpointMeta, path: str | os.PathLike = "checkpoint"):
    """Create the untrained network ``meta`` describes (no pretrained weights are fetched).

    Raises:
        CheckpointError: ``meta`` names a network this cxrmap cannot build.
    """

    create = create_model if meta.task == "segmentation" else create_classifier
    try:
        # The trained weights replace any pretrained ones, so none are loaded (they may be unavailable here).
        return create(**{**meta.model, "weights": None})
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


def check_same_model(meta: CheckpointMeta, config: dict, path: str | os.PathLike = "checkpoint") -> None:
    """Raise unless the checkpoint's model (arch, encoder, classes, channels in) is ``config``'s.

    Raises:
        CheckpointError: the checkpoint holds another architecture.
    """
    keys = ("arch", "encoder", "classes", "in_channels")
    saved = meta.model
    diff = {k: (saved.get(k), config.get(k)) for k in keys if k in config and saved.get(k) != config.get(k)}
    if diff:
        text = ", ".join(f"{k}: checkpoint {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(
            f"checkpoint {path} holds another model ({text}); resume with the settings it was trained "
            "with, or train into a new output folder"
        )


def load_model(path: str | os.PathLike, device="cpu", task: str | None = None):
    """Build the model a checkpoint describes, load its weights strictly, and put it in eval mode.

    Args:
        path: ``model.pt``, ``best.pt`` or ``last.pt``.
        device: where to put the model.
        task: refuse a checkpoint of another task (:data:`TASKS`); None takes any.

    Returns:
        ``(model, meta)``: the ``nn.Module`` in eval mode on ``device`` and its :class:`CheckpointMeta`.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, or its weights do not fit its metadata.

    Example:
        >>> model, meta = load_model("runs/quick/model.pt")  # doctest: +SKIP
        >>> meta.channels, meta.input_size  # doctest: +SKIP
        (('infection', 'lung'), 96)
    """
    state = load_checkpoint(path)
    meta = state["meta"]
    if task is not None and meta.task != task:
        raise CheckpointError(
            f"{path} holds a {meta.task} network, not a {task} one; give a checkpoint of a {task} network "
            "(classifiers are written by train_classifier, segmentation networks by `cxrmap train`)"
        )
    model = build_model(meta, path)
    restore_weights(model, state["model"], path)
    return model.to(device).eval(), meta


def update_meta(path: str | os.PathLike, **changes) -> CheckpointMeta:
    """Rewrite a checkpoint with ``changes`` merged into its metadata (e.g. cross-validated ``metrics``).

    ``changes`` are :class:`CheckpointMeta` fields; a dict for ``data`` or ``provenance`` updates only the
    fields it names (``data={"kind": "real"}``). A version 1 checkpoint is rewritten in this version.

    Returns:
        The new metadata.

    Raises:
        CheckpointError: the checkpoint cannot be read, or a change names no field or has the wrong type.
    """
    state = load_checkpoint(path)
    state["meta"] = state["meta"].replace(**changes)
    save_checkpoint(path, {k: v for k, v in state.items() if k not in ("format", "version")})
    return state["meta"]
