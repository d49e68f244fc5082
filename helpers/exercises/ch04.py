"""Checks exercise 1 of notebook 04: ``length_budget_reward(completions, completion_ids=None, max_len=64, **kwargs)``,
a reward in TRL's calling convention: 1.0 for a completion of at most ``max_len`` tokens (the length of its
``completion_ids`` when TRL passes them, else its number of words), 0.0 for a longer one."""

from __future__ import annotations

from helpers.exercises import run_cases


def _conversational(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# (what the case tests, keyword arguments as TRL would pass them, expected rewards)
LENGTH_BUDGET_CASES = [
    ("short plain text", {"completions": ["one two three"], "max_len": 5}, [1.0]),
    ("long plain text", {"completions": ["one two three four five six"], "max_len": 5}, [0.0]),
    ("exactly max_len words", {"completions": ["a b c d e"], "max_len": 5}, [1.0]),
    ("a conversational completion", {"completions": [_conversational("a b c")], "max_len": 2}, [0.0]),
    (
        "completion_ids win over words (too long)",
        {"completions": ["short"], "completion_ids": [[0] * 10], "max_len": 5},
        [0.0],
    ),
    (
        "completion_ids win over words (within)",
        {"completions": ["one two three four five six seven"], "completion_ids": [[0] * 3], "max_len": 5},
        [1.0],
    ),
    (
        "a TRL batch with columns it does not use",
        {
            "prompts": [[{"role": "user", "content": "2 + 2?"}]] * 3,
            "completions": [_conversational("4"), _conversational("it is 4"), _conversational("four")],
            "completion_ids": [[0] * 2, [0] * 8, [0] * 5],
            "trainer_state": None,
            "answer": ["4"] * 3,
            "max_len": 5,
        },
        [1.0, 0.0, 1.0],
    ),
    ("an empty completion", {"completions": [""], "max_len": 5}, [1.0]),
]


def check_04_length_budget_reward(fn) -> bool:
    """Run ``fn(**kwargs)`` as TRL would on every case; print one line per failing case and a line when all pass."""
    return run_cases(
        fn,
        LENGTH_BUDGET_CASES,
        "it scores length the way TRL calls it.",
        agree=lambda actual, expected: [float(x) for x in actual] == expected,
    )
