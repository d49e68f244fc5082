"""The checker of notebook 04's exercise: the solution passes, plausible wrong attempts fail and say which case."""

from __future__ import annotations

import functools

from helpers.exercises.ch04 import check_04_length_budget_reward
from helpers.rewards import completion_text


def length_budget_reward(completions, completion_ids=None, max_len=64, **kwargs):
    # the solution notebook's function
    texts = [completion_text(c) for c in completions]
    lengths = [len(ids) for ids in completion_ids] if completion_ids is not None else [len(t.split()) for t in texts]
    return [1.0 if n <= max_len else 0.0 for n in lengths]


def test_the_solution_passes(capsys):
    assert check_04_length_budget_reward(length_budget_reward)
    out = capsys.readouterr().out
    assert "All" in out and "FAIL" not in out


def test_a_partial_of_the_solution_passes_too(capsys):
    # how a run binds its knobs for TRL; a partial has no __name__
    assert check_04_length_budget_reward(functools.partial(length_budget_reward, max_len=1000))


def test_words_only_fails_where_trl_passes_token_ids(capsys):
    def words_only(completions, max_len=64, **kwargs):
        return [1.0 if len(completion_text(c).split()) <= max_len else 0.0 for c in completions]

    assert not check_04_length_budget_reward(words_only)
    out = capsys.readouterr().out
    assert "FAIL completion_ids win over words (too long)" in out and "completion_ids=[[0, 0, 0" in out
    assert "should be [0.0], got [1.0]" in out


def test_a_strict_inequality_fails_at_the_limit(capsys):
    assert not check_04_length_budget_reward(
        lambda completions, completion_ids=None, max_len=64, **kwargs: length_budget_reward(
            completions, completion_ids, max_len - 1
        )
    )
    out = capsys.readouterr().out
    assert "FAIL exactly max_len words" in out and "'a b c d e'" in out


def test_a_reward_without_kwargs_raises_on_a_trl_batch_and_is_reported(capsys):
    def no_kwargs(completions, completion_ids=None, max_len=64):
        return length_budget_reward(completions, completion_ids, max_len)

    assert not check_04_length_budget_reward(no_kwargs)
    out = capsys.readouterr().out
    assert "FAIL a TRL batch with columns it does not use" in out and "raised TypeError" in out
