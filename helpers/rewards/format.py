"""Format rewards: does the completion have the shape the course teaches?

- ``format_reward``: ``<think>..</think>`` then ``<answer>..</answer>`` and nothing else. {0.0, 1.0}
- ``tag_count_reward``: 0.25 per tag that appears exactly once (partial credit while learning the shape).
- ``reasoning_steps_reward``: 0.5 * min(1, steps / 3) + 0.5 * (an equation is shown). [0.0, 1.0]
"""

from __future__ import annotations

import re
from typing import Any

from .calling import batch_columns, completion_text, safe_score, with_prefill
from .limits import MAX_STEP_LINES


def format_reward(completions: Any, prompts: Any = None, **kwargs: Any) -> list[float]:
    """1.0 if ``has_valid_format`` (a ``<think>`` pre-filled at the end of the prompt counts), else 0.0."""
    texts, cols = batch_columns(completions, {"prompt": prompts})
    return [
        safe_score(lambda t, p: 1.0 if has_valid_format(with_prefill(t, p)) else 0.0, t, p)
        for t, p in zip(texts, cols["prompt"], strict=True)
    ]


def has_valid_format(text: Any) -> bool:
    """``<think>reasoning</think>`` then ``<answer>answer</answer>``: each tag exactly once, in that order,
    both parts non-empty, and only whitespace around and between the blocks."""
    s = completion_text(text).strip()
    if not s.startswith("<think>") or not s.endswith("</answer>"):
        return False
    if any(s.count(tag) != 1 for tag in _TAGS):
        return False
    think_end = s.find("</think>")
    answer_start = s.find("<answer>")
    if not (0 < think_end < answer_start):
        return False
    thought = s[len("<think>") : think_end]
    between = s[think_end + len("</think>") : answer_start]
    answer = s[answer_start + len("<answer>") : -len("</answer>")]
    return bool(thought.strip()) and not between.strip() and bool(answer.strip())


_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _tag_count(text: str) -> float:
    return sum(0.25 for tag in _TAGS if text.count(tag) == 1)


def tag_count_reward(completions: Any, prompts: Any = None, **kwargs: Any) -> list[float]:
    """0.25 for each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` that appears exactly once.

    Partial credit a model can climb one tag at a time; order is ``format_reward``'s job.
    """
    texts, cols = batch_columns(completions, {"prompt": prompts})
    pairs = zip(texts, cols["prompt"], strict=True)
    return [safe_score(lambda t, p: _tag_count(with_prefill(t, p)), t, p) for t, p in pairs]


_STEP_RE = re.compile(
    r"(?im)^[ \t]*(?:step[ \t]*\d+[ \t]*[:.)]|\d{1,3}[.)][ \t]|[-*•][ \t])"
    r"|\b(?:first|second|third|next|then|finally)[ \t]*,"
)
_OPERATOR_RE = re.compile(r"[\w)\]}][ \t]*(?:[-+*/×÷^]|\\times|\\cdot|\\div)[ \t]*[\w(\[{\\]|\\frac")


def _reasoning_part(text: str) -> str:
    start, end = text.find("<think>"), text.find("</think>")
    if 0 <= start < end:
        return text[start + len("<think>") : end]
    return text


def count_steps(text: str) -> int:
    """Step markers: 'Step 1:', numbered or bulleted lines, and 'First,' / 'Next,' / 'Finally,' ..."""
    return sum(1 for _ in _STEP_RE.finditer(text))


def has_equation(text: str) -> bool:
    """A line with an ``=`` and an arithmetic operation before it, such as ``3 * 4 = 12``."""
    for line in text.splitlines()[:MAX_STEP_LINES]:
        eq = line.find("=")
        if eq > 0 and _OPERATOR_RE.search(line, 0, eq):
            return True
    return False


def _reasoning_steps(text: str) -> float:
    part = _reasoning_part(text)
    return 0.5 * min(1.0, count_steps(part) / 3.0) + 0.5 * (1.0 if has_equation(part) else 0.0)


def reasoning_steps_reward(completions: Any, **kwargs: Any) -> list[float]:
    """Half for step structure (three step markers or more earn it all), half for showing an equation.

    Looks inside ``<think>...</think>`` when there is one, else at the whole completion.
    """
    texts, _ = batch_columns(completions, {})
    return [safe_score(_reasoning_steps, t) for t in texts]
