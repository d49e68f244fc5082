"""The checker of notebook 8's exercise: the solution passes, plausible wrong attempts fail and are named."""

from __future__ import annotations

from helpers.distillation import select_verified
from helpers.evaluation import score_completion, score_generations
from helpers.exercises.ch08 import BEST_OF_K_CASES, check_08_best_of_k


def best_of_k(completions, row):
    """The solution: the shortest completion that is correct and well formatted, the earliest on ties."""
    verified = [
        i
        for i, text in enumerate(completions)
        if (score := score_completion(text, row))["correct"] and score["format_ok"]
    ]
    if not verified:
        return None
    return completions[min(verified, key=lambda i: (len(completions[i]), i))]


def longest_verified(completions, row):
    """A plausible mistake: the longest verified completion (the most reasoning) instead of the shortest."""
    verified = [
        text for text in completions if (score := score_completion(text, row))["correct"] and score["format_ok"]
    ]
    return max(verified, key=len) if verified else None


def shortest_correct(completions, row):
    """A plausible mistake: correctness only, without the format check."""
    correct = [text for text in completions if score_completion(text, row)["correct"]]
    return min(correct, key=len) if correct else None


def test_solution_passes(capsys):
    assert check_08_best_of_k(best_of_k)
    assert "All 5 cases pass" in capsys.readouterr().out


def test_longest_fails_and_names_the_case(capsys):
    assert not check_08_best_of_k(longest_verified)
    assert "two correct answers, the second shorter" in capsys.readouterr().out


def test_ignoring_the_format_fails_and_names_the_case(capsys):
    assert not check_08_best_of_k(shortest_correct)
    out = capsys.readouterr().out
    assert "the shortest correct answer has no <think>/<answer> format" in out
    assert "nothing correct" not in out


def test_the_cases_test_what_they_say():
    """Which completion each case expects (index into its completions, None for none), so the case data stay honest."""
    kept_index = []
    for _, completions, row in BEST_OF_K_CASES:
        kept = select_verified(score_generations(completions, [row]))
        kept_index.append(completions.index(kept["completion"].iloc[0]) if len(kept) else None)
    assert kept_index == [1, 1, None, 0, 3]
