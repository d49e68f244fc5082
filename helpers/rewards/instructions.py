"""Instruction constraints: the share of a row's checkable constraints a response satisfies. [0.0, 1.0]

The ``constraints`` column is a dict (or a JSON string of one). Every key is optional; each key present is one
constraint. An empty response satisfies none. The checked text is the response after a ``</think>`` (or the
``<answer>`` block, if there is one).

=====================  ============  ==============================================================
key                    value         satisfied when
=====================  ============  ==============================================================
``max_words``          int           at most this many words (whitespace-separated, with a letter or digit)
``min_words``          int           at least this many words
``num_bullets``        int           exactly this many bullet lines (lines starting ``-``, ``*`` or ``•``)
``num_paragraphs``     int           exactly this many paragraphs (blocks separated by a blank line)
``lowercase``          bool          True: no uppercase letter at all (False: no check)
``uppercase``          bool          True: no lowercase letter at all (False: no check)
``json_keys``          list[str]     the response (optionally in a ```json fence) is a JSON object with
                                     at least these keys
``must_include``       list[str]     every phrase appears (case-insensitive)
``must_not_include``   list[str]     no phrase appears (case-insensitive)
``end_with``           str           the stripped response ends with this phrase (case-insensitive)
=====================  ============  ==============================================================

Example: ``{"max_words": 50, "num_bullets": 3, "lowercase": true}``. Unknown keys are ignored with a
warning (so a typo shows up in the logs, not as a crash mid-training).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from typing import Any

from .calling import batch_columns, completion_text, require_column, safe_score
from .extraction import last_tag_block
from .limits import MAX_JSON_CHARS


def instruction_constraints_reward(completions: Any, constraints: Any = None, **kwargs: Any) -> list[float]:
    """``check_instruction_constraints`` for each completion, with the ``constraints`` column (dict or JSON)."""
    require_column("constraints", constraints, "instruction_constraints_reward")
    texts, cols = batch_columns(completions, {"constraints": constraints})
    return [safe_score(check_instruction_constraints, t, c) for t, c in zip(texts, cols["constraints"], strict=True)]


def check_instruction_constraints(text: Any, constraints: Any) -> float:
    """Share of the constraints (schema in the module docstring) that ``text`` satisfies, in [0, 1].

    Constraints that do not apply (``lowercase: false``) are left out of the count; with none left the
    score is 1.0. An empty response scores 0.0, and so does ``constraints`` that is not a dict (or the JSON
    of one); a malformed constraint value (``max_words: "ten"``) counts as unsatisfied.

    >>> check_instruction_constraints("- a\\n- b", {"num_bullets": 2, "max_words": 3})
    1.0
    """
    spec = _coerce_constraints(constraints)
    if spec is None:
        return 0.0
    response = _response_part(completion_text(text))
    if not response.strip():
        return 0.0
    satisfied = total = 0
    for key, value in spec.items():
        check = _CONSTRAINT_CHECKS.get(key)
        if check is None:
            if key not in _WARNED_KEYS:
                _WARNED_KEYS.add(key)
                known = ", ".join(CONSTRAINT_KEYS)
                warnings.warn(f"unknown instruction constraint {key!r} ignored; known: {known}", stacklevel=2)
            continue
        try:
            ok = check(response, value)
        except Exception:  # malformed value in the data (e.g. max_words: "ten")
            ok = False
        if ok is None:
            continue
        total += 1
        satisfied += bool(ok)
    return satisfied / total if total else 1.0


# a whitespace-free token holding one character that str.isalnum() accepts ([^\W_]); one regex pass, since a
# Python loop over 500,000 tokens costs 0.3 to 0.5 CPU-seconds
_WORD_RE = re.compile(r"(?<!\S)\S*?[^\W_]\S*")  # the lookbehind: one try per token, not per character
_BULLET_RE = re.compile(r"(?m)^[ \t]*[-*•][ \t]+\S")
_FENCE_RE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)```", re.DOTALL)


def _response_part(text: str) -> str:
    block = last_tag_block(text)
    if block is not None:
        return block
    close = text.rfind("</think>")
    return text[close + len("</think>") :] if close >= 0 else text


def _as_phrases(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _json_object(text: str) -> dict | None:
    if len(text) > MAX_JSON_CHARS:
        return None
    candidates = [text.strip()]
    if "```" in text:
        candidates += [m.group(1).strip() for m in _FENCE_RE.finditer(text)][:5]
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _word_count(text: str) -> int:
    """Whitespace-separated tokens with a letter or digit in them (bullet dashes and lone symbols are not words)."""
    return len(_WORD_RE.findall(text))


def _has_json_keys(text: str, keys: list[str]) -> bool:
    obj = _json_object(text)
    return obj is not None and all(str(k) in obj for k in keys)


def _paragraphs(text: str) -> int:
    return sum(1 for block in re.split(r"\n[ \t]*\n", text.strip()) if block.strip())


_CONSTRAINT_CHECKS: dict[str, Callable[[str, Any], bool | None]] = {
    "max_words": lambda t, v: _word_count(t) <= int(v),
    "min_words": lambda t, v: _word_count(t) >= int(v),
    "num_bullets": lambda t, v: len(_BULLET_RE.findall(t)) == int(v),
    "num_paragraphs": lambda t, v: _paragraphs(t) == int(v),
    "lowercase": lambda t, v: (t == t.lower()) if v else None,
    "uppercase": lambda t, v: (t == t.upper()) if v else None,
    "json_keys": lambda t, v: _has_json_keys(t, _as_phrases(v)),
    "must_include": lambda t, v: all(p.lower() in t.lower() for p in _as_phrases(v)),
    "must_not_include": lambda t, v: not any(p.lower() in t.lower() for p in _as_phrases(v) if p),
    "end_with": lambda t, v: t.strip().lower().endswith(str(v).strip().lower()),
}
CONSTRAINT_KEYS = tuple(_CONSTRAINT_CHECKS)
_WARNED_KEYS: set[str] = set()


def _coerce_constraints(constraints: Any) -> dict | None:
    if isinstance(constraints, str):
        try:
            constraints = json.loads(constraints) if constraints.strip() else {}
        except (ValueError, RecursionError):
            return None
    return constraints if isinstance(constraints, dict) else None


