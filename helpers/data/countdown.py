"""Countdown (TinyZero's task): seeded problems, an exact solver, and the search traces the warm-start set teaches."""

from __future__ import annotations

import random
from collections.abc import Iterable
from fractions import Fraction

MAX_NUMBER = 99  # Countdown numbers are drawn from 1..MAX_NUMBER
MAX_TARGET = 100  # and targets are positive integers up to MAX_TARGET
THINK_CHAR_BUDGET = 160  # keeps traces under ~140 SmolLM2 tokens (about one token per character of arithmetic)
# Share of Countdown warm-start traces that run out of tries and commit to their last attempt. Without them
# every trace ends in a found solution, so a small model whose arithmetic misses keeps trying until the
# token budget ends and never answers (measured on cpu: 40% of Countdown completions); with them it learns
# to stop after a few tries and answer, which RL can then reward or not.
GIVE_UP_SHARE = 0.25
GIVE_UP_TRIES = 3
# An expression is a tuple (value, op, left, right); a bare number is (value, None, n, None).
_Expr = tuple
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def _joins(a: _Expr, b: _Expr, natural: bool) -> Iterable[_Expr]:
    """Every expression joining ``a`` and ``b`` with one operator (both orders for - and /).

    With ``natural`` only positive integer results are kept (values are plain ints, which is also
    much faster); otherwise values are exact Fractions and anything goes except dividing by zero.
    """
    va, vb = a[0], b[0]
    hi, lo = (a, b) if va >= vb else (b, a)
    yield (va + vb, "+", a, b)
    yield (va * vb, "*", a, b)
    if natural:
        if va != vb:
            yield (hi[0] - lo[0], "-", hi, lo)
        yield from ((num[0] // den[0], "/", num, den) for num, den in ((a, b), (b, a)) if num[0] % den[0] == 0)
        return
    yield (hi[0] - lo[0], "-", hi, lo)
    yield (lo[0] - hi[0], "-", lo, hi)
    yield from ((num[0] / den[0], "/", num, den) for num, den in ((a, b), (b, a)) if den[0] != 0)


def _search(exprs: list[_Expr], target: int, natural: bool) -> _Expr | None:
    """Depth-first search over every way to join two of the remaining expressions: this covers
    every parenthesization and order of the numbers, each used exactly once."""
    if len(exprs) == 1:
        return exprs[0] if exprs[0][0] == target else None
    for i in range(len(exprs)):
        for j in range(i + 1, len(exprs)):
            rest = exprs[:i] + exprs[i + 1 : j] + exprs[j + 1 :]
            for joined in _joins(exprs[i], exprs[j], natural):
                found = _search(rest + [joined], target, natural)
                if found is not None:
                    return found
    return None


def _solve(nums: list[int], target: int) -> _Expr | None:
    if not nums or not all(isinstance(n, int) and not isinstance(n, bool) for n in [*nums, target]):
        raise ValueError(f"nums must be a non-empty list of integers and target an integer, got {nums!r} and {target!r}")
    # Prefer a solution whose intermediate results are all positive integers; fall back to any.
    if min(nums) > 0:
        found = _search([(n, None, n, None) for n in nums], target, natural=True)
        if found is not None:
            return found
    return _search([(Fraction(n), None, n, None) for n in nums], target, natural=False)


def _render(expr: _Expr) -> tuple[str, str | None]:
    """Infix text with only the parentheses precedence needs, and the top-level operator."""
    value, op, left, right = expr
    if op is None:
        return str(left), None
    lt, lop = _render(left)
    rt, rop = _render(right)
    if lop and _PRECEDENCE[lop] < _PRECEDENCE[op]:
        lt = f"({lt})"
    if rop and (_PRECEDENCE[rop] < _PRECEDENCE[op] or (_PRECEDENCE[rop] == _PRECEDENCE[op] and op in "-/")):
        rt = f"({rt})"
    return f"{lt}{op}{rt}", op


def operand_text(value: Fraction | int) -> str:
    """A value inside a worked step; fractions and negatives get parentheses so ``12/(3/2)`` reads right."""
    value = Fraction(value)
    return str(value) if value.denominator == 1 and value >= 0 else f"({value})"


def _steps(expr: _Expr) -> list[str]:
    """The worked steps ("67-23=44", "44*2=88") that build ``expr``, innermost first."""
    value, op, left, right = expr
    if op is None:
        return []
    return _steps(left) + _steps(right) + [f"{operand_text(left[0])}{op}{operand_text(right[0])}={value}"]


def solve_countdown(nums: list[int], target: int) -> str | None:
    """An equation that uses every number in ``nums`` exactly once with + - * / and any parentheses
    and equals ``target`` exactly (rational arithmetic, no rounding), or None when none exists.

    The search is exhaustive, so None means unsolvable. Solutions whose intermediate results are all
    positive integers are preferred because they make readable traces.
    """
    expr = _solve(list(nums), target)
    return None if expr is None else _render(expr)[0]


def _random_target(nums: list[int], rng: random.Random) -> int | None:
    """Join the numbers in a random order with random operators (positive integer results only)
    and return the result if it is a valid target: this makes every generated problem solvable."""
    pool = list(nums)
    while len(pool) > 1:
        a = pool.pop(rng.randrange(len(pool)))
        b = pool.pop(rng.randrange(len(pool)))
        options = [a + b, a * b] + ([abs(a - b)] if a != b else [])
        options += [x // y for x, y in ((a, b), (b, a)) if y > 1 and x % y == 0]
        pool.append(rng.choice(options))
    return pool[0] if 1 <= pool[0] <= MAX_TARGET else None


def make_countdown(n: int, seed: int = 0, n_numbers: tuple[int, ...] = (3, 4)) -> list[dict]:
    """``n`` distinct, solvable Countdown problems as rows ``{"nums": [...], "target": t}``.

    Each problem draws ``k`` (from ``n_numbers``) numbers in 1..99 and a positive target up to 100
    reached by combining all of them, so a solution always exists. The same seed gives the same
    problems, and a larger ``n`` extends the list without changing its start. No two problems share
    the same numbers (in any order) and target.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not n_numbers or min(n_numbers) < 2:
        raise ValueError(f"n_numbers must list sizes >= 2, got {n_numbers!r}")
    rng = random.Random(seed)
    rows: list[dict] = []
    seen: set[tuple] = set()
    while len(rows) < n:
        nums = [rng.randint(1, MAX_NUMBER) for _ in range(rng.choice(n_numbers))]
        target = _random_target(nums, rng)
        key = (tuple(sorted(nums)), target)
        if target is None or key in seen:
            continue
        seen.add(key)
        rows.append({"nums": nums, "target": target})
    return rows


def _failed_try(nums: list[int], target: int, rng: random.Random) -> tuple[str, str] | None:
    """One plausible wrong attempt: combine the numbers left to right in a random order; it gives up
    early when the running value is far too big. Returns the trace line and the attempt as an
    expression, or None if the attempt happens to reach the target."""
    order = rng.sample(nums, len(nums))
    value, steps, expression = order[0], [], str(order[0])
    for position, x in enumerate(order[1:], start=2):
        options = [("+", value + x, 2), ("*", value * x, 1)] + ([("-", value - x, 2)] if value > x else [])
        options += [("/", value // x, 1)] if x > 1 and value % x == 0 else []
        op, new, _ = rng.choices(options, weights=[w for *_, w in options])[0]
        steps.append(f"{value}{op}{x}={new}")
        expression = f"({expression}){op}{x}" if position > 2 else f"{expression}{op}{x}"
        value = new
        if value > 10 * MAX_TARGET and position < len(order):
            return f"Try {', '.join(steps)}, too big. Back up.", expression
    return None if value == target else (f"Try {', '.join(steps)}, not {target}. Back up.", expression)


def countdown_trace(nums: list[int], target: int, give_up_share: float = GIVE_UP_SHARE) -> str:
    """The assistant turn of a warm-start example in ``<think>``/``<answer>`` form.

    Most traces make one or two failed tries, back up, then work out the solver's equation step by step
    and verify it. A ``give_up_share`` of problems (chosen by a hash of the problem) instead makes
    ``GIVE_UP_TRIES`` failed tries and commits to the last one: the trace a budgeted search ends with
    when it finds nothing, and the reason a trained model stops trying and answers.

    The ``<think>`` block stays within ``THINK_CHAR_BUDGET`` characters (failed tries are dropped
    first), so a 135M model generating up to 160 tokens can learn to reach the ``<answer>`` tag.
    Deterministic: the same problem always gives the same trace.
    """
    solution = _solve(list(nums), target)
    if solution is None:
        raise ValueError(f"Countdown problem {list(nums)} -> {target} has no solution")
    equation = _render(solution)[0]
    rng = random.Random(f"countdown-trace:{sorted(nums)}:{target}")
    give_up = rng.random() < give_up_share
    tries: dict[str, str] = {}
    for _ in range(20 if give_up else rng.choice((1, 2))):
        attempt = _failed_try(list(nums), target, rng)
        if attempt:
            tries.setdefault(*attempt)
        if give_up and len(tries) == GIVE_UP_TRIES:
            break
    if give_up and tries:
        lines = list(tries)
        guess = tries[lines[-1]]  # the last try is the answer; earlier ones are dropped to fit the budget
        final = f"Out of tries, no {target} yet. Best guess: {guess}."
        while len(lines) > 1:
            if len(think := "\n".join(lines + [final])) <= THINK_CHAR_BUDGET:
                return f"<think>\n{think}\n</think>\n<answer>{guess}</answer>"
            lines.pop(0)
    lines = list(tries)[:2]
    final = f"Try {', '.join(_steps(solution))}. Check: {equation} = {target}, each number used once. Correct."
    while len(think := "\n".join(lines + [final])) > THINK_CHAR_BUDGET and lines:
        lines.pop()
    return f"<think>\n{think}\n</think>\n<answer>{equation}</answer>"
