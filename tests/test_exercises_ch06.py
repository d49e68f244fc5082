"""The checker of notebook 6's exercise: the solution passes, a plausible wrong attempt fails and is named."""

from __future__ import annotations

from helpers.exercises.ch06 import check_06_loo_advantages


def loo_advantages(rewards, group_size):
    """The solution: each reward minus the mean of the other rewards of its prompt."""
    advantages = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        advantages += [r - (sum(group) - r) / (group_size - 1) for r in group]
    return advantages


def centered_on_group_mean(rewards, group_size):
    """A plausible mistake: the baseline includes the sample itself (GRPO's mean, no std)."""
    advantages = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        advantages += [r - sum(group) / group_size for r in group]
    return advantages


def test_solution_passes(capsys):
    assert check_06_loo_advantages(loo_advantages)
    assert "All 5 cases pass" in capsys.readouterr().out


def test_wrong_baseline_fails_and_names_the_case(capsys):
    assert not check_06_loo_advantages(centered_on_group_mean)
    out = capsys.readouterr().out
    assert "rewards=[1.2, 0.2, 0.2, 0.0], group_size=4" in out
    assert "rewards=[0.2, 0.2, 0.2, 0.2]" not in out  # a tied group has advantage 0 either way


def test_an_exception_is_a_failing_case(capsys):
    def crashes(rewards, group_size):
        raise ZeroDivisionError("division by zero")

    assert not check_06_loo_advantages(crashes)
    assert "ZeroDivisionError" in capsys.readouterr().out
