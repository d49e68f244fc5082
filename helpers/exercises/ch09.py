"""Checks notebook 9's write-a-function exercise: majority vote over k sampled answers (self-consistency).

``check_09_majority_vote(fn)`` runs ``fn(completions)``, which should extract each completion's final answer
(``helpers.rewards.extract_answer``), normalize it (``normalize_answer``), skip completions without one, and
return the most common answer (the one seen first on a tie), or ``None`` when no completion has an answer.
"""

from __future__ import annotations

from helpers.exercises import run_cases
from helpers.rewards import normalize_answer

# (what the case tests, completions, the expected answer after normalize_answer, or None)
MAJORITY_VOTE_CASES = [
    ("a clear majority", ["<answer>42</answer>", "<answer>41</answer>", "<answer>42</answer>"], "42"),
    (
        "one number written three ways",
        ["<answer>999</answer>", "<answer>1,234</answer>", "<answer>1234.0</answer>"],
        "1234",
    ),
    ("completions without an answer do not vote", ["", "<think>7*8=", "<answer>56</answer>"], "56"),
    ("no completion has an answer", ["", "   ", "<think>3+4="], None),
    (
        "a tie goes to the answer seen first",
        ["<answer>5</answer>", "<answer>3</answer>", "<answer>3</answer>", "<answer>5</answer>"],
        "5",
    ),
    (
        "answers outside <answer> tags count too",
        ["The answer is 12.", "<answer>12</answer>", "<answer>13</answer>"],
        "12",
    ),
]


def _same_answer(actual, expected) -> bool:
    return actual is None if expected is None else actual is not None and normalize_answer(str(actual)) == expected


def check_09_majority_vote(fn) -> bool:
    """Run ``fn(completions)`` on every case; print one line per failing case, return whether all pass."""
    return run_cases(
        fn,
        [(description, (completions,), expected) for description, completions, expected in MAJORITY_VOTE_CASES],
        "your majority vote is self-consistency's answer.",
        agree=_same_answer,
    )
