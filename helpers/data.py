"""The course's data: one loader per task of the data table, the offline generators, and splits.

Every task has one row schema (``SCHEMAS``) that all three profiles produce, so notebooks never
branch on the profile:

=============  ===========================================================================
task           columns
=============  ===========================================================================
math           ``prompt`` (the question), ``solution`` (worked text), ``answer`` (a string:
               "42", "-3/4"), ``difficulty`` (1..3 for generated problems, the MATH level
               for MATH-500, 0 where the source does not grade)
countdown      ``nums`` (list[int]), ``target`` (int)
warmstart      ``messages`` (a user turn and an assistant turn; no system prompt, the chat
               module adds it), ``task`` ("countdown", "math" or "stratos")
instructions   ``messages``, ``constraints`` (a dict in ``helpers.rewards``' constraint key
               schema; ``{}`` for Hub rows, which carry no checkable constraints)
preferences    ``prompt`` (a list holding one user message), ``chosen`` and ``rejected``
               (lists holding one assistant message), ``constraints`` (as above)
=============  ===========================================================================

Preference rows are conversational in every profile: UltraFeedback ships them that way, and
TRL's DPOTrainer applies the chat template to conversational rows, which an instruct model needs.

Where the rows come from depends on the profile:

- ``gpu``: ``datasets.load_dataset`` on the Hub source (``HUB_SOURCES``), then one
  ``normalize_*_row`` function per source turns each row into the schema above.
- ``tiny`` and ``cpu``: seeded generators in this module (Countdown problems and an exact solver,
  search traces, math word problems, instruction prompts with checkable constraints built from the
  facts shipped in ``data/raw/instruction_topics.json``). They take well under a second, and each
  load writes what it produced to ``data/generated/<profile>/<task>.jsonl`` for learners to read.

Splits are ``train``, ``validation`` and ``test``. A source without a validation split gets a
seeded 90/10 split of its train rows (``train_validation_split``); a source without a test split
is evaluated on that held-out validation part. Offline tasks generate ``n`` rows (the profile's
size for the task) for train/validation plus ``n_eval`` distinct rows for test, and no prompt
appears twice within a task. Every loader checks its rows with ``validate_rows``, which names the
row and the field of anything missing or mistyped.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any, TypedDict, get_args, get_origin, get_type_hints, is_typeddict

import datasets
import numpy as np

from helpers.config import DATA_DIR, DEFAULT_SEED, Profile, get_profile

TASKS = ("math", "countdown", "warmstart", "instructions", "preferences")
SPLITS = ("train", "validation", "test")
VALIDATION_FRACTION = 0.1

MAX_NUMBER = 99  # Countdown numbers are drawn from 1..MAX_NUMBER
MAX_TARGET = 100  # and targets are positive integers up to MAX_TARGET
THINK_CHAR_BUDGET = 160  # keeps traces under ~140 SmolLM2 tokens (about one token per character of arithmetic)
# Share of Countdown warm-start traces that run out of tries and commit to their last attempt. Without them
# every trace ends in a found solution, so a small model whose arithmetic misses keeps trying until the
# token budget ends and never answers (measured on cpu: 40% of Countdown completions); with them it learns
# to stop after a few tries and answer, which RL can then reward or not.
GIVE_UP_SHARE = 0.25
GIVE_UP_TRIES = 3

TOPICS_FILE = DATA_DIR / "raw" / "instruction_topics.json"


# --------------------------------------------------------------------------------------------
# Schemas and validation
# --------------------------------------------------------------------------------------------


class Message(TypedDict):
    """One chat turn, as chat templates and TRL expect it."""

    role: str
    content: str


SCHEMAS: dict[str, dict[str, Any]] = {
    "math": {"prompt": str, "solution": str, "answer": str, "difficulty": int},
    "countdown": {"nums": list[int], "target": int},
    "warmstart": {"messages": list[Message], "task": str},
    "instructions": {"messages": list[Message], "constraints": dict},
    "preferences": {"prompt": list[Message], "chosen": list[Message], "rejected": list[Message], "constraints": dict},
}


def _feature(spec: Any) -> Any:
    """The ``datasets`` feature for one schema type; ``dict`` becomes ``Json`` so that constraint
    dicts with different keys round-trip exactly (a struct column would add the missing keys as None)."""
    simple = {str: datasets.Value("string"), int: datasets.Value("int64")}
    if spec in simple:
        return simple[spec]
    if spec is dict:
        return datasets.Json()
    if get_origin(spec) is list:
        return datasets.List(_feature(get_args(spec)[0]))
    if is_typeddict(spec):
        return {key: _feature(value) for key, value in get_type_hints(spec).items()}
    raise TypeError(f"no datasets feature for schema type {spec!r}")


FEATURES: dict[str, datasets.Features] = {
    task: datasets.Features({name: _feature(spec) for name, spec in schema.items()}) for task, schema in SCHEMAS.items()
}


def _type_ok(value: Any, spec: Any) -> bool:
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec in (str, dict):
        return isinstance(value, spec)
    if get_origin(spec) is list:
        item = get_args(spec)[0]
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if is_typeddict(spec):
        hints = get_type_hints(spec)
        return isinstance(value, dict) and all(k in value and _type_ok(value[k], t) for k, t in hints.items())
    raise TypeError(f"unsupported schema type {spec!r}")


def _type_name(spec: Any) -> str:
    if get_origin(spec) is list:
        return f"list[{_type_name(get_args(spec)[0])}]"
    if is_typeddict(spec):
        return "{" + ", ".join(f"{k!r}: {_type_name(t)}" for k, t in get_type_hints(spec).items()) + "}"
    return spec.__name__


def _validate_row(row: Any, schema: Mapping[str, Any], where: str) -> None:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a mapping of field -> value, got {type(row).__name__}")
    for name, spec in schema.items():
        if name not in row:
            raise ValueError(f"{where}: missing field {name!r} (expected {_type_name(spec)})")
        value = row[name]
        if not _type_ok(value, spec):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ValueError(f"{where}: field {name!r} should be {_type_name(spec)}, got {type(value).__name__} {shown}")


def validate_rows(rows: Iterable[Mapping], schema: str | Mapping[str, Any], source: str = "rows") -> None:
    """Check every row against a schema (a task name or a ``{field: type}`` mapping).

    Raises ``ValueError`` naming the row index and the field, e.g.
    ``countdown row 3: field 'target' should be int, got str '88'``, so a bad row in a large file is
    found in seconds instead of surfacing as a cryptic error deep inside a trainer.
    """
    if isinstance(schema, str):
        source = schema if source == "rows" else source
        schema = SCHEMAS[schema]
    for index, row in enumerate(rows):
        _validate_row(row, schema, f"{source} row {index}")


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


def _split_indices(n: int, seed: int, fraction: float) -> tuple[list[int], list[int]]:
    """Seeded train/validation indices; both keep the original order so splits read like the source."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be between 0 and 1, got {fraction}")
    if n < 2:
        raise ValueError(f"need at least 2 rows to split into train and validation, got {n}")
    n_val = min(n - 1, max(1, round(n * fraction)))
    order = random.Random(seed).sample(range(n), n)
    return sorted(order[n_val:]), sorted(order[:n_val])


def train_validation_split(ds: datasets.Dataset, seed: int = DEFAULT_SEED, fraction: float = VALIDATION_FRACTION) -> datasets.DatasetDict:
    """A seeded split into ``train`` and ``validation`` (``fraction`` of the rows, at least one)
    for sources that ship no validation split. The same seed gives the same split everywhere."""
    train_idx, val_idx = _split_indices(len(ds), seed, fraction)
    return datasets.DatasetDict(train=ds.select(train_idx), validation=ds.select(val_idx))


# --------------------------------------------------------------------------------------------
# User prompts (the chat module reuses them)
# --------------------------------------------------------------------------------------------


def countdown_prompt(nums: list[int], target: int) -> str:
    """The user turn of a Countdown task."""
    return (
        f"Using the numbers {list(nums)}, create an equation that equals {target}. "
        "Use each number exactly once with + - * /. "
        "Show your reasoning in <think> </think> and give the equation in <answer> </answer>."
    )


def math_prompt(question: str) -> str:
    """The user turn of a math problem."""
    return f"{question.strip()}\nShow your reasoning in <think> </think> and give the final answer as a number in <answer> </answer>."


# --------------------------------------------------------------------------------------------
# Countdown: exact solver, generator, search traces
# --------------------------------------------------------------------------------------------

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


def _operand(value: Fraction | int) -> str:
    """A value inside a worked step; fractions and negatives get parentheses so ``12/(3/2)`` reads right."""
    value = Fraction(value)
    return str(value) if value.denominator == 1 and value >= 0 else f"({value})"


def _steps(expr: _Expr) -> list[str]:
    """The worked steps ("67-23=44", "44*2=88") that build ``expr``, innermost first."""
    value, op, left, right = expr
    if op is None:
        return []
    return _steps(left) + _steps(right) + [f"{_operand(left[0])}{op}{_operand(right[0])}={value}"]


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


# --------------------------------------------------------------------------------------------
# Math word problems with known answers
# --------------------------------------------------------------------------------------------


def _apply(a: Fraction | int, op: str, b: Fraction | int) -> Fraction:
    a, b = Fraction(a), Fraction(b)
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]


@dataclass(frozen=True)
class _Step:
    """One operation of a worked solution: ``a op b``, with what the result means."""

    a: Fraction | int
    op: str
    b: Fraction | int
    label: str

    @property
    def value(self) -> Fraction:
        return _apply(self.a, self.op, self.b)

    def text(self, op: str | None = None) -> str:
        """The step as "a op b=value"; a different ``op`` shows the slip a trace backs up from."""
        op = op or self.op
        return f"{_operand(self.a)}{op}{_operand(self.b)}={_apply(self.a, op, self.b)}"


@dataclass(frozen=True)
class _MathProblem:
    question: str
    steps: tuple[_Step, ...]
    difficulty: int

    @property
    def answer(self) -> str:
        return str(self.steps[-1].value)

    def row(self) -> dict:
        lines = [f"{s.label.capitalize()}: {s.text()}." for s in self.steps]
        return {
            "prompt": self.question,
            "solution": "\n".join(lines + [f"The answer is {self.answer}."]),
            "answer": self.answer,
            "difficulty": self.difficulty,
        }


_NAMES = ("Ava", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hugo", "Isla", "Jack", "Kira", "Leo",
          "Maya", "Noah", "Olivia", "Priya", "Quinn", "Ravi", "Sara", "Tom", "Uma", "Victor", "Wen", "Zoe")
_ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "balloons", "oranges", "shells")
_VEHICLES = ("car", "bus", "train", "cyclist", "truck", "boat")


def _plain_1(rng: random.Random) -> tuple[str, list[_Step]]:
    op = rng.choice("+-*")
    a, b = (rng.randint(2, 9), rng.randint(2, 9)) if op == "*" else (rng.randint(2, 20), rng.randint(1, 10))
    a, b = (max(a, b), min(a, b)) if op == "-" else (a, b)
    return f"What is {a} {op} {b}?", [_Step(a, op, b, "result")]


def _gain_or_loss_1(rng: random.Random) -> tuple[str, list[_Step]]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a, b = rng.randint(2, 15), rng.randint(1, 9)
    if rng.random() < 0.5:
        return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", [_Step(a, "+", b, "total")]
    a += b
    return f"{name} has {a} {item} and gives away {b}. How many {item} are left?", [_Step(a, "-", b, "left")]


def _packs_1(rng: random.Random) -> tuple[str, list[_Step]]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    k, m = rng.randint(2, 5), rng.randint(2, 10)
    return f"{name} buys {k} bags with {m} {item} in each bag. How many {item} is that?", [_Step(k, "*", m, "total")]


def _share_1(rng: random.Random) -> tuple[str, list[_Step]]:
    item = rng.choice(_ITEMS)
    k, each = rng.randint(2, 5), rng.randint(2, 8)
    return f"{k * each} {item} are shared equally among {k} friends. How many {item} does each friend get?", [
        _Step(k * each, "/", k, "each friend")]


def _change_2(rng: random.Random) -> tuple[str, list[_Step]]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    k, price = rng.randint(2, 9), rng.randint(2, 12)
    bill = next(b for b in (20, 50, 100, 200) if b > k * price)
    cost = _Step(k, "*", price, "cost")
    return (f"{name} buys {k} {item} at {price} dollars each and pays with a {bill}-dollar bill. "
            f"How much change does {name} get, in dollars?"), [cost, _Step(bill, "-", cost.value, "change")]


def _trip_2(rng: random.Random) -> tuple[str, list[_Step]]:
    vehicle = rng.choice(_VEHICLES)
    speed, hours, extra = rng.choice((20, 30, 40, 45, 50, 60, 80)), rng.randint(2, 5), rng.randint(5, 60)
    first = _Step(speed, "*", hours, "first part")
    return (f"A {vehicle} travels at {speed} km per hour for {hours} hours and then another {extra} km. "
            f"How many kilometers does it travel in total?"), [first, _Step(first.value, "+", extra, "total")]


def _share_2(rng: random.Random) -> tuple[str, list[_Step]]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    k, each, keep = rng.randint(2, 6), rng.randint(2, 9), rng.randint(1, 12)
    rest = _Step(k * each + keep, "-", keep, "to share")
    return (f"{name} has {k * each + keep} {item}, keeps {keep} and shares the rest equally among {k} friends. "
            f"How many {item} does each friend get?"), [rest, _Step(rest.value, "/", k, "each friend")]


def _ages_2(rng: random.Random) -> tuple[str, list[_Step]]:
    a, b = rng.sample(_NAMES, 2)
    age, gap, years = rng.randint(4, 30), rng.randint(2, 25), rng.randint(2, 15)
    now = _Step(age, "+", gap, f"{b} now")
    return (f"{a} is {age} years old. {b} is {gap} years older than {a}. How old will {b} be in {years} years?"), [
        now, _Step(now.value, "+", years, f"{b} later")]


def _plain_2(rng: random.Random) -> tuple[str, list[_Step]]:
    a, b, c = rng.randint(2, 12), rng.randint(2, 12), rng.randint(2, 30)
    if rng.random() < 0.5:
        first = _Step(a, "*", b, "product")
        op = rng.choice("+-") if a * b > c else "+"
        return f"Compute {a} * {b} {op} {c}.", [first, _Step(first.value, op, c, "result")]
    first = _Step(a, "+", b, "sum")
    return f"Compute ({a} + {b}) * {c}.", [first, _Step(first.value, "*", c, "result")]


def _discount_3(rng: random.Random) -> tuple[str, list[_Step]]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    percent, divisor = rng.choice(((10, 10), (20, 5), (25, 4), (50, 2)))
    k = rng.randint(2, 8)
    price = divisor * rng.randint(1, 6)  # keeps the discount a whole number of dollars
    fee = rng.randint(2, 9)
    cost = _Step(k, "*", price, "cost")
    off = _Step(cost.value, "/", divisor, f"{percent}% off")
    after = _Step(cost.value, "-", off.value, "after the discount")
    return (f"{name} buys {k} {item} at {price} dollars each. The shop takes {percent}% off the total and then "
            f"adds a {fee}-dollar delivery fee. How much does {name} pay, in dollars?"), [
        cost, off, after, _Step(after.value, "+", fee, "to pay")]


def _average_speed_3(rng: random.Random) -> tuple[str, list[_Step]]:
    vehicle = rng.choice(_VEHICLES)
    t1, t2, average = rng.randint(2, 4), rng.randint(2, 4), rng.randint(25, 60)
    d1 = t1 * rng.randint(average - 10, average + 10)  # the second leg makes up the rest: a whole-number average
    d2 = average * (t1 + t2) - d1
    dist, time = _Step(d1, "+", d2, "distance"), _Step(t1, "+", t2, "time")
    return (f"A {vehicle} covers {d1} km in {t1} hours and then {d2} km in {t2} hours. "
            f"What is its average speed for the whole trip, in km per hour?"), [
        dist, time, _Step(dist.value, "/", time.value, "average speed")]


def _ages_3(rng: random.Random) -> tuple[str, list[_Step]]:
    a, b = rng.sample(_NAMES, 2)
    factor, age, years = rng.randint(2, 4), rng.randint(3, 15), rng.randint(2, 10)
    a_now = _Step(factor, "*", age, f"{a} now")
    a_later, b_later = _Step(a_now.value, "+", years, f"{a} later"), _Step(age, "+", years, f"{b} later")
    return (f"{a} is {factor} times as old as {b}, who is {age}. What will the sum of their ages be in {years} years?"), [
        a_now, a_later, b_later, _Step(a_later.value, "+", b_later.value, "sum")]


def _fractions_3(rng: random.Random) -> tuple[str, list[_Step]]:
    b, d = rng.choice((2, 3, 4, 5)), rng.choice((2, 3, 4, 6))
    a, c, e = rng.randint(1, 2 * b - 1), rng.randint(1, 2 * d - 1), rng.randint(1, 3)
    first = _Step(Fraction(a, b), "+", Fraction(c, d), "sum")
    return f"Compute {a}/{b} + {c}/{d} - {e}.", [first, _Step(first.value, "-", e, "result")]


def _bakery_3(rng: random.Random) -> tuple[str, list[_Step]]:
    trays, per, bag = rng.randint(2, 6), rng.choice((6, 8, 10, 12)), rng.choice((3, 4, 5, 6))
    bags = rng.randint(1, trays * per // bag - 1)
    sold = trays * per - bags * bag
    made = _Step(trays, "*", per, "cookies made")
    left = _Step(made.value, "-", sold, "cookies left")
    return (f"A baker makes {trays} trays of {per} cookies, sells {sold} cookies and packs the rest in bags of {bag}. "
            f"How many bags does the baker fill?"), [made, left, _Step(left.value, "/", bag, "bags")]


_MATH_TEMPLATES: dict[int, tuple[Callable[[random.Random], tuple[str, list[_Step]]], ...]] = {
    1: (_plain_1, _gain_or_loss_1, _packs_1, _share_1),
    2: (_change_2, _trip_2, _share_2, _ages_2, _plain_2),
    3: (_discount_3, _average_speed_3, _ages_3, _fractions_3, _bakery_3),
}
_DIFFICULTY_WEIGHTS = (0.4, 0.35, 0.25)  # easy problems first: a 135M model must get some right under RL


def _math_problems(n: int, seed: int) -> list[_MathProblem]:
    rng = random.Random(seed)
    problems: list[_MathProblem] = []
    seen: set[str] = set()
    while len(problems) < n:
        difficulty = rng.choices((1, 2, 3), weights=_DIFFICULTY_WEIGHTS)[0]
        question, steps = rng.choice(_MATH_TEMPLATES[difficulty])(rng)
        if question not in seen:
            seen.add(question)
            problems.append(_MathProblem(question, tuple(steps), difficulty))
    return problems


def make_math_problems(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct math problems with exact answers, as math-schema rows.

    Templates: plain arithmetic, shopping (cost, change, discounts), speed and distance, sharing,
    ages and fractions. Difficulty 1 is one small-number operation, 2 is two steps, 3 is three or
    four steps or fractions. Answers are integers or reduced fractions written as strings ("-3/4").
    """
    return [p.row() for p in _math_problems(n, seed)]


def _math_trace(problem: _MathProblem) -> str:
    """Worked steps in ``<think>``/``<answer>`` form. About a third of traces first slip on one step (a
    wrong operator), catch it on a recheck and back up; the slip is left out if it would push ``<think>``
    past ``THINK_CHAR_BUDGET``.

    The last step is the answer: no closing check. With a "Check: <last step undone>. Correct." line,
    a 135M model that got the check's arithmetic wrong wrote "Check:" lines until its token budget ran
    out (most of its math format failures after SFT on cpu)."""
    rng = random.Random(f"math-trace:{problem.question}")
    slip_at = rng.randrange(len(problem.steps)) if rng.random() < 1 / 3 else None
    lines, slip = [], []
    for i, step in enumerate(problem.steps):
        wrong_ops = [op for op in "+-*" if op != step.op and _apply(step.a, op, step.b) != step.value] if i == slip_at else []
        if wrong_ops:
            slip = [f"{step.label.capitalize()}: {step.text(rng.choice(wrong_ops))}? Recheck: it needs {step.op}. Back up."]
            lines += slip
        lines.append(f"{step.label.capitalize()}: {step.text()}.")
    if len("\n".join(lines)) > THINK_CHAR_BUDGET:
        lines = [line for line in lines if line not in slip]
    think = "\n".join(lines)
    return f"<think>\n{think}\n</think>\n<answer>{problem.answer}</answer>"


# --------------------------------------------------------------------------------------------
# Instruction following: prompts with checkable constraints
# --------------------------------------------------------------------------------------------


def _load_topics() -> list[dict]:
    with open(TOPICS_FILE, encoding="utf-8") as f:
        topics = json.load(f)["topics"]
    validate_rows(topics, {"topic": str, "category": str, "facts": list[str]}, source=str(TOPICS_FILE))
    for index, topic in enumerate(topics):
        if len(topic["facts"]) < 4:  # bullets, JSON values and rejected answers need four distinct facts
            raise ValueError(f"{TOPICS_FILE} row {index}: field 'facts' needs at least 4 facts, has {len(topic['facts'])}")
    return topics


def _words(text: str) -> int:
    return len(text.split())


def _quoted_list(words: list[str]) -> str:
    quoted = [f'"{w}"' for w in words]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _fit_words(facts: list[str], limit: int) -> str:
    """As many whole facts (in order) as fit in ``limit`` words."""
    kept: list[str] = []
    for fact in facts:
        if _words(" ".join(kept + [fact])) > limit:
            break
        kept.append(fact)
    return " ".join(kept)


def _bullets(facts: list[str]) -> str:
    return "\n".join(f"- {fact}" for fact in facts)


def _instruction_example(topic: dict, kind: str, rng: random.Random) -> dict:
    """One prompt with its constraints, a reference answer that satisfies them and a rejected
    answer that breaks at least one. ``kind`` names the constraint(s)."""
    name, facts = topic["topic"], rng.sample(topic["facts"], len(topic["facts"]))
    everything = " ".join(facts)
    if kind == "max_words":
        limit = rng.randint(_words(facts[0]), min(_words(facts[0]) + 12, _words(everything) - 1))
        prompt = rng.choice(("Describe {t} in at most {k} words.", "In no more than {k} words, tell me about {t}.",
                             "Write a short note about {t}. Use {k} words or fewer."))
        return {"prompt": prompt.format(t=name, k=limit), "constraints": {"max_words": limit},
                "chosen": _fit_words(facts, limit), "rejected": everything}
    if kind == "min_words":
        limit = rng.randint(_words(facts[0]) + 2, _words(everything))
        prompt = rng.choice(("Write at least {k} words about {t}.", "Tell me about {t} in {k} words or more."))
        return {"prompt": prompt.format(t=name, k=limit), "constraints": {"min_words": limit},
                "chosen": everything, "rejected": facts[0]}
    if kind == "num_bullets":
        count = rng.randint(2, 4)
        prompt = rng.choice(("List exactly {k} facts about {t} as bullet points.", "Give me {k} bullet points about {t}."))
        wrong = rng.choice([count - 1, count + 1] if count < len(facts) else [count - 1])
        return {"prompt": prompt.format(t=name, k=count), "constraints": {"num_bullets": count},
                "chosen": _bullets(facts[:count]), "rejected": _bullets(facts[:wrong])}
    if kind == "lowercase":
        prompt = rng.choice(("Explain {t} in two sentences, using only lowercase letters.",
                             "Tell me two facts about {t}. Write everything in lowercase."))
        two = " ".join(facts[:2])
        return {"prompt": prompt.format(t=name), "constraints": {"lowercase": True}, "chosen": two.lower(), "rejected": two}
    if kind == "json_keys":
        values = {"topic": name, "category": topic["category"], "fact": facts[0], "detail": facts[1]}
        picked = set(rng.sample(list(values), rng.choice((2, 3))))
        keys = [k for k in values if k in picked]
        prompt = f"Reply with a JSON object about {name} that has the keys {_quoted_list(keys)}."
        rejected = (json.dumps({k: values[k] for k in keys[:-1]}) if rng.random() < 0.5
                    else "; ".join(f"{k}: {values[k]}" for k in keys))
        return {"prompt": prompt, "constraints": {"json_keys": keys},
                "chosen": json.dumps({k: values[k] for k in keys}), "rejected": rejected}
    if kind == "must_include":
        word, with_word, without_word = _word_to_include(facts, rng)
        prompt = rng.choice(('Write one or two sentences about {t} that use the word "{w}".',
                             'Tell me something about {t}, and include the word "{w}".'))
        return {"prompt": prompt.format(t=name, w=word), "constraints": {"must_include": [word]},
                "chosen": with_word, "rejected": without_word}
    if kind == "lowercase+max_words":
        base = _instruction_example(topic, "max_words", rng)
        limit = base["constraints"]["max_words"]
        prompt = f"Describe {name} in at most {limit} words, using only lowercase letters."
        rejected = base["chosen"] if rng.random() < 0.5 else base["rejected"].lower()
        return {"prompt": prompt, "constraints": {"max_words": limit, "lowercase": True},
                "chosen": base["chosen"].lower(), "rejected": rejected}
    if kind == "num_bullets+lowercase":
        base = _instruction_example(topic, "num_bullets", rng)
        count = base["constraints"]["num_bullets"]
        prompt = f"List exactly {count} facts about {name} as bullet points, all in lowercase."
        rejected = base["chosen"] if rng.random() < 0.5 else base["rejected"].lower()
        return {"prompt": prompt, "constraints": {"num_bullets": count, "lowercase": True},
                "chosen": base["chosen"].lower(), "rejected": rejected}
    if kind == "must_include+max_words":
        word, with_word, without_word = _word_to_include(facts, rng)
        limit = _words(with_word) + rng.randint(0, 8)
        prompt = f'In at most {limit} words, tell me about {name} and use the word "{word}".'
        return {"prompt": prompt, "constraints": {"max_words": limit, "must_include": [word]},
                "chosen": with_word, "rejected": without_word if rng.random() < 0.5 else with_word + " " + everything}
    raise ValueError(f"unknown instruction kind {kind!r}; known: {INSTRUCTION_KINDS}")


def _word_to_include(facts: list[str], rng: random.Random) -> tuple[str, str, str]:
    """A lowercase word of one fact that some other fact lacks, that fact, and the facts without the word."""
    for fact in facts:
        candidates = sorted({w for w in re.findall(r"\b[a-z]{5,}\b", fact)})
        rng.shuffle(candidates)
        for word in candidates:
            others = [f for f in facts if word not in f.lower()]  # the checker matches substrings
            if others:
                return word, fact, " ".join(others)
    raise ValueError(f"no word to require in facts {facts!r}")


INSTRUCTION_KINDS = ("max_words", "min_words", "num_bullets", "lowercase", "json_keys", "must_include",
                     "lowercase+max_words", "num_bullets+lowercase", "must_include+max_words")


def make_instruction_examples(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct instruction prompts with checkable constraints, each as
    ``{"prompt", "constraints", "chosen", "rejected"}``: ``chosen`` satisfies every constraint,
    ``rejected`` breaks at least one. Topics and facts come from ``data/raw/instruction_topics.json``."""
    topics = _load_topics()
    rng = random.Random(seed)
    examples: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    while len(examples) < n:
        if attempts == 50 * n + 100:  # the prompt space holds thousands; this bound only stops a bad data file
            raise ValueError(f"only {len(examples)} distinct instruction prompts could be made from {TOPICS_FILE}, {n} asked")
        attempts += 1
        example = _instruction_example(rng.choice(topics), rng.choice(INSTRUCTION_KINDS), rng)
        if example["prompt"] not in seen:
            seen.add(example["prompt"])
            examples.append(example)
    return examples


# --------------------------------------------------------------------------------------------
# Hub sources and their normalizers
# --------------------------------------------------------------------------------------------


def _get(row: Mapping, name: str, kind: type) -> Any:
    """A field of a Hub row, with an error naming the field when it is missing or mistyped."""
    if name not in row or row[name] is None:
        raise ValueError(f"missing field {name!r}")
    if not isinstance(row[name], kind):
        raise ValueError(f"field {name!r} should be {kind.__name__}, got {type(row[name]).__name__}")
    return row[name]


def _message(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def normalize_gsm8k_row(row: Mapping) -> dict:
    """GSM8K: ``question``, ``answer`` = worked text ending in ``#### 42`` -> math schema.
    Calculator annotations (``<<48/2=24>>``) are dropped and thousands separators removed."""
    text = _get(row, "answer", str)
    if "####" not in text:
        raise ValueError("field 'answer' has no '#### <number>' final line")
    worked, final = text.rsplit("####", 1)
    answer = final.strip().replace(",", "")
    if not answer:
        raise ValueError("field 'answer' has an empty '####' line")
    solution = re.sub(r"<<[^>]*>>", "", worked).strip()
    return {"prompt": _get(row, "question", str).strip(), "solution": f"{solution}\nThe answer is {answer}.",
            "answer": answer, "difficulty": 0}


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text`` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def normalize_numina_row(row: Mapping) -> dict:
    """NuminaMath-TIR: ``problem``, ``solution`` with the answer in the last ``\\boxed{}`` -> math schema."""
    solution = _get(row, "solution", str)
    answer = last_boxed(solution)
    if not answer:
        raise ValueError("field 'solution' has no \\boxed{...} answer")
    return {"prompt": _get(row, "problem", str).strip(), "solution": solution.strip(), "answer": answer, "difficulty": 0}


def normalize_openr1_row(row: Mapping) -> dict:
    """OpenR1-Math-220k: ``problem``, ``solution``, ``answer`` (already extracted) -> math schema."""
    return {"prompt": _get(row, "problem", str).strip(), "solution": _get(row, "solution", str).strip(),
            "answer": _get(row, "answer", str).strip(), "difficulty": 0}


def normalize_math500_row(row: Mapping) -> dict:
    """MATH-500: like OpenR1, plus ``level`` (1..5) kept as ``difficulty``."""
    return {**normalize_openr1_row(row), "difficulty": _get(row, "level", int)}


def normalize_countdown_row(row: Mapping) -> dict:
    """Countdown-Tasks-3to4: ``nums`` and ``target`` are already in the schema; types are checked, not coerced."""
    return {"nums": list(_get(row, "nums", list)), "target": _get(row, "target", int)}


def normalize_cog_behav_row(row: Mapping) -> dict:
    """cog_behav_all_strategies: ``query`` is a TinyZero-style prompt ("...User: <task>\\nAssistant: <prefill>")
    and ``completion`` the rest of the answer. The task becomes the user turn; the assistant's prefill
    (such as "Let me solve this step by step.\\n<think>") plus the completion become the assistant turn."""
    query, completion = _get(row, "query", str), _get(row, "completion", str)
    user, prefill = query, ""
    if "User:" in query:
        user = query.split("User:", 1)[1]
    if "Assistant:" in user:
        user, prefill = user.split("Assistant:", 1)
    return {"messages": [_message("user", user.strip()), _message("assistant", prefill.lstrip() + completion)],
            "task": "countdown"}


_STRATOS_TAGS = {"<|begin_of_thought|>": "<think>", "<|end_of_thought|>": "</think>",
                 "<|begin_of_solution|>": "<answer>", "<|end_of_solution|>": "</answer>"}


def normalize_bespoke_row(row: Mapping) -> dict:
    """Bespoke-Stratos-17k: ``conversations`` of ``{"from", "value"}`` -> user/assistant messages, with the
    thought/solution markers rewritten as the course's ``<think>``/``<answer>`` tags (its ``system`` is dropped)."""
    messages = []
    for turn in _get(row, "conversations", list):
        role, content = (turn.get("from"), turn.get("value")) if isinstance(turn, Mapping) else (None, None)
        if role not in ("user", "assistant") or not isinstance(content, str):
            raise ValueError(f"field 'conversations' has a turn that is not a user/assistant text: {turn!r:.80}")
        for old, new in _STRATOS_TAGS.items():
            content = content.replace(old, new)
        messages.append(_message(role, content.strip()))
    return {"messages": messages, "task": "stratos"}


def _chat_turns(messages: list, name: str) -> list[dict]:
    """The non-system turns of a Hub conversation, as plain role/content messages ending with the assistant."""
    turns = []
    for m in messages:
        if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise ValueError(f"field {name!r} has a message without a text 'role' and 'content': {m!r:.80}")
        if m["role"] != "system":
            turns.append(_message(m["role"], m["content"]))
    if not turns or turns[-1]["role"] != "assistant":
        raise ValueError(f"field {name!r} must end with an assistant message")
    return turns


def normalize_smoltalk_row(row: Mapping) -> dict:
    """smol-smoltalk: ``messages`` (system turns dropped; the chat module adds its own) -> instructions
    schema with no checkable constraints (``{}``)."""
    return {"messages": _chat_turns(_get(row, "messages", list), "messages"), "constraints": {}}


def normalize_ultrafeedback_row(row: Mapping) -> dict:
    """ultrafeedback_binarized: ``prompt`` (str) and ``chosen``/``rejected`` (full conversations) ->
    conversational preference rows: the user prompt, and the final assistant turn of each side."""
    return {
        "prompt": [_message("user", _get(row, "prompt", str))],
        "chosen": _chat_turns(_get(row, "chosen", list), "chosen")[-1:],
        "rejected": _chat_turns(_get(row, "rejected", list), "rejected")[-1:],
        "constraints": {},
    }


@dataclass(frozen=True)
class HubSource:
    """Where a task's rows live and how one row becomes the course schema.

    ``path``, ``name`` and ``data_files`` are passed to ``datasets.load_dataset``; ``splits`` maps
    the course's split names to the source's. Tests (or a learner with downloaded files) swap
    ``path``/``data_files`` for local files of the same shape with ``dataclasses.replace``.
    """

    task: str
    path: str
    normalize: Callable[[Mapping], dict]
    name: str | None = None
    splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})
    data_files: Any = None


HUB_SOURCES: dict[str, HubSource] = {
    "openai/gsm8k": HubSource("math", "openai/gsm8k", normalize_gsm8k_row, name="main"),
    "AI-MO/NuminaMath-TIR": HubSource("math", "AI-MO/NuminaMath-TIR", normalize_numina_row),
    "open-r1/OpenR1-Math-220k": HubSource("math", "open-r1/OpenR1-Math-220k", normalize_openr1_row, name="default",
                                          splits={"train": "train"}),
    "HuggingFaceH4/MATH-500": HubSource("math", "HuggingFaceH4/MATH-500", normalize_math500_row, splits={"test": "test"}),
    "Jiayi-Pan/Countdown-Tasks-3to4": HubSource("countdown", "Jiayi-Pan/Countdown-Tasks-3to4", normalize_countdown_row,
                                                splits={"train": "train"}),
    "Asap7772/cog_behav_all_strategies": HubSource("warmstart", "Asap7772/cog_behav_all_strategies",
                                                   normalize_cog_behav_row),
    "bespokelabs/Bespoke-Stratos-17k": HubSource("warmstart", "bespokelabs/Bespoke-Stratos-17k", normalize_bespoke_row,
                                                 splits={"train": "train"}),
    "HuggingFaceTB/smol-smoltalk": HubSource("instructions", "HuggingFaceTB/smol-smoltalk", normalize_smoltalk_row),
    "HuggingFaceH4/ultrafeedback_binarized": HubSource("preferences", "HuggingFaceH4/ultrafeedback_binarized",
                                                       normalize_ultrafeedback_row,
                                                       splits={"train": "train_prefs", "test": "test_prefs"}),
}


def _pool_size(task: str, profile: Profile) -> int:
    """Rows a task uses for train + validation (test adds ``n_eval``)."""
    sizes = {"math": profile.n_math, "countdown": profile.n_countdown, "warmstart": profile.n_countdown + profile.n_math,
             "instructions": profile.n_instructions, "preferences": profile.n_preferences}
    return sizes[task]


def _read_hub(task: str, source: HubSource, course_split: str, limit: int) -> datasets.Dataset:
    """Up to ``limit`` rows (a seeded sample) of one source split, normalized and validated."""
    hub_split = source.splits[course_split]
    raw = datasets.load_dataset(source.path, source.name, data_files=source.data_files, split=hub_split)
    order = np.random.default_rng(DEFAULT_SEED).permutation(len(raw))[:limit]
    raw = raw.select(order)
    schema = SCHEMAS[task]

    def convert(row: dict, index: int) -> dict:
        where = f"{source.path} [{hub_split}] row {int(order[index])}"
        try:
            out = source.normalize(row)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        _validate_row(out, schema, where)
        return out

    return raw.map(convert, with_indices=True, remove_columns=raw.column_names, features=FEATURES[task],
                   desc=f"normalizing {source.path}")


def _load_hub(task: str, source: HubSource, profile: Profile, split: str) -> datasets.Dataset:
    if source.task != task:
        raise ValueError(f"{source.path} holds {source.task} rows, not {task} rows")
    pool = _pool_size(task, profile)
    if split in source.splits and (split != "train" or "validation" in source.splits):
        return _read_hub(task, source, split, profile.n_eval if split == "test" else pool)
    if "train" not in source.splits:
        raise ValueError(f"{source.path} has no {split!r} split and no train split to carve one from "
                         f"(it has {sorted(source.splits)})")
    parts = train_validation_split(_read_hub(task, source, "train", pool))
    if split == "test":  # no test split at the source: evaluate on the held-out validation rows
        return parts["validation"].select(range(min(profile.n_eval, len(parts["validation"]))))
    return parts[split]


# --------------------------------------------------------------------------------------------
# Offline rows (tiny, cpu)
# --------------------------------------------------------------------------------------------


def _three_way(items: list, pool_size: int) -> dict[str, list]:
    """The first ``pool_size`` items split 90/10 into train/validation; the rest are the test split."""
    pool = items[:pool_size]
    train_idx, val_idx = _split_indices(len(pool), DEFAULT_SEED, VALIDATION_FRACTION)
    return {"train": [pool[i] for i in train_idx], "validation": [pool[i] for i in val_idx], "test": items[pool_size:]}


def _interleave(*lists: list) -> list:
    return [x for x in chain.from_iterable(zip_longest(*lists)) if x is not None]


def _offline_rows(task: str, profile: Profile) -> dict[str, list[dict]]:
    """Every split of an offline task, generated with the course seed."""
    n_eval = profile.n_eval
    if task == "countdown":
        return _three_way(make_countdown(profile.n_countdown + n_eval, seed=DEFAULT_SEED), profile.n_countdown)
    if task in ("math", "warmstart"):
        problems = _three_way(_math_problems(profile.n_math + n_eval, seed=DEFAULT_SEED), profile.n_math)
        if task == "math":
            return {split: [p.row() for p in items] for split, items in problems.items()}
        countdown = _offline_rows("countdown", profile)
        return {
            split: _interleave(
                [{"messages": [_message("user", countdown_prompt(r["nums"], r["target"])),
                               _message("assistant", countdown_trace(r["nums"], r["target"]))], "task": "countdown"}
                 for r in countdown[split]],
                [{"messages": [_message("user", math_prompt(p.question)), _message("assistant", _math_trace(p))],
                  "task": "math"} for p in problems[split]],
            )
            for split in SPLITS
        }
    # instructions and preferences draw from one pool of distinct prompts, so the two never share one
    n_ins, n_pref = profile.n_instructions + n_eval, profile.n_preferences + n_eval
    examples = make_instruction_examples(n_ins + n_pref, seed=DEFAULT_SEED)
    if task == "instructions":
        return {split: [{"messages": [_message("user", e["prompt"]), _message("assistant", e["chosen"])],
                         "constraints": e["constraints"]} for e in items]
                for split, items in _three_way(examples[:n_ins], profile.n_instructions).items()}
    if task == "preferences":
        return {split: [{"prompt": [_message("user", e["prompt"])], "chosen": [_message("assistant", e["chosen"])],
                         "rejected": [_message("assistant", e["rejected"])], "constraints": e["constraints"]}
                        for e in items]
                for split, items in _three_way(examples[n_ins:], profile.n_preferences).items()}
    raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")


def _write_jsonl(path: Path, parts: Mapping[str, list[dict]]) -> None:
    """Overwrite ``path`` with one JSON line per row (``split`` first); written to a temporary file
    and renamed, so a reader never sees half a file and re-running never appends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for split, rows in parts.items():
            for row in rows:
                f.write(json.dumps({"split": split, **row}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _load_offline(task: str, profile: Profile, split: str) -> datasets.Dataset:
    parts = _offline_rows(task, profile)
    for name, rows in parts.items():
        validate_rows(rows, SCHEMAS[task], source=f"{task} [{name}]")
    _write_jsonl(profile.data_dir("generated") / f"{task}.jsonl", parts)
    return datasets.Dataset.from_list(parts[split], features=FEATURES[task])


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------


def _load(task: str, profile: str | Profile | None, split: str, source: str | HubSource) -> datasets.Dataset:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    if profile.name != "gpu":
        return _load_offline(task, profile, split)
    if isinstance(source, str):
        if source not in HUB_SOURCES:
            raise ValueError(f"unknown Hub source {source!r}; known: {sorted(HUB_SOURCES)}")
        source = HUB_SOURCES[source]
    return _load_hub(task, source, profile, split)


def load_math(profile: str | Profile | None = None, split: str = "train",
              source: str | HubSource = "openai/gsm8k") -> datasets.Dataset:
    """Math problems (``prompt``, ``solution``, ``answer``, ``difficulty``). ``gpu``: GSM8K by default;
    also ``AI-MO/NuminaMath-TIR``, ``open-r1/OpenR1-Math-220k`` and, for ``split="test"``,
    ``HuggingFaceH4/MATH-500``. Offline: generated word problems."""
    return _load("math", profile, split, source)


def load_countdown(profile: str | Profile | None = None, split: str = "train",
                   source: str | HubSource = "Jiayi-Pan/Countdown-Tasks-3to4") -> datasets.Dataset:
    """Countdown problems (``nums``, ``target``). ``gpu``: TinyZero's Countdown-Tasks-3to4;
    offline: ``make_countdown`` problems, all solvable."""
    return _load("countdown", profile, split, source)


def load_warmstart(profile: str | Profile | None = None, split: str = "train",
                   source: str | HubSource = "Asap7772/cog_behav_all_strategies") -> datasets.Dataset:
    """Warm-start SFT conversations (``messages``, ``task``) whose assistant turn is a reasoning trace in
    ``<think>...</think>\\n<answer>...</answer>`` form. ``gpu``: cog_behav_all_strategies (or
    Bespoke-Stratos-17k); offline: Countdown search traces and math worked traces, alternating, for the
    problems of the same split of ``load_countdown`` and ``load_math``."""
    return _load("warmstart", profile, split, source)


def load_instructions(profile: str | Profile | None = None, split: str = "train",
                      source: str | HubSource = "HuggingFaceTB/smol-smoltalk") -> datasets.Dataset:
    """Instruction-following conversations (``messages``, ``constraints``). ``gpu``: smol-smoltalk
    (no constraints); offline: prompts with checkable constraints and answers that satisfy them."""
    return _load("instructions", profile, split, source)


def load_preferences(profile: str | Profile | None = None, split: str = "train",
                     source: str | HubSource = "HuggingFaceH4/ultrafeedback_binarized") -> datasets.Dataset:
    """Conversational preference pairs (``prompt``, ``chosen``, ``rejected``, ``constraints``).
    ``gpu``: UltraFeedback binarized; offline: ``chosen`` satisfies the prompt's constraints and
    ``rejected`` breaks one (prompts distinct from ``load_instructions``')."""
    return _load("preferences", profile, split, source)


_LOADERS: dict[str, Callable[..., datasets.Dataset]] = {
    "math": load_math, "countdown": load_countdown, "warmstart": load_warmstart,
    "instructions": load_instructions, "preferences": load_preferences,
}


def load_task(task: str, profile: str | Profile | None = None, split: str = "train",
              source: str | HubSource | None = None) -> datasets.Dataset:
    """Load one task of the data table (``TASKS``) for a profile and split; ``source`` overrides the
    task's default Hub source (``gpu`` only)."""
    if task not in _LOADERS:
        raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")
    kwargs = {} if source is None else {"source": source}
    return _LOADERS[task](profile, split, **kwargs)
