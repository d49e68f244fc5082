"""Length-aware correctness (Demystifying Long CoT): a cosine over the completion length.

Short correct answers earn the most, long wrong ones lose the least: ``cosine_length_reward`` is correctness (as
``math_accuracy_reward``) scaled by ``cosine_length_scale``. Bind its knobs for TRL with
``functools.partial(cosine_length_reward, max_len=256)`` (TRL names a partial after the function it wraps).
"""

from __future__ import annotations

import math
from typing import Any

from .accuracy import gold_answers, gold_of, math_score
from .calling import as_list, batch_columns, is_single_completion, safe_score


def cosine_length_scale(
    length: float,
    correct: bool,
    max_len: int = 512,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
) -> float:
    """The cosine schedule of "Demystifying Long Chain-of-Thought Reasoning" (Appendix C.1).

    Correct: ``max_value_correct`` at length 0 down to ``min_value_correct`` at ``max_len`` (short is better).
    Wrong: ``min_value_wrong`` at length 0 up to ``max_value_wrong`` at ``max_len`` (a long wrong attempt
    loses less than a short guess). Lengths beyond ``max_len`` count as ``max_len``.
    """
    if max_len <= 0:
        raise ValueError("max_len must be positive")
    progress = min(max(float(length), 0.0), float(max_len)) / float(max_len)
    cosine = math.cos(progress * math.pi)
    if correct:
        lo, hi = min_value_correct, max_value_correct
    else:
        lo, hi = max_value_wrong, min_value_wrong
    return lo + 0.5 * (hi - lo) * (1.0 + cosine)


def cosine_length_reward(
    completions: Any,
    answer: Any = None,
    solution: Any = None,
    completion_ids: Any = None,
    max_len: int = 512,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    **kwargs: Any,
) -> list[float]:
    """Correctness (as ``math_accuracy_reward``) scaled by length with ``cosine_length_scale``.

    Length is ``len(completion_ids[i])`` (tokens) when TRL passes token ids, else the number of
    whitespace-separated words. Range ``[min_value_wrong, max_value_correct]``. Bind ``max_len`` to the
    run's ``max_completion_length`` with ``functools.partial(cosine_length_reward, max_len=...)``.
    """
    from_solution = answer is None and solution is not None
    gold = gold_answers(answer, solution, "cosine_length_reward")
    texts, cols = batch_columns(completions, {"gold": gold})
    ids = as_list(completion_ids)
    use_ids = isinstance(ids, (list, tuple)) and len(ids) == len(texts) and not is_single_completion(completions)
    one_ids = isinstance(ids, (list, tuple)) and ids and not isinstance(as_list(ids[0]), (list, tuple))
    if is_single_completion(completions) and one_ids:
        ids, use_ids = [ids], True  # one completion's token ids
    rewards = []
    for i, (text, g) in enumerate(zip(texts, cols["gold"], strict=True)):
        try:
            length = len(as_list(ids[i])) if use_ids else len(text.split())
        except Exception:
            length = len(text.split())
        correct = safe_score(math_score, text, gold_of(g, from_solution)) == 1.0
        rewards.append(
            cosine_length_scale(
                length,
                correct,
                max_len=max_len,
                min_value_wrong=min_value_wrong,
                max_value_wrong=max_value_wrong,
                min_value_correct=min_value_correct,
                max_value_correct=max_value_correct,
            )
        )
    return rewards
