"""Request batching: predictions that arrive while the model is busy run together in one call.

A :class:`Batcher` owns one thread that calls ``run(items) -> results`` (for the demo,
``Predictor.predict`` on decoded radiographs). Items submitted while a call is running wait in a queue;
the next call takes up to ``max_batch`` of them at once. A batch of N costs much less than N calls of one
on a CPU (one forward pass, one set of kernel launches), so under load every request is answered sooner.

The batcher waits for more items only when it knows more are coming: a request announces itself with
:meth:`Batcher.expect` when it is accepted (before its upload is decoded) and :meth:`Batcher.submit` (or
:meth:`Batcher.withdraw`, when its upload is refused) consumes the announcement. While announced items
are still on their way, the batcher gives them at most ``max_wait`` seconds; a lone request never waits.

Each item gets its own result or its own error: when a batch raises, its items are run again one by
one, so one bad item fails only its own request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from cxrmap.core.errors import BusyError, CxrmapError

DEFAULT_MAX_WAIT = 0.004
"""Longest wait, in seconds, for announced requests to join a batch (a few ms: a small share of a
forward pass on a CPU, long enough for an upload that is being decoded)."""


class Batcher:
    """Runs ``run`` on batches of submitted items in one background thread.

    Args:
        run: maps a list of items to a list of results of the same length, in order.
        max_batch: most items per call (1: every item alone, no batching).
        max_wait: longest wait, in seconds, for announced items to join a batch.
        name: the thread's name.

    Example:
        >>> batcher = Batcher(lambda xs: [x * 2 for x in xs], max_batch=4)
        >>> batcher.submit(21).result()
        42
        >>> batcher.close()
    """

    def __init__(
        self,
        run: Callable[[list[Any]], list[Any]],
        max_batch: int = 8,
        max_wait: float = DEFAULT_MAX_WAIT,
        name: str = "cxrmap-batcher",
    ) -> None:
        if max_batch < 1:
            raise CxrmapError(f"the batch size must be at least 1; got {max_batch}")
        if max_wait < 0:
            raise CxrmapError(f"the batching wait must be 0 or more seconds; got {max_wait}")
        self.run = run
        self.max_batch = int(max_batch)
        self.max_wait = float(max_wait)
        self.batches = 0
        """Calls of ``run`` made so far."""
        self._ready = threading.Condition()
        self._items: deque[tuple[Any, Future]] = deque()
        self._coming = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Items submitted and not yet taken into a batch."""
        return len(self._items)

    def expect(self) -> None:
        """Announce an item that will be submitted soon (or withdrawn): a batch may wait for it."""
        with self._ready:
            self._coming += 1

    def withdraw(self) -> None:
        """An announced item will not come."""
        with self._ready:
            self._coming = max(0, self._coming - 1)
            self._ready.notify()

    def submit(self, item: Any) -> Future:
        """Queue ``item`` (consuming one announcement, if any); the future holds its result or error."""
        future: Future = Future()
        with self._ready:
            if self._closed:
                raise BusyError("The server is shutting down; retry in a few seconds.", retry_after=5)
            self._coming = max(0, self._coming - 1)
            self._items.append((item, future))
            self._ready.notify()
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Answer the items already submitted, then stop the thread; later submissions are refused."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------------------------------------ thread
    def _loop(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._items or self._closed)
                if not self._items:
                    return  # closed, and every item answered
                batch = self._gather()
            # a request that went away (its future cancelled) is left out
            batch = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if batch:
                self._run(batch)

    def _gather(self) -> list[tuple[Any, Future]]:
        """The items queued now (up to ``max_batch``), then announced ones arriving within ``max_wait``.

        Called holding the lock, with at least one item queued.
        """
        batch = [self._items.popleft()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            if self._items:
                batch.append(self._items.popleft())
                continue
            left = deadline - time.monotonic()
            if self._coming == 0 or left <= 0 or self._closed:
                break
            self._ready.wait(left)
        return batch

    def _run(self, batch: list) -> None:
        """Run ``batch``; when it raises, run its items one by one so each gets its own answer."""
        items = [item for item, _ in batch]
        self.batches += 1
        try:
            results = self.run(items)
            if len(results) != len(items):
                raise RuntimeError(f"the batch function gave {len(results)} results for {len(items)} items")
        except Exception as error:
            if len(batch) == 1:
                batch[0][1].set_exception(error)
                return
            for entry in batch:
                self._run([entry])
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
