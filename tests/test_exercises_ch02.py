"""The checker of notebook 02's exercise: the solution passes, plausible wrong attempts fail and say which case."""

from __future__ import annotations

from helpers.chat import IGNORE_INDEX
from helpers.exercises.ch02 import check_02_count_trained_tokens


def count_trained_tokens(labels):
    # the solution notebook's function
    return sum(1 for label in labels if label != IGNORE_INDEX)


def test_the_solution_passes(capsys):
    assert check_02_count_trained_tokens(count_trained_tokens)
    out = capsys.readouterr().out
    assert "All" in out and "FAIL" not in out


def test_counting_positive_labels_misses_token_id_zero(capsys):
    assert not check_02_count_trained_tokens(lambda labels: sum(1 for label in labels if label > 0))
    out = capsys.readouterr().out
    assert "FAIL token id 0 is a real token" in out and "should be 3, got 2" in out
    assert out.count("FAIL") == 1


def test_counting_every_position_fails_and_names_the_masked_row(capsys):
    assert not check_02_count_trained_tokens(len)
    out = capsys.readouterr().out
    assert "FAIL everything masked: len([-100, -100, -100, -100]) should be 0, got 4" in out


def test_a_tensor_only_answer_raises_on_lists_and_is_reported(capsys):
    assert not check_02_count_trained_tokens(lambda labels: int((labels != IGNORE_INDEX).sum()))
    out = capsys.readouterr().out
    assert "FAIL prompt, then the answer" in out and "got raised AttributeError" in out
