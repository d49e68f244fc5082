"""The checker of notebook 9's exercise: the solution passes, a plausible wrong attempt fails and is named."""

from __future__ import annotations

from collections import Counter

from helpers.exercises.ch09 import check_09_majority_vote
from helpers.rewards import extract_answer, normalize_answer


def majority_vote(completions):
    """The solution: the most common normalized answer, ties to the first seen, None without any answer."""
    answers = [normalize_answer(answer) for answer in map(extract_answer, completions) if answer is not None]
    counts = Counter(answer for answer in answers if answer)
    return max(counts, key=counts.get) if counts else None  # max keeps the first of equal counts: first seen


def raw_most_common(completions):
    """A plausible mistake: votes on the raw extracted strings, missing answers included."""
    return Counter(extract_answer(text) for text in completions).most_common(1)[0][0]


def test_solution_passes(capsys):
    assert check_09_majority_vote(majority_vote)
    assert "All 6 cases pass" in capsys.readouterr().out


def test_raw_strings_fail_and_name_the_cases(capsys):
    assert not check_09_majority_vote(raw_most_common)
    out = capsys.readouterr().out
    assert "one number written three ways" in out
    assert "completions without an answer do not vote" in out
    assert "a clear majority" not in out
