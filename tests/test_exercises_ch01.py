"""The checker of notebook 01's exercise: the solution passes, plausible wrong attempts fail and say which case."""

from __future__ import annotations

from helpers.data import MAX_NUMBER, MAX_TARGET, solve_countdown, validate_rows
from helpers.exercises.ch01 import check_01_usable_countdown_row


def usable_countdown_row(row):
    # the solution notebook's function
    try:
        validate_rows([row], "countdown")
    except ValueError:
        return False
    nums, target = row["nums"], row["target"]
    if len(nums) not in (3, 4):
        return False
    if not all(1 <= n <= MAX_NUMBER for n in nums) or not 1 <= target <= MAX_TARGET:
        return False
    return solve_countdown(nums, target) is not None


def test_the_solution_passes(capsys):
    assert check_01_usable_countdown_row(usable_countdown_row)
    out = capsys.readouterr().out
    assert "All" in out and "FAIL" not in out


def test_a_validator_without_the_ranges_fails_on_the_zero(capsys):
    def no_ranges(row):
        try:
            validate_rows([row], "countdown")
        except ValueError:
            return False
        return len(row["nums"]) in (3, 4) and solve_countdown(row["nums"], row["target"]) is not None

    assert not check_01_usable_countdown_row(no_ranges)
    out = capsys.readouterr().out
    assert "FAIL a zero" in out and "[0, 5, 5]" in out and "should be False, got True" in out
    assert "FAIL no solution" not in out


def test_a_validator_without_the_solver_fails_on_the_unsolvable_row(capsys):
    def schema_and_ranges_only(row):
        try:
            validate_rows([row], "countdown")
        except ValueError:
            return False
        return (
            len(row["nums"]) in (3, 4)
            and all(1 <= n <= MAX_NUMBER for n in row["nums"])
            and 1 <= row["target"] <= MAX_TARGET
        )

    assert not check_01_usable_countdown_row(schema_and_ranges_only)
    out = capsys.readouterr().out
    assert "FAIL no solution" in out and "[1, 2, 4]" in out


def test_an_exception_in_the_learners_code_is_a_failing_case(capsys):
    def reads_fields_first(row):
        return isinstance(row["target"], int) and solve_countdown(row["nums"], row["target"]) is not None

    assert not check_01_usable_countdown_row(reads_fields_first)
    out = capsys.readouterr().out
    assert "FAIL no target" in out and "raised KeyError" in out
