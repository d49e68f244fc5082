"""Checks exercise 1 of notebook 01: ``usable_countdown_row(row) -> bool``, a validator for Countdown rows.

A row is usable when it fits the Countdown schema (``nums`` a list of ints, ``target`` an int), has 3 or 4
numbers, every number in 1..MAX_NUMBER and the target in 1..MAX_TARGET (the generator's ranges), and has a
solution.
"""

from __future__ import annotations

from helpers.data import MAX_NUMBER, MAX_TARGET
from helpers.exercises import run_cases

# (what the case tests, row, expected answer)
USABLE_COUNTDOWN_CASES = [
    ("three numbers, solvable", {"nums": [2, 3, 5], "target": 25}, True),
    ("four numbers, solvable", {"nums": [10, 20, 30, 40], "target": 100}, True),
    ("no target", {"nums": [2, 3, 5]}, False),
    ("target as a string", {"nums": [2, 3, 5], "target": "25"}, False),
    ("a float among the numbers", {"nums": [2.0, 3, 5], "target": 25}, False),
    ("two numbers", {"nums": [20, 5], "target": 25}, False),
    ("five numbers", {"nums": [1, 2, 3, 4, 5], "target": 15}, False),
    ("a zero (5 * 5 + 0 would solve it)", {"nums": [0, 5, 5], "target": 25}, False),
    (f"a number above MAX_NUMBER={MAX_NUMBER}", {"nums": [MAX_NUMBER + 1, 2, 1], "target": 50}, False),
    (f"a target above MAX_TARGET={MAX_TARGET}", {"nums": [50, 3, 1], "target": 150}, False),
    ("no solution", {"nums": [1, 2, 4], "target": 97}, False),
]


def check_01_usable_countdown_row(fn) -> bool:
    """Run ``fn(row)`` on every case; print one line per failing case and a line when all pass."""
    return run_cases(
        fn,
        [(name, (row,), expected) for name, row, expected in USABLE_COUNTDOWN_CASES],
        "it accepts exactly the usable Countdown rows.",
    )
