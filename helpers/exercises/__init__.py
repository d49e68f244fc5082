"""Checkers for the notebooks' write-a-function exercises, one module per notebook (``chNN``), each with a
``check_NN_<name>(fn)``: it runs the learner's function on a few cases and prints, for every failing case,
the call, the expected and the actual value. The learner's code raising is a failing case, not a crash."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any


def run_cases(
    fn: Callable, cases: Iterable[tuple[str, Any, Any]], success: str, agree: Callable[[Any, Any], bool] | None = None
) -> bool:
    """Call ``fn`` on each case ``(name, arguments, expected)`` (``arguments``: a dict of keyword arguments or
    a tuple of positional ones, copied so the learner's code cannot change the cases); a case passes when
    ``agree(actual, expected)`` (default ``==``). Prints one ``FAIL`` line per failing case, or ``success``
    when none fails; returns whether all passed."""
    fn_name = getattr(fn, "__name__", type(fn).__name__)
    cases = list(cases)
    failures = 0
    for name, arguments, expected in cases:
        args, kwargs = ((), arguments) if isinstance(arguments, dict) else (tuple(arguments), {})
        call = ", ".join([repr(a) for a in args] + [f"{key}={value!r}" for key, value in kwargs.items()])
        try:
            actual = fn(*copy.deepcopy(args), **copy.deepcopy(kwargs))
            passed = bool(agree(actual, expected)) if agree else bool(actual == expected)
            shown = repr(actual)
        except Exception as err:  # the learner's code raising is a failing case, not a crash of the checker
            passed, shown = False, f"raised {type(err).__name__}: {err}"
        if not passed:
            failures += 1
            print(f"FAIL {name}: {fn_name}({call}) should be {expected!r}, got {shown}")
    if not failures:
        print(f"All {len(cases)} cases pass: {success}")
    return failures == 0
