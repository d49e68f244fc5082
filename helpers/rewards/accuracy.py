"""Math accuracy: extract the final answer, compare it with the gold one. The reward RL trains on.

    math_accuracy_reward(["<think>6*7=42</think>\\n<answer>42</answer>"], answer=["42"])  # -> [1.0]
    math_accuracy_reward(["<think>x</think>\\n<answer>6*7</answer>"], answer=["42"])      # -> [0.0]

The second is the *echo hack*: an answer that still holds the question's arithmetic. math-verify would
evaluate ``6*7`` and call it right, and RL would learn to echo; so when the gold is a number, the prediction
must be one number too (``answers.numeric_answer``). How the answer is found is ``extraction``; how two
answers are compared is ``answers`` and ``math_verify_guard``.
"""

from __future__ import annotations

from typing import Any

from .answers import answers_match, numbers_close, numeric_answer
from .calling import batch_columns, require_column, safe_score
from .extraction import extract_answer
from .math_verify_guard import math_verify_match


def math_accuracy_reward(completions: Any, answer: Any = None, solution: Any = None, **kwargs: Any) -> list[float]:
    """1.0 when the completion's final answer (``extract_answer``) is the gold ``answer`` (``is_math_correct``),
    else 0.0. Without an ``answer`` column the gold answer is extracted from ``solution``."""
    from_solution = answer is None and solution is not None
    texts, cols = batch_columns(completions, {"gold": gold_answers(answer, solution, "math_accuracy_reward")})
    return [safe_score(math_score, text, gold_of(gold, from_solution))
            for text, gold in zip(texts, cols["gold"], strict=True)]


def math_score(text: str, gold: str | None) -> float:
    """Extract, then compare: 1.0 or 0.0."""
    if gold is None or not gold.strip():
        return 0.0
    return float(is_math_correct(extract_answer(text), gold))


def is_math_correct(pred: Any, gold: Any, rel_tol: float = 1e-6) -> bool:
    """Whether ``pred`` answers ``gold``.

    A numeric gold (``numeric_answer(gold)`` is a number) needs a numeric prediction of the same value:
    an unevaluated expression such as ``12*10+20`` for 140 scores 0. Integers must match exactly, other
    numbers within ``rel_tol``. Any other gold (an interval, an expression in x) goes to math-verify, then
    to the project's own comparison (units, separators, order-free lists).
    """
    if pred is None or gold is None or not str(gold).strip():
        return False
    gold_value = numeric_answer(gold)
    if gold_value is not None:
        pred_value = numeric_answer(pred)
        return pred_value is not None and numbers_close(pred_value, gold_value, rel_tol)
    return bool(math_verify_match(pred, gold)) or answers_match(pred, gold, rel_tol=rel_tol)


def gold_answers(answer: Any, solution: Any, func: str) -> Any:
    """The gold column a math reward reads: ``answer``, else ``solution``; neither is a wiring mistake."""
    if answer is None and solution is None:
        require_column("answer", None, func)
    return answer if answer is not None else solution


def gold_of(answer_value: Any, from_solution: bool) -> str | None:
    """One row's gold answer as text (extracted when it is a whole ``solution``)."""
    if answer_value is None:
        return None
    text = str(answer_value)
    return extract_answer(text) if from_solution else text
