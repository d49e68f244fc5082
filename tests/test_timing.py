import pytest

from helpers import timing
from helpers.timing import Timings


class FakeClock:
    """``time.perf_counter`` that moves only when told to."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake)
    return fake


def test_each_step_records_its_own_seconds_and_elapsed_counts_from_the_start(clock):
    timings = Timings()
    clock.now += 5  # before the first step: in elapsed(), in no step
    with timings.step("sample"):
        clock.now += 90
    with timings.step("train"):
        clock.now += 30
    assert dict(timings) == {"sample": 90, "train": 30}
    assert timings.elapsed() == 125


def test_a_failed_step_records_nothing(clock):
    timings = Timings()
    with pytest.raises(RuntimeError), timings.step("train"):
        clock.now += 10
        raise RuntimeError("out of memory")
    assert "train" not in timings


def test_table_shows_minutes_in_step_order(clock):
    timings = Timings()
    with timings.step("train"):
        clock.now += 1038
    timings["whole notebook"] = 3246.0
    table = timings.table()
    assert list(table.index) == ["train", "whole notebook"]
    assert table["wall time"].tolist() == ["17.3 min", "54.1 min"]
