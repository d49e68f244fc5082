"""Wall time of a notebook's steps, for the table each notebook ends with.

    timings = Timings()                 # the clock of the whole notebook starts here
    with timings.step("train"):
        trainer = run_sft(...)
    timings["train"] / 60               # minutes of one step (a ``Timings`` is a dict of seconds)
    timings.elapsed() / 60              # minutes since the notebook started
    timings.table()                     # one row per step, in minutes
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd


class Timings(dict):
    """Seconds per named step, filled by ``with timings.step(name):``."""

    def __init__(self):
        super().__init__()
        self.started = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step ``name`` (a step run again keeps its latest time)."""
        start = time.perf_counter()
        yield
        self[name] = time.perf_counter() - start

    def elapsed(self) -> float:
        """Seconds since this ``Timings`` was made."""
        return time.perf_counter() - self.started

    def table(self) -> pd.DataFrame:
        """One row per step, its wall time in minutes (to 0.1)."""
        return pd.Series({name: f"{seconds / 60:.1f} min" for name, seconds in self.items()}, name="wall time").to_frame()
