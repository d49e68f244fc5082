"""Checks exercise 1 of notebook 02: ``count_trained_tokens(labels) -> int``, the positions a labels row trains
(every label that is not -100)."""

from __future__ import annotations

import torch

from helpers.chat import IGNORE_INDEX
from helpers.exercises import run_cases

# (what the case tests, labels, expected count)
TRAINED_TOKEN_CASES = [
    ("no labels", [], 0),
    ("everything masked", [IGNORE_INDEX] * 4, 0),
    ("prompt, then the answer", [IGNORE_INDEX] * 3 + [15, 16, 17], 3),
    ("token id 0 is a real token", [IGNORE_INDEX, 0, 1, 2], 3),
    ("two assistant turns", [IGNORE_INDEX, 12, IGNORE_INDEX, IGNORE_INDEX, 13, 14, IGNORE_INDEX], 3),
    ("a right-padded row", [IGNORE_INDEX] * 3 + [9, 10] + [IGNORE_INDEX] * 4, 2),
    ("a row of a batch tensor", torch.tensor([IGNORE_INDEX, IGNORE_INDEX, 3, 4]), 2),
]


def check_02_count_trained_tokens(fn) -> bool:
    """Run ``fn(labels)`` on every case; print one line per failing case and a line when all pass."""
    return run_cases(
        fn,
        [(name, (labels,), expected) for name, labels, expected in TRAINED_TOKEN_CASES],
        "it counts exactly the labels that are not -100.",
    )
