"""Progress that fits where it goes: a live bar on a terminal, one plain line every few seconds elsewhere.

Every long step (phantom generation, caching, training epochs, evaluation, the classifiers, Grad-CAM,
prediction) shows its progress through :func:`track`. On a terminal that is a tqdm bar; on a pipe or a
file it is one line every :data:`INTERVAL` seconds and one when the step ends (each epoch's end), with
the same facts and no carriage return::

    train fold 2/5 epoch 4/9: 120/120 batches, loss 0.4312, 23.1 img/s, run ETA 3m12s

A whole run (``cxrmap run``, ``cxrmap cv``) opens a :func:`plan` and says which steps are still to come
with :func:`expect`; the ETA is then that of the whole run, estimated from the seconds each kind of step
has taken so far. :func:`context` adds facts (``fold 2/5``) to every line shown inside it.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TextIO

from tqdm.auto import tqdm

INTERVAL = 5.0
"""Seconds between two plain progress lines of one step."""


@dataclass
class _Stage:
    expected: float = 0.0
    done: float = 0.0
    seconds: float = 0.0
    like: str | None = None
    scale: float = 1.0


@dataclass
class Plan:
    """The steps of a whole run, by kind, and the seconds each kind has taken so far.

    A unit is one bar of :func:`track` (one training epoch, one fold's evaluation, one classifier...);
    a bar that is part-way counts as the part it has done.
    """

    stages: dict[str, _Stage] = field(default_factory=dict)

    def expect(self, stage: str, units: float = 1.0, like: str | None = None, scale: float = 1.0) -> None:
        """``units`` more bars of ``stage`` are to come; until one has run, each is estimated to take
        ``scale`` times a unit of ``like`` (e.g. a classifier as its epochs times a training epoch)."""
        entry = self.stages.setdefault(stage, _Stage())
        entry.expected += units
        if like is not None:
            entry.like, entry.scale = like, scale

    def record(self, stage: str, units: float, seconds: float) -> None:
        """``units`` of ``stage`` were done in ``seconds``."""
        entry = self.stages.setdefault(stage, _Stage())
        entry.done += units
        entry.seconds += seconds
        entry.expected = max(entry.expected, entry.done)

    def _unit_seconds(self, stage: str) -> float | None:
        entry = self.stages[stage]
        if entry.done > 0:
            return entry.seconds / entry.done
        if entry.like in self.stages and self.stages[entry.like].done > 0:
            like = self.stages[entry.like]
            return entry.scale * like.seconds / like.done
        measured = [s for s in self.stages.values() if s.done > 0]
        if not measured:
            return None
        return sum(s.seconds for s in measured) / sum(s.done for s in measured)

    def remaining(self) -> float | None:
        """Estimated seconds left in the whole run; None before anything has been measured."""
        total = 0.0
        for name, entry in self.stages.items():
            left = entry.expected - entry.done
            if left <= 1e-9:
                continue
            unit = self._unit_seconds(name)
            if unit is None:
                return None
            total += left * unit
        return total


_PLAN: ContextVar[Plan | None] = ContextVar("cxrmap_progress_plan", default=None)
_FACTS: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("cxrmap_progress_facts", default=())


@contextlib.contextmanager
def plan() -> Iterator[Plan]:
    """The run's plan: a new one, or the one already open (a study's cross-validation joins the study's)."""
    current = _PLAN.get()
    if current is not None:
        yield current
        return
    token = _PLAN.set(Plan())
    try:
        yield _PLAN.get()
    finally:
        _PLAN.reset(token)


def expect(stage: str, units: float = 1.0, like: str | None = None, scale: float = 1.0) -> None:
    """:meth:`Plan.expect` on the open plan; nothing without one."""
    current = _PLAN.get()
    if current is not None and units > 0:
        current.expect(stage, units, like, scale)


@contextlib.contextmanager
def context(**facts: Any) -> Iterator[None]:
    """Show ``facts`` (e.g. ``fold="2/5"``) on every progress line inside the block."""
    token = _FACTS.set(_FACTS.get() + tuple((k, str(v)) for k, v in facts.items()))
    try:
        yield
    finally:
        _FACTS.reset(token)


def format_duration(seconds: float) -> str:
    """``42s``, ``3m12s``, ``2h05m``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


class Bar:
    """One step's progress (see :func:`track`): iterate it, or call :meth:`update` and then :meth:`close`."""

    def __init__(
        self,
        iterable: Iterable | None,
        stage: str,
        total: int | None,
        unit: str,
        count: Callable[[Any], int] | None,
        count_unit: str | None,
        enabled: bool,
        stream: TextIO | None,
        facts: dict[str, Any],
    ) -> None:
        self.iterable, self.stage, self.unit, self.count = iterable, stage, unit, count
        self.count_unit = count_unit or ("img" if count is not None else unit)
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.facts = {k: str(v) for k, v in facts.items()}
        self.context = dict(_FACTS.get())
        self.plan = _PLAN.get()
        self.n = 0
        self.counted = 0
        self.started = self.last_record = self.last_line = time.perf_counter()
        self.reported = 0.0
        self.shown = -1  # steps done at the last plain line
        self.closed = False
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.live = enabled and is_terminal(self.stream)
        self._tqdm = None
        if self.plan is not None and enabled:
            entry = self.plan.stages.get(stage)
            if entry is None or entry.expected - entry.done < 1 - 1e-9:
                self.plan.expect(stage)  # a step nobody announced counts from now on
        if self.live:
            self._tqdm = tqdm(
                total=total, desc=self._title(), unit=unit, leave=False, file=self.stream, dynamic_ncols=True
            )

    def _title(self) -> str:
        facts = [f"{k} {v}" for k, v in (*self.context.items(), *self.facts.items()) if k != "loss"]
        return " ".join([self.stage, *facts])

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1, self.count(item) if self.count is not None else None)
        self.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set(self, **facts: Any) -> None:
        """Show (or change) facts such as ``loss=0.43`` or ``epoch="2/9"``."""
        self.facts.update({k: _value(v) for k, v in facts.items()})
        if self._tqdm is not None:
            self._tqdm.set_description_str(self._title(), refresh=False)

    set_postfix = set

    def _record(self, fraction: float) -> None:
        now = time.perf_counter()
        if self.plan is not None and self.enabled:
            self.plan.record(self.stage, fraction - self.reported, now - self.last_record)
        self.reported, self.last_record = fraction, now

    def eta(self) -> tuple[str, float | None]:
        """``("run ETA", seconds)`` with a plan, else this step's own ``("ETA", seconds)``."""
        if self.plan is not None:
            return "run ETA", self.plan.remaining()
        elapsed = time.perf_counter() - self.started
        if not self.total or not self.n:
            return "ETA", None
        return "ETA", elapsed / self.n * (self.total - self.n)

    def update(self, n: int = 1, counted: int | None = None) -> None:
        """``n`` more steps done (``counted`` images in them, for the rate; default ``n``)."""
        if not self.enabled:
            return
        self.n += n
        self.counted += n if counted is None else counted
        if self.total:
            self._record(min(self.n / self.total, 1.0))
        if self._tqdm is not None:
            label, seconds = self.eta()
            extra = {k: v for k, v in self.facts.items() if k == "loss"}
            if seconds is not None and self.plan is not None:
                extra[label] = format_duration(seconds)
            self._tqdm.set_postfix(extra, refresh=False)
            self._tqdm.update(n)
        elif time.perf_counter() - self.last_line >= INTERVAL:
            self._line()

    def _line(self) -> None:
        now = time.perf_counter()
        self.last_line, self.shown = now, self.n
        elapsed = now - self.started
        parts = [f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"]
        if "loss" in self.facts:
            parts.append(f"loss {self.facts['loss']}")
        if elapsed > 0 and self.counted:
            parts.append(f"{self.counted / elapsed:.1f} {self.count_unit}/s")
        parts.append(f"{format_duration(elapsed)} elapsed")
        label, seconds = self.eta()
        parts.append(
            f"{label} {'?' if seconds is None or not math.isfinite(seconds) else format_duration(seconds)}"
        )
        print(f"{self._title()}: {', '.join(parts)}", file=self.stream, flush=True)

    def close(self) -> None:
        """End the step: the plan counts it done; in a pipe or file, a last line unless one just said it."""
        if self.closed:
            return
        self.closed = True
        if not self.enabled:
            return
        self._record(1.0)
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.shown != self.n:
            self._line()


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default standard error) is a terminal, where a live bar belongs."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def track(
    iterable: Iterable | None = None,
    *,
    stage: str,
    total: int | None = None,
    unit: str = "img",
    count: Callable[[Any], int] | None = None,
    count_unit: str | None = None,
    enabled: bool = True,
    stream: TextIO | None = None,
    **facts: Any,
) -> Bar:
    """Progress of one step.

    Args:
        iterable: what the step goes through (iterate the bar); None to call :meth:`Bar.update`.
        stage: what the step is (``train``, ``evaluate``, ``cache``...): the line's first word, and the
            kind of step the plan estimates its rate from.
        total: steps in all (default ``len(iterable)``).
        unit: what a step is (``img``, ``batch``...).
        count: images in one item of ``iterable``, for a rate in ``count_unit`` (default ``img``) per second.
        enabled: False shows and counts nothing (``--quiet``).
        stream: where to write (default standard error).
        facts: shown on every line (``epoch="4/9"``).
    """
    return Bar(iterable, stage, total, unit, count, count_unit, enabled, stream, facts)
