"""Answer normalization and comparison: is ``'$1,234.00'`` the same answer as ``1234``?

``numeric_answer`` reads an answer that is one number (an integer, a decimal, a fraction, a percentage, a LaTeX
number, units and words stripped) and refuses anything else: arithmetic still to do, several numbers, ``5!``.
``normalize_answer`` and ``answers_match`` are the course's own comparison for everything else (LaTeX to plain
text, thousands separators, order-free lists), the second opinion beside math-verify.
"""

from __future__ import annotations

import logging
import math
import re
from fractions import Fraction
from typing import Any

from .calling import completion_text
from .extraction import balanced_group, last_boxed
from .limits import MAX_ANSWER_CHARS, MAX_NUMBER_DIGITS

logger = logging.getLogger(__name__)


def numeric_answer(text: Any) -> Fraction | None:
    """The value of an answer that is one number: an integer, a decimal, a fraction ``a/b``, a percentage or
    a LaTeX number, with units and words stripped (``'$1,234.00'``, ``'18 eggs'``, ``'\\frac{3}{4}'``).
    ``None`` for anything else: arithmetic still to do (``'12*10+20'``), several numbers, a variable, ``5!``."""
    if text is None:
        return None
    return to_fraction(normalize_answer(str(text)))


def normalize_answer(text: Any) -> str:
    r"""A canonical string for an answer: numbers, units, thousands separators and LaTeX normalized.

    ``'\\$1,234.50'`` -> ``'1234.5'``; ``'\\dfrac{1}{2}'`` -> ``'1/2'``; ``'18 eggs'`` -> ``'18'``;
    ``'x = 3 or x = 5'`` -> ``'3, 5'``; ``'\\text{(B)}'`` -> ``'(b)'``; ``None`` -> ``''``.
    """
    if text is None:
        return ""
    s = completion_text(text) if not isinstance(text, str) else text
    if len(s) > MAX_ANSWER_CHARS * 10:
        s = s[-MAX_ANSWER_CHARS * 10 :]
    s = _latex_to_plain(s)
    if not s:
        return ""
    if "=" in s:
        stripped = _ASSIGN_PREFIX_RE.sub("", s, count=1)
        if "=" not in stripped:
            s = stripped.strip()
    canonical = _canonical_number(s)
    if canonical is not None:
        return canonical
    listed = _number_list(s[1:-1] if _looks_like_set(s) else s)
    if listed is not None:
        parts = [_canonical_number(x) for x in listed]
        if all(p is not None for p in parts):
            return ", ".join(parts)  # type: ignore[arg-type]
    word_free = _strip_words(s)
    if word_free is not None:
        canonical = _canonical_number(word_free)
        if canonical is not None:
            return canonical
    return s


def answers_match(pred: Any, ref: Any, rel_tol: float = 1e-6) -> bool:
    """Whether two answers agree: numerically (relative tolerance ``rel_tol``), as order-free lists of
    numbers, or as normalized strings. ``None`` or an empty answer never matches.

    >>> answers_match("1,234", "1234"), answers_match("5, 3", "3 and 5"), answers_match("0.5", r"\\frac{1}{2}")
    (True, True, True)
    """
    if pred is None or ref is None:
        return False
    try:
        p, r = normalize_answer(str(pred)), normalize_answer(str(ref))
        if not p or not r:
            return False
        if p == r:
            return True
        p_nums, r_nums = _numbers_of(p), _numbers_of(r)
        if p_nums is not None and r_nums is not None:
            if len(p_nums) != len(r_nums):
                return False
            return all(numbers_close(a, b, rel_tol) for a, b in zip(sorted(p_nums), sorted(r_nums), strict=True))
        return p.replace(" ", "") == r.replace(" ", "")
    except Exception:  # pragma: no cover - normalization is designed not to raise
        logger.exception("answers_match failed")
        return False


_NUMBER_RE = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)(?:/\d+(?:\.\d+)?)?")
_THOUSANDS_RE = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+)(?![\d,]|\.\d*,)")
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}")
_PAREN_NUM_RE = re.compile(r"(?<![a-z0-9_)])\((-?\d+(?:\.\d+)?)\)")
_ASSIGN_PREFIX_RE = re.compile(r"^[a-z](?:_\{?[a-z0-9]{1,20}\}?)?\s*=\s*")
_ASSIGN_ANY_RE = re.compile(r"(?<![a-z0-9])[a-z](?:_\{?[a-z0-9]{1,20}\}?)?\s*=\s*")
_LIST_SEPARATORS_RE = re.compile(r"^(?:[\s,;{}]|\band\b|\bor\b)*$")
_WORDS_ONLY_RE = re.compile(r"^[a-z\s.,:;!?'\"*]*$")
_LATEX_REPLACEMENTS = [
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\left", ""),
    ("\\right", ""),
    ("\\!", ""),
    ("\\,", ""),
    ("\\;", ""),
    ("\\:", ""),
    ("\\qquad", " "),
    ("\\quad", " "),
    ("\\displaystyle", ""),
    ("^{\\circ}", ""),
    ("^\\circ", ""),
    ("\\circ", ""),
    ("°", ""),
    ("\\%", ""),
    ("%", ""),
    ("\\$", ""),
    ("$", ""),
    ("\\(", ""),
    ("\\)", ""),
    ("\\[", ""),
    ("\\]", ""),
    ("\\{", "{"),
    ("\\}", "}"),
    ("{,}", ","),
    ("\\cdot", "*"),
    ("\\times", "*"),
    ("\\div", "/"),
    ("\\pi", "pi"),
    ("\\infty", "inf"),
    ("−", "-"),
    ("–", "-"),
    ("~", " "),
]


def _replace_fracs(s: str, rounds: int = 50) -> str:
    """``\\frac{a}{b}`` -> ``(a)/(b)``, innermost and nested ones included (bounded number of rewrites)."""
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"(\1)/(\2)", s)  # \frac12
    for _ in range(rounds):
        i = s.rfind("\\frac")  # the last one is never an outer frac of an unrewritten inner one
        if i < 0:
            break
        j = i + len("\\frac")
        while j < len(s) and s[j] == " ":
            j += 1
        if j >= len(s) or s[j] != "{":
            s = s[:i] + s[i + len("\\frac") :]
            continue
        num = balanced_group(s, j + 1)
        if num is None:
            s = s[:i] + s[i + len("\\frac") :]
            continue
        k = num[1]
        while k < len(s) and s[k] == " ":
            k += 1
        den = balanced_group(s, k + 1) if k < len(s) and s[k] == "{" else None
        if den is None:
            s = s[:i] + s[i + len("\\frac") :]
            continue
        s = s[:i] + f"({num[0]})/({den[0]})" + s[den[1] :]
    return s


def _replace_sqrt(s: str, rounds: int = 50) -> str:
    for _ in range(rounds):
        i = s.rfind("\\sqrt{")
        if i < 0:
            break
        group = balanced_group(s, i + len("\\sqrt{"))
        if group is None:
            s = s[:i] + "sqrt(" + s[i + len("\\sqrt{") :]
            continue
        s = s[:i] + f"sqrt({group[0]})" + s[group[1] :]
    return s


def _canonical_number(token: str) -> str | None:
    """``'18.50'`` -> ``'18.5'``, ``'2/4'`` -> ``'1/2'``, ``'-0'`` -> ``'0'``; None if not a plain number."""
    value = to_fraction(token)
    if value is None:
        return None
    if "/" in token:
        return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    if value.denominator == 1:
        return str(value.numerator)
    text = token.lstrip("+")
    negative = text.startswith("-")
    text = text.lstrip("-")
    if "." in text:
        whole, frac = text.split(".", 1)
        whole = whole.lstrip("0") or "0"
        frac = frac.rstrip("0")
        text = whole + ("." + frac if frac else "")
    return ("-" if negative and value != 0 else "") + text


def to_fraction(token: str) -> Fraction | None:
    token = token.strip().replace(" ", "")
    if not token or sum(c.isdigit() for c in token) > MAX_NUMBER_DIGITS:
        return None
    if not _NUMBER_RE.fullmatch(token):
        return None
    try:
        if "/" in token:
            num, den = token.split("/", 1)
            den_value = Fraction(den)
            if den_value == 0:
                return None
            return Fraction(num) / den_value
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _latex_to_plain(s: str) -> str:
    s = s.strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed[1]
    for old, new in _LATEX_REPLACEMENTS:
        if old in s:
            s = s.replace(old, new)
    for _ in range(3):
        s2 = _TEXT_CMD_RE.sub(r" \1 ", s)
        if s2 == s:
            break
        s = s2
    s = _replace_fracs(s)
    s = _replace_sqrt(s)
    s = _THOUSANDS_RE.sub(lambda m: m.group(1).replace(",", ""), s)
    s = s.replace("{", "").replace("}", "") if not _looks_like_set(s) else s
    s = s.lower()
    s = re.sub(r"\s+", " ", s).strip()
    for _ in range(5):
        s2 = _PAREN_NUM_RE.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = s.replace("--", "")  # -(-1)/(2) style double signs collapse
    return s.strip().rstrip(".").strip()


def _looks_like_set(s: str) -> bool:
    t = s.strip()
    return t.startswith("{") and t.endswith("}") and "," in t


def _number_list(s: str) -> list[str] | None:
    """The numbers of ``s`` if ``s`` is only numbers and separators (``3, 5``, ``x=3 or x=5``, ``{3, 5}``)."""
    body = _ASSIGN_ANY_RE.sub(" ", s)
    numbers = list(_NUMBER_RE.finditer(body))
    if len(numbers) < 2:
        return None
    rest = _NUMBER_RE.sub(" ", body)
    if not _LIST_SEPARATORS_RE.fullmatch(rest):
        return None
    # "3-5" is a subtraction, not the list [3, -5]: a minus right after a number is an operator
    for prev, nxt in zip(numbers, numbers[1:], strict=False):
        if nxt.group(0).startswith("-") and prev.end() == nxt.start():
            return None
    return [m.group(0) for m in numbers]


# Words that are mathematics, not units: "288 pi" is not 288.
_MATH_WORDS = frozenset({"pi", "inf", "sqrt", "ln", "log", "exp", "sin", "cos", "tan", "mod"})


def _strip_words(s: str) -> str | None:
    """``'18 eggs'`` / ``'about 18'`` -> ``'18'`` when the rest is words; None otherwise (``'5x'``, ``'5!'``,
    ``'288 pi'`` and ``'3 x'`` stay: a factorial, a constant and a lone letter are mathematics, not units)."""
    numbers = list(_NUMBER_RE.finditer(s))
    if len(numbers) != 1:
        return None
    m = numbers[0]
    prefix, suffix = s[: m.start()], s[m.end() :]
    if not (_WORDS_ONLY_RE.fullmatch(prefix) and _WORDS_ONLY_RE.fullmatch(suffix)):
        return None
    if suffix.lstrip(" ").startswith("!"):  # 5! is a factorial
        return None
    prefix_words, suffix_words = re.findall(r"[a-z]+", prefix), re.findall(r"[a-z]+", suffix)
    if any(w in _MATH_WORDS for w in prefix_words + suffix_words):
        return None
    # a lone letter is a variable ("3 x"); only the article "a" may stand before the number ("a total of 18")
    if any(len(w) == 1 for w in suffix_words) or any(len(w) == 1 and w != "a" for w in prefix_words):
        return None
    # a letter glued to the number is a variable ("5x", "x5"), not a unit
    if suffix[:1].isalpha() and len(re.match(r"[a-z]*", suffix).group(0)) < 2:
        return None
    if prefix[-1:].isalpha():  # "sqrt2", "x5": a name glued to the number
        return None
    if not any(c.isalpha() for c in prefix + suffix) and (prefix + suffix).strip(" .,:;!?'\"*"):
        return None
    return m.group(0)


def _numbers_of(normalized: str) -> list[Fraction] | None:
    single = to_fraction(normalized)
    if single is not None:
        return [single]
    if ", " in normalized:
        values = [to_fraction(p) for p in normalized.split(", ")]
        if values and all(v is not None for v in values):
            return values  # type: ignore[return-value]
    return None


def numbers_close(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    """Equal, or within ``rel_tol`` when one of them is not an integer: 1,450,001 is not 1,450,000."""
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False
    try:
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=1e-12)
    except OverflowError:
        return False


