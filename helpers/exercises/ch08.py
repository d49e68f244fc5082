"""Checks notebook 8's write-a-function exercise: a verifier-based best-of-k selector (8.1, 8.3).

``check_08_best_of_k(fn)`` compares ``fn(completions, row)`` with what ``helpers.distillation.select_verified``
keeps for that one prompt: the shortest completion that is correct and well formatted (the earliest on ties),
or ``None`` when no completion is.
"""

from __future__ import annotations

from helpers.distillation import select_verified
from helpers.evaluation import score_generations
from helpers.exercises import run_cases

_SIX_SEVEN = {"prompt": "What is 6 * 7?", "answer": "42"}
_THREE_FOUR = {"prompt": "What is 3 * 4?", "answer": "12"}
_COUNTDOWN = {"nums": [3, 5, 7], "target": 20}

# (what the case tests, completions, row)
BEST_OF_K_CASES = [
    (
        "two correct answers, the second shorter",
        [
            "<think>6*7=42. Check: 42/7=6.</think><answer>42</answer>",
            "<think>6*7=42.</think><answer>42</answer>",
            "<think>6+7=13.</think><answer>13</answer>",
        ],
        _SIX_SEVEN,
    ),
    (
        "the shortest correct answer has no <think>/<answer> format",
        ["The answer is 12.", "<think>3*4=12.</think><answer>12</answer>", "<think>3*4=7.</think><answer>7</answer>"],
        _THREE_FOUR,
    ),
    (
        "nothing correct",
        ["<think>6+7=13.</think><answer>13</answer>", "I am not sure.", "<think>6*6=36.</think><answer>36</answer>"],
        _SIX_SEVEN,
    ),
    (
        "two correct answers of the same length",
        ["<think>7*6=42</think><answer>42</answer>", "<think>6*7=42</think><answer>42</answer>"],
        _SIX_SEVEN,
    ),
    (
        "a Countdown row",
        [
            "<think>7+5+3=15</think><answer>7+5+3</answer>",
            "<think>(7-3)*5=20, check 4*5=20</think><answer>(7-3)*5</answer>",
            "<answer>(7-3)*5</answer>",
            "<think>(7-3)*5=20</think><answer>(7-3)*5</answer>",
        ],
        _COUNTDOWN,
    ),
]


def _kept(completions: list[str], row: dict) -> str | None:
    kept = select_verified(score_generations(completions, [row]))
    return kept["completion"].iloc[0] if len(kept) else None


def check_08_best_of_k(fn) -> bool:
    """Run ``fn(completions, row)`` on every case; print one line per failing case, return whether all pass."""
    cases = [
        (description, (completions, row), _kept(completions, row)) for description, completions, row in BEST_OF_K_CASES
    ]
    return run_cases(fn, cases, "your selector keeps what select_verified keeps.")
