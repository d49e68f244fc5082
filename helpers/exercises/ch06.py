"""Checks notebook 6's write-a-function exercise: the leave-one-out baseline of RLOO (6.8).

``check_06_loo_advantages(fn)`` compares ``fn(rewards, group_size)`` with ``helpers.rl.rloo_advantages``.
"""

from __future__ import annotations

import torch

from helpers.exercises import run_cases
from helpers.rl import rloo_advantages

# (rewards, group_size): 6.8's group, a pair, a tied group, two prompts side by side, a group of three
LOO_CASES = [
    ([1.2, 0.2, 0.2, 0.0], 4),
    ([1.0, 0.0], 2),
    ([0.2, 0.2, 0.2, 0.2], 4),
    ([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0], 4),
    ([3.0, 1.0, 2.0], 3),
]


def _close(actual, expected) -> bool:
    actual = torch.as_tensor(actual, dtype=torch.float64).flatten().tolist()
    return len(actual) == len(expected) and all(abs(a - e) < 1e-3 for a, e in zip(actual, expected))


def check_06_loo_advantages(fn) -> bool:
    """Run ``fn(rewards, group_size)`` on every case; print one line per failing case, return whether all pass."""
    cases = [
        (
            f"rewards={rewards}, group_size={group_size}",
            (rewards, group_size),
            [round(a, 4) for a in rloo_advantages(rewards, group_size).tolist()],
        )
        for rewards, group_size in LOO_CASES
    ]
    return run_cases(fn, cases, "your advantages match helpers.rl.rloo_advantages.", agree=_close)
