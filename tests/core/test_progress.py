"""Progress output: plain lines off a terminal, a bar on one, the whole run's ETA from its plan."""

from __future__ import annotations

import io

import pytest

from cxrmap.core import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def every_update(monkeypatch):
    """A line at every update instead of every few seconds."""
    monkeypatch.setattr(progress, "INTERVAL", 0.0)


def test_plain_lines_carry_stage_facts_loss_rate_and_eta(every_update):
    stream = io.StringIO()
    with progress.context(fold="2/3"):
        bar = progress.track(
            [[1, 2], [3, 4], [5]], stage="train", unit="batch", count=len, stream=stream, epoch="4/9"
        )
        for _ in bar:
            bar.set_postfix(loss=0.5)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 3  # one per batch (INTERVAL 0); the end adds none, the last batch just said it
    assert [line.split(":")[0] for line in lines] == ["train fold 2/3 epoch 4/9"] * 3
    assert lines[0].startswith("train fold 2/3 epoch 4/9: 1/3 batch, ")
    assert lines[-1].startswith("train fold 2/3 epoch 4/9: 3/3 batch, loss 0.5000, ")
    assert " img/s, " in lines[-1] and lines[-1].endswith("ETA 0s")


def test_off_a_terminal_lines_come_every_interval_and_at_the_end():
    stream = io.StringIO()
    with progress.track(stage="cache", total=1000, stream=stream) as bar:
        for _ in range(1000):
            bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cache: 1000/1000 img, ")


def test_a_terminal_gets_a_bar():
    stream = _Terminal()
    with progress.track(range(3), stage="evaluate", stream=stream) as bar:
        list(bar)
    assert "\r" in stream.getvalue() and "evaluate" in stream.getvalue()


def test_quiet_shows_and_counts_nothing(every_update):
    stream = io.StringIO()
    with progress.plan() as plan:
        bar = progress.track(range(3), stage="train", enabled=False, stream=stream)
        assert list(bar) == [0, 1, 2]
    assert stream.getvalue() == "" and plan.stages == {}


def test_plan_estimates_what_is_left_from_the_rates_so_far():
    plan = progress.Plan()
    plan.expect("train", 4)
    plan.expect("classifier", 2, like="train", scale=3)
    assert plan.remaining() is None  # nothing measured yet
    plan.record("train", 1, 2.0)  # one epoch in 2 s
    assert plan.remaining() == pytest.approx(3 * 2.0 + 2 * 3 * 2.0)
    plan.record("classifier", 0.5, 5.0)  # half a classifier in 5 s: its own rate now
    assert plan.remaining() == pytest.approx(3 * 2.0 + 1.5 * 10.0)
    plan.expect("evaluate", 1)  # no rate, no stand-in: the average seconds per unit so far
    assert plan.remaining() == pytest.approx(3 * 2.0 + 1.5 * 10.0 + 7.0 / 1.5)


def test_bars_feed_the_open_plan_and_nested_plans_join_it(every_update):
    stream = io.StringIO()
    with progress.plan() as outer:
        outer.expect("train", 3)
        with progress.plan() as inner:
            assert inner is outer
            progress.expect("evaluate", 2)
        with progress.track(stage="train", total=4, stream=stream) as bar:
            bar.update(2)
            assert outer.stages["train"].done == pytest.approx(0.5)
        assert outer.stages["train"].done == pytest.approx(1.0)
        progress.track(stage="Grad-CAM", total=1, stream=stream).close()  # unannounced: counted once run
        assert outer.stages["Grad-CAM"].expected == outer.stages["Grad-CAM"].done == 1
    assert "run ETA" in stream.getvalue()
    progress.expect("train", 5)  # no plan open: nothing to do
    with progress.plan() as fresh:
        assert fresh is not outer and fresh.stages == {}


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (59, "59s"), (192, "3m12s"), (7500, "2h05m"), (-3, "0s")]
)
def test_durations_read_short(seconds, text):
    assert progress.format_duration(seconds) == text
