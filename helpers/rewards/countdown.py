"""The Countdown reward (TinyZero): 0.0 no parsable ``<answer>`` equation, 0.1 well-formed but wrong, 1.0 correct.

An equation is correct when it uses each given number exactly once and evaluates to the target. Nothing here
evaluates model output as code: ``evaluate_equation`` is a small recursive-descent parser over integers,
``+ - * /`` and parentheses with bounded length, depth and magnitude, in exact rational arithmetic.
"""

from __future__ import annotations

import json
import logging
import re
from fractions import Fraction
from typing import Any

from .answers import to_fraction
from .calling import as_list, batch_columns, completion_text, require_column
from .extraction import last_tag_block
from .limits import MAX_EQUATION_CHARS, MAX_EQUATION_DEPTH, MAX_EQUATION_TOKENS, MAX_LITERAL_DIGITS, MAX_MAGNITUDE

logger = logging.getLogger(__name__)


def countdown_reward_func(completions: Any, target: Any = None, nums: Any = None, **kwargs: Any) -> list[float]:
    """``countdown_reward`` for each completion, with ``target`` and ``nums`` from the dataset columns."""
    require_column("target", target, "countdown_reward_func")
    require_column("nums", nums, "countdown_reward_func")
    texts, cols = batch_columns(completions, {"target": target, "nums": nums}, nested=("nums",))
    return [countdown_reward(t, g, n) for t, g, n in zip(texts, cols["target"], cols["nums"], strict=True)]


def countdown_reward(completion: Any, target: Any, nums: Any) -> float:
    """Countdown's rule-based reward (TinyZero): 1.0 for an ``<answer>`` equation that uses every number of
    ``nums`` exactly once and equals ``target``; 0.1 for a well-formed equation that is wrong, reuses or leaves
    out a number, divides by zero, or claims a result (``... = 24``) its left side does not have; 0.0 when
    there is no ``<answer>`` block or its content is not an equation of integers, ``+ - * /`` and parentheses.
    """
    try:
        text = completion_text(completion)
        found = _countdown_equation(text)
        if found is None:
            return 0.0
        eq, claimed = found
        try:
            value, used = _parse_equation(eq)
        except (_EquationSyntaxError, RecursionError):
            return 0.0
        goal, available = _coerce_target(target), _coerce_nums(nums)
        if value is None or goal is None or available is None:
            return 0.1
        if sorted(used) != sorted(available):
            return 0.1
        if claimed is not None and claimed != value:  # "... = 24" where the left side is not 24
            return 0.1
        return 1.0 if value == goal else 0.1
    except Exception:  # pragma: no cover - the parser is designed not to raise anything else
        logger.exception("countdown_reward failed")
        return 0.0


def evaluate_equation(expr: str) -> Fraction | None:
    """The exact value of an arithmetic expression over integers with ``+ - * /`` and parentheses.

    ``None`` for anything else (names, calls, ``**``, decimals, text), for division by zero, and past
    the bounds (256 characters, 128 tokens, depth 20, 9-digit literals, |value| <= 1e30). Never ``eval``.

    >>> evaluate_equation("(3 + 5) * 6 / 4")
    Fraction(12, 1)
    >>> evaluate_equation("__import__('os')") is None
    True
    """
    try:
        value, _ = _parse_equation(expr)
        return value
    except (_EquationSyntaxError, RecursionError, TypeError, ValueError):
        return None


def equation_numbers(expr: str) -> list[int]:
    """The integer literals of an equation, in order (``[]`` if ``expr`` is not a well-formed equation)."""
    try:
        return _parse_equation(expr)[1]
    except (_EquationSyntaxError, RecursionError, TypeError, ValueError):
        return []


class _EquationSyntaxError(ValueError):
    """Not an equation of integers, + - * / and parentheses (or past the size bounds)."""


class _EquationValueError(ValueError):
    """A well-formed equation without a value: division by zero or a value past the magnitude bound."""


_OPERATOR_ALIASES = (
    ("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("×", "*"), ("·", "*"), ("÷", "/"), ("−", "-"), ("–", "-")
)
_EQ_TOKEN_RE = re.compile(r"\s*(?:(\d+)|([-+*/()]))")


def _tokenize_equation(expr: str) -> list[str | int]:
    if not isinstance(expr, str):
        raise _EquationSyntaxError("not a string")
    if len(expr) > MAX_EQUATION_CHARS:
        raise _EquationSyntaxError("too long")
    for old, new in _OPERATOR_ALIASES:
        expr = expr.replace(old, new)
    tokens: list[str | int] = []
    pos, depth = 0, 0
    stripped_end = len(expr.rstrip())
    while pos < stripped_end:
        m = _EQ_TOKEN_RE.match(expr, pos)
        if m is None or m.end() == pos:
            raise _EquationSyntaxError(f"unexpected character at {pos}")
        if m.group(1) is not None:
            if len(m.group(1)) > MAX_LITERAL_DIGITS:
                raise _EquationSyntaxError("literal too long")
            tokens.append(int(m.group(1)))
        else:
            op = m.group(2)
            depth += op == "("
            depth -= op == ")"
            if depth > MAX_EQUATION_DEPTH:
                raise _EquationSyntaxError("nested too deeply")
            tokens.append(op)
        if len(tokens) > MAX_EQUATION_TOKENS:
            raise _EquationSyntaxError("too many tokens")
        pos = m.end()
    if not tokens:
        raise _EquationSyntaxError("empty")
    return tokens


class _EquationParser:
    """expr := term (('+'|'-') term)* ; term := factor (('*'|'/') factor)* ;
    factor := ('+'|'-') factor | INT | '(' expr ')'  -- evaluated exactly with Fraction."""

    def __init__(self, tokens: list[str | int]):
        self.tokens = tokens
        self.i = 0
        self.value_error: str | None = None  # remembered, so the syntax of the whole string is still checked

    def peek(self) -> str | int | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str | int | None:
        tok = self.peek()
        self.i += 1
        return tok

    def check(self, value: Fraction | None) -> Fraction | None:
        if value is not None and (abs(value.numerator) > MAX_MAGNITUDE or value.denominator > MAX_MAGNITUDE):
            self.value_error = self.value_error or "magnitude"
            return None
        return value

    def parse(self) -> Fraction | None:
        value = self.expr()
        if self.peek() is not None:
            raise _EquationSyntaxError(f"unexpected {self.peek()!r}")
        return value

    def expr(self) -> Fraction | None:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            if value is None or rhs is None:
                value = None
                continue
            value = self.check(value + rhs if op == "+" else value - rhs)
        return value

    def term(self) -> Fraction | None:
        value = self.factor()
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.factor()
            if value is None or rhs is None:
                value = None
                continue
            if op == "*":
                value = self.check(value * rhs)
            elif rhs == 0:
                self.value_error = self.value_error or "division by zero"
                value = None
            else:
                value = self.check(value / rhs)
        return value

    def factor(self) -> Fraction | None:
        sign = 1
        while self.peek() in ("+", "-"):  # unary signs, iteratively (no recursion to exhaust)
            sign = -sign if self.take() == "-" else sign
        tok = self.take()
        if isinstance(tok, int):
            return Fraction(sign * tok)
        if tok == "(":
            value = self.expr()
            if self.take() != ")":
                raise _EquationSyntaxError("unbalanced parenthesis")
            return None if value is None else sign * value
        raise _EquationSyntaxError(f"unexpected {tok!r}")


def _parse_equation(expr: str) -> tuple[Fraction | None, list[int]]:
    """(value, numbers) of a well-formed equation; value None on division by zero or overflow.

    Raises ``_EquationSyntaxError`` when ``expr`` is not an equation the grammar admits.
    """
    tokens = _tokenize_equation(expr)
    parser = _EquationParser(tokens)
    value = parser.parse()
    numbers = [t for t in tokens if isinstance(t, int)]
    return (None if parser.value_error else value), numbers


def _countdown_equation(text: str) -> tuple[str, int | None] | None:
    """The equation inside the last ``<answer>`` block and the result it claims after an ``=``, if any."""
    block = last_tag_block(text)
    if block is None:
        return None
    eq = block.strip().strip("$").strip()
    if eq.startswith("\\(") and eq.endswith("\\)"):
        eq = eq[2:-2].strip()
    claimed = None
    if "=" in eq:
        lhs, _, rhs = eq.partition("=")
        m = re.fullmatch(r"\s*(-?\d{1,12})\s*\.?\s*", rhs)
        if "=" in rhs or m is None:
            return None
        eq, claimed = lhs.strip(), int(m.group(1))
    return (eq, claimed) if eq else None


def _coerce_nums(nums: Any) -> list[int] | None:
    nums = as_list(nums)
    if isinstance(nums, str):
        try:
            nums = json.loads(nums)
        except (ValueError, RecursionError):
            return None
    if not isinstance(nums, (list, tuple)):
        return None
    try:
        out = [int(n) for n in nums]
    except (TypeError, ValueError, OverflowError):
        return None
    return out if all(float(a) == float(b) for a, b in zip(out, nums, strict=True)) else None


def _coerce_target(target: Any) -> Fraction | None:
    try:
        if isinstance(target, str):
            return to_fraction(target.strip())
        return Fraction(target)
    except (TypeError, ValueError, OverflowError):
        return None


