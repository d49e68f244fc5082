"""math-verify, guarded: its verdict only on inputs that cannot hang sympy, within a time budget.

Answers reach math-verify (sympy) only when short and free of what makes sympy hang (power towers, big
exponents or factorials, deep nesting); otherwise ``math_verify_match`` returns ``None`` and the course's own
comparison decides. math-verify's own ``signal.alarm`` timeouts (whole seconds, main thread only) are switched
off; instead a 0.5 s ``signal.setitimer`` budget bounds it in the main thread, and in worker threads, where
signals are unavailable, the input guards alone bound it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
from typing import Any

from .extraction import balanced_group, last_boxed
from .limits import MAX_MV_CHARS, MAX_MV_DEPTH, MAX_NUMBER_DIGITS, MV_TIME_LIMIT

logger = logging.getLogger(__name__)


def math_verify_match(pred: Any, gold: Any) -> bool | None:
    """math-verify's verdict on ``pred`` against ``gold`` (``verify(gold, pred)``, in that order), or
    ``None`` when it cannot judge: an answer it cannot parse, one the guard keeps away from sympy, an
    error, or a run past ``MV_TIME_LIMIT`` seconds (enforced in the main thread)."""
    if pred is None or gold is None:
        return None
    p, g = _mv_prepare(str(pred)), _mv_prepare(str(gold))
    if not _safe_for_sympy(p) or not _safe_for_sympy(g):
        return None
    try:
        _load_math_verify()
        from math_verify import verify  # imported late: loading sympy costs seconds a reward call should not

        with _time_limit(MV_TIME_LIMIT):
            gold_parsed = _mv_parse(g)
            pred_parsed = _mv_parse(p)
            if not gold_parsed or not pred_parsed:
                return None
            return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=None))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - _Deadline, math-verify's TimeoutException, sympy errors
        logger.debug("math-verify could not judge %r vs %r: %r", pred, gold, exc)
        return None


_FUNCTION_RE = re.compile(r"\\(?:arc)?(?:sinh?|cosh?|tanh?|sec|csc|cot|log|ln|exp)")
_BANNED_FOR_SYMPY = ("\\sum", "\\prod", "\\int", "\\lim", "\\binom", "\\choose", "**", "\\over", "\\begin")


def _exponent_operand(s: str, i: int) -> tuple[str, int]:
    """The operand of the ``^`` at ``s[i]`` and the index after it."""
    j = i + 1
    while j < len(s) and s[j] == " ":
        j += 1
    if j < len(s) and s[j] == "{":
        group = balanced_group(s, j + 1, limit=len(s))
        if group is None:
            return s[j:], len(s)
        return group[0], group[1]
    if j < len(s) and s[j] == "(":
        depth, k = 0, j
        while k < len(s):
            depth += s[k] == "("
            depth -= s[k] == ")"
            k += 1
            if depth == 0:
                break
        return s[j:k], k
    if j < len(s) and s[j].isdigit():
        k = j
        while k < len(s) and s[k].isdigit():
            k += 1
        return s[j:k], k
    if j < len(s) and s[j] == "\\":
        m = re.match(r"\\[a-zA-Z]+", s[j:])
        k = j + (m.end() if m else 1)
        return s[j:k], k
    return s[j : j + 1], j + 1


def _safe_for_sympy(s: str) -> bool:
    """Only short, shallow answers without power towers, big exponents or factorials reach sympy."""
    if not s or len(s) > MAX_MV_CHARS:
        return False
    if any(b in s for b in _BANNED_FOR_SYMPY):
        return False
    depth = 0
    for ch in s:
        if ch in "({[":
            depth += 1
            if depth > MAX_MV_DEPTH:
                return False
        elif ch in ")}]":
            depth = max(0, depth - 1)
    if s.count("^") > 2 or len(_FUNCTION_RE.findall(s)) > 2:  # nested sin/tan/log make verify crawl
        return False
    i = s.find("^")
    while i >= 0:
        operand, end = _exponent_operand(s, i)
        if "^" in operand or "!" in operand or len(operand) > 8:
            return False
        if sum(c.isdigit() for c in operand) > 2:  # exponents up to 99
            return False
        rest = s[end:].lstrip()
        if rest.startswith("^"):  # a^b^c
            return False
        i = s.find("^", end)
    for m in re.finditer(r"!", s.replace("\\!", "")):
        before = s.replace("\\!", "")[: m.start()]
        digits = re.search(r"(\d+)$", before)
        if digits is None or len(digits.group(1)) > 2:  # 99! at most, and only of a literal
            return False
    if any(len(run) > MAX_NUMBER_DIGITS for run in re.findall(r"\d+", s)):
        return False
    return True


def _mv_prepare(s: str) -> str:
    """Strip what math-verify misreads: answer tags and a ``\\boxed`` wrapper (we add our own)."""
    s = s.replace("<answer>", " ").replace("</answer>", " ").strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed[1].strip()
    if len(s) > 1 and s.startswith("$") and s.endswith("$"):
        s = s.strip("$").strip()
    return s


class _Deadline(BaseException):
    """Raised by the SIGALRM handler when math-verify runs past its time budget (BaseException, so that
    the ``except Exception`` blocks inside math-verify and sympy cannot swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    """A sub-second wall-clock limit (``signal.setitimer``) in the main thread; a no-op elsewhere.

    math-verify's own timeouts use ``signal.alarm``, whole seconds only, so we pass it ``None`` and bound
    the time here. The timer re-fires every 50 ms until disarmed, in case a bare ``except`` swallows one.
    It stays out of the way of an outer timer already running (then only the input guards apply).
    """
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
    if not usable:
        yield
        return
    armed = [True]

    def on_alarm(signum, frame):  # noqa: ARG001
        if armed[0]:
            raise _Deadline()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


class _NoTimeoutWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutWarning())


_MV_READY = threading.Lock()
_MV_LOADED: list = []


def _load_math_verify() -> None:
    """Import math-verify and run one parse, outside any time budget: the first call loads sympy and builds
    the LaTeX parser (a second or more on a busy CPU), which must not count against the first answer."""
    if _MV_LOADED:
        return
    with _MV_READY:
        if not _MV_LOADED:
            from math_verify import parse, verify  # the first, slow import, outside any time budget

            half, square = (parse(t, parsing_timeout=None) for t in ("\\boxed{\\frac{1}{2}}", "\\boxed{x^2}"))
            verify(half, square, timeout_seconds=None)
            _MV_LOADED.append(True)


@functools.lru_cache(maxsize=4096)
def _mv_parse(s: str) -> tuple:
    from math_verify import parse  # after _load_math_verify, so this import is free

    return tuple(parse("\\boxed{" + s + "}", parsing_timeout=None))


