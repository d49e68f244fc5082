r"""Reward functions: answer extraction, math accuracy, format, Countdown, length, repetition, instructions.

Every reward here works two ways:

* directly on a string: ``format_reward("<think>..</think><answer>7</answer>")`` -> ``[1.0]``
  (a bare string, or one conversational completion, is a batch of one);
* as a TRL ``reward_funcs`` entry: TRL calls ``f(prompts=..., completions=..., completion_ids=...,
  trainer_state=..., log_extra=..., log_metric=..., **dataset_columns)`` and expects one float per
  completion. Completions may be plain strings or conversational ``[{"role": "assistant", "content": ...}]``.

Gold answers come from the dataset columns of the course schema: ``answer`` for math (or, when a row
only has ``solution``, the answer extracted from it), ``target`` and ``nums`` for Countdown,
``constraints`` for instruction following. A missing column is a wiring mistake and raises
``ValueError``; anything a model can write (any string at all) never raises and is scored in bounded time.

Rewards and their ranges
------------------------
- ``math_accuracy_reward``: the final answer equals ``answer``. {0.0, 1.0}
- ``format_reward``: ``<think>..</think>`` then ``<answer>..</answer>`` and nothing else. {0.0, 1.0}
- ``tag_count_reward``: 0.25 per tag that appears exactly once. {0, 0.25, 0.5, 0.75, 1.0}
- ``reasoning_steps_reward``: 0.5 * min(1, steps / 3) + 0.5 * (an equation is shown). [0.0, 1.0]
- ``cosine_length_reward``: correctness scaled by length on a cosine. [min_value_wrong, max_value_correct],
  [-1.0, 1.0] by default
- ``repetition_penalty_reward``: share of repeated word n-grams times ``max_penalty``. [max_penalty, 0.0],
  [-1.0, 0.0] by default
- ``countdown_reward_func``: 0.0 no parsable ``<answer>`` equation, 0.1 well-formed but wrong, 1.0 correct.
  {0.0, 0.1, 1.0}
- ``instruction_constraints_reward``: share of the row's constraints satisfied. [0.0, 1.0]

``cosine_length_reward`` and ``repetition_penalty_reward`` take their knobs as keyword arguments;
bind them for TRL with ``functools.partial(cosine_length_reward, max_len=256)`` (TRL names a partial
after the function it wraps).

Answer extraction (``extract_answer``)
--------------------------------------
If the text has a ``</think>`` followed by more text, only that remainder is searched (the final answer
lives after the reasoning). Strategies, most explicit first; within a strategy the *last* match wins:

1. the last ``<answer>...</answer>`` block (its content is searched again with 2-5, else used whole);
2. the last ``\boxed{...}`` / ``\fbox{...}`` (nested braces are balanced);
3. the last "The answer is ..." / "Answer: ..." phrase or GSM8K ``#### ...`` line (whichever comes last);
4. the last variable assignment with a numeric right-hand side, such as ``v_{R}=4`` or ``x = -3``;
5. the last non-empty line (the part after its last ``=``, if any).

Instruction constraints schema (the ``constraints`` column)
----------------------------------------------------------
A dict (or a JSON string of one). Every key is optional; each key present is one constraint, and the
reward is the share of constraints satisfied. An empty response satisfies none. The checked text is the
response after a ``</think>`` (or the ``<answer>`` block, if there is one).

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

Safety
------
Nothing here evaluates model output as code. Countdown equations go through ``evaluate_equation``, a
small recursive-descent parser over integers, ``+ - * /`` and parentheses with bounded length, depth
and magnitude, in exact rational arithmetic. Answers reach math-verify (sympy) only when short and
free of what makes sympy hang (power towers, big exponents or factorials, deep nesting); otherwise the
project's own comparison decides. math-verify's own ``signal.alarm`` timeouts (whole seconds, main thread
only) are switched off (``None``); instead a 0.5 s ``signal.setitimer`` budget bounds it in the main thread,
and in worker threads, where signals are unavailable, the input guards alone bound it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterable
from fractions import Fraction
from typing import Any

__all__ = [
    "extract_answer",
    "extraction_candidates",
    "normalize_answer",
    "answers_match",
    "math_verify_match",
    "is_math_correct",
    "numeric_answer",
    "evaluate_equation",
    "equation_numbers",
    "countdown_reward",
    "has_valid_format",
    "check_instruction_constraints",
    "cosine_length_scale",
    "math_accuracy_reward",
    "format_reward",
    "tag_count_reward",
    "reasoning_steps_reward",
    "cosine_length_reward",
    "repetition_penalty_reward",
    "countdown_reward_func",
    "instruction_constraints_reward",
    "completion_text",
    "count_steps",
    "has_equation",
    "REWARD_FUNCS",
    "CONSTRAINT_KEYS",
]

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Bounds (every one of them is there so that no string a model writes can stall a training step)
# ---------------------------------------------------------------------------------------------
MAX_ANSWER_CHARS = 1_000  # an extracted answer longer than this is cut to its last 1,000 characters
MAX_BOXED_SCAN = 2_000  # characters scanned to balance the braces of one \boxed{...}
MAX_BOXED_TRIES = 20  # \boxed occurrences tried, from the last one backwards
MAX_NUMBER_DIGITS = 100  # longer digit runs are not treated as numbers
MAX_MV_CHARS = 120  # longest answer handed to math-verify
MAX_MV_DEPTH = 4  # deepest bracket nesting handed to math-verify (its LaTeX parser slows sharply past this)
MV_TIME_LIMIT = 0.5  # seconds math-verify may spend on one comparison (main thread)
MAX_EQUATION_CHARS = 256  # Countdown equations: length, tokens, nesting depth, literal size, magnitude
MAX_EQUATION_TOKENS = 128
MAX_EQUATION_DEPTH = 20
MAX_LITERAL_DIGITS = 9
MAX_MAGNITUDE = 10**30
MAX_REPETITION_WORDS = 50_000  # words looked at by the repetition penalty
MAX_STEP_LINES = 5_000  # lines looked at by the reasoning-steps reward
MAX_JSON_CHARS = 100_000


# ---------------------------------------------------------------------------------------------
# Completions and columns as TRL passes them
# ---------------------------------------------------------------------------------------------
def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text") or part.get("content") or ""))
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)


def completion_text(completion: Any) -> str:
    """The text of one completion: a string as is; a conversational completion's assistant contents joined."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role", "assistant") == "assistant"]
        chosen = assistant or messages
        return "\n".join(_content_text(m.get("content")) for m in chosen)
    return str(completion)


def _is_single(completions: Any) -> bool:
    """A bare string or one conversational completion (a list of message dicts) is a batch of one."""
    if isinstance(completions, (str, dict)):
        return True
    if isinstance(completions, (list, tuple)) and completions and all(isinstance(m, dict) for m in completions):
        return True
    return False


def _as_list(value: Any) -> Any:
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        try:
            return value.tolist()
        except Exception:  # pragma: no cover - exotic array types
            return value
    return value


def _batch(completions: Any, columns: dict[str, Any], nested: Iterable[str] = ()) -> tuple[list[str], dict[str, list]]:
    """Texts for each completion and, for each named column, one value per completion.

    A column given as a list as long as the batch is per-row; anything else is broadcast to every row.
    Columns named in ``nested`` (such as ``nums``) hold a list per row, so a flat list of scalars is one value.
    """
    single = _is_single(completions)
    items = [completions] if single else list(completions or [])
    texts = [completion_text(c) for c in items]
    n = len(texts)
    out: dict[str, list] = {}
    for name, value in columns.items():
        value = _as_list(value)
        if single:
            out[name] = [value] * n
            continue
        is_rowwise = isinstance(value, (list, tuple)) and len(value) == n
        if is_rowwise and name in nested:
            is_rowwise = all(_is_sequence_like(v) for v in value)
        out[name] = list(value) if is_rowwise else [value] * n
    return texts, out


def _is_sequence_like(v: Any) -> bool:
    v = _as_list(v)
    return isinstance(v, (list, tuple, str))


def _require(name: str, value: Any, func: str) -> None:
    if value is None:
        raise ValueError(f"{func} needs the dataset column `{name}` (pass {name}=..., or keep it in the dataset)")


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[-1], dict):
        return _content_text(prompt[-1].get("content"))
    return ""


def _with_prefill(text: str, prompt: Any) -> str:
    """Put back a ``<think>`` that the prompt pre-filled (an R1-style prompt ending in ``<think>``)."""
    if prompt is None or text.lstrip().startswith("<think>"):
        return text
    if _prompt_text(prompt).rstrip().endswith("<think>"):
        return "<think>" + text
    return text


def _safe(func: Callable[..., float], *args: Any, default: float = 0.0) -> float:
    """A last line of defence: a reward that hits an unexpected error scores ``default`` and logs it."""
    try:
        return float(func(*args))
    except Exception:  # pragma: no cover - every path below is designed not to raise
        logger.exception("reward %s failed; scoring %s", getattr(func, "__name__", func), default)
        return default


# ---------------------------------------------------------------------------------------------
# Answer extraction
# ---------------------------------------------------------------------------------------------
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A match is only "answer is" (the answer follows it), so a second phrase later on the same line
# ("The answer is 18. Wait, ... The answer is 20.") is found too, and the last one wins.
_ANSWER_PHRASE_RE = re.compile(r"\banswer\b[*_]*[ \t]*(?:is\b|:|=)[*_: \t]*", re.IGNORECASE)
MAX_PHRASE_CHARS = 500  # characters read after an answer phrase (to the end of its line at most)
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_NUM_TOKEN = r"-?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)(?:[ \t]*/[ \t]*\d+)?"
_FRAC_TOKEN = r"-?\\[dt]?frac\{-?\d+\}\{\d+\}"
_VARIABLE_RE = re.compile(
    r"(?<![\\\w])[A-Za-z](?:_\{[^{}\n]{1,20}\}|_[A-Za-z0-9])?[ \t]*=[ \t]*\$?[ \t]*("
    + _FRAC_TOKEN
    + "|"
    + _NUM_TOKEN
    + r")(?![\d.]*[ \t]*[-+*/^=\d])(?![\d.]*[A-Za-z(])"  # "y = 3x": 3 is a coefficient, not a value
)
_INLINE_MATH_RE = re.compile(r"\$([^$\n]{1,500})\$")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")


def _balanced_group(text: str, start: int, limit: int = MAX_BOXED_SCAN) -> tuple[str, int] | None:
    """Content of the brace group whose ``{`` is just before ``start``, and the index after its ``}``."""
    depth = 1
    stop = min(len(text), start + limit)
    i = start
    while i < stop:
        ch = text[i]
        if ch == "\\" and i + 1 < stop:  # skip escaped braces such as \{ and \}
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i], i + 1
        i += 1
    return None


def _last_boxed(text: str) -> tuple[int, str] | None:
    """(position, content) of the last ``\\boxed{...}`` whose braces balance."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    for s in reversed(starts[-MAX_BOXED_TRIES:]):
        group = _balanced_group(text, s)
        if group is not None:
            return s, group[0]
    return None


def _last_tag_block(text: str, open_tag: str = "<answer>", close_tag: str = "</answer>") -> str | None:
    end = text.rfind(close_tag)
    if end < 0:
        return None
    start = text.rfind(open_tag, 0, end)
    if start < 0:
        return None
    return text[start + len(open_tag) : end]


def _clean_candidate(candidate: str) -> str:
    """Trim a phrase capture down to the answer: inline math or \\boxed inside it, first sentence only."""
    s = candidate.strip()
    boxed = _last_boxed(s)
    if boxed is not None:
        return boxed[1].strip()
    m = _INLINE_MATH_RE.search(s)
    if m:
        return m.group(1).strip()
    m = _SENTENCE_END_RE.search(s)
    if m:
        s = s[: m.start()]
    s = s.strip().strip("*_").strip()
    s = s.rstrip(".").strip()
    if s.startswith("\\(") and s.endswith("\\)"):
        s = s[2:-2].strip()
    return s


def _phrase_candidates(text: str) -> tuple[int, str] | None:
    """Last 'The answer is ...' / 'Answer: ...' / '#### ...' capture (position, cleaned text)."""
    found: tuple[int, str] | None = None
    # The last phrase wins, so read from the end: whole lines in growing windows (a phrase never spans a
    # line), so a 100,000-line completion costs the scan of its last lines, not of all of it.
    end, window = (len(text), 4096) if "nswer" in text or "NSWER" in text else (0, 0)
    while found is None and end > 0:
        start = 0 if end <= window else text.rfind("\n", 0, end - window) + 1
        for m in reversed(list(_ANSWER_PHRASE_RE.finditer(text, start, end))):
            rest = text[m.end() : m.end() + MAX_PHRASE_CHARS].split("\n", 1)[0]
            if not rest.strip():  # nothing after the phrase on its line ("Answer:" then a line break)
                continue
            cand = _clean_candidate(rest)
            # a phrase like "let me check my answer: first I ..." is prose, not an answer
            if cand and (any(c.isdigit() for c in cand) or len(cand) <= 20):
                found = (m.start(), cand)
                break
        end, window = start, 2 * window
    if "####" in text:
        gsm = None
        for m in _GSM8K_RE.finditer(text):
            gsm = m
        if gsm is not None:
            cand = _clean_candidate(gsm.group(1))
            if cand and (found is None or gsm.start() > found[0]):
                found = (gsm.start(), cand)
    return found


def _last_variable(text: str) -> str | None:
    if "=" not in text:
        return None
    last = None
    for m in _VARIABLE_RE.finditer(text):
        last = m
    return last.group(1).strip() if last else None


def _last_line(text: str) -> str | None:
    stripped = text.rstrip()
    if not stripped:
        return None
    line = stripped[stripped.rfind("\n") + 1 :].strip()
    if "=" in line:
        line = line[line.rfind("=") + 1 :].strip()
    line = line.strip("*_ \t").rstrip(".").strip()
    if line.startswith("$") and line.endswith("$") and len(line) > 1:
        line = line.strip("$").strip()
    return line or None


def _extract(text: str, use_tags: bool) -> str | None:
    if use_tags and "</answer>" in text:
        block = _last_tag_block(text)
        if block is not None and block.strip():
            inner = _extract(block, use_tags=False)
            return inner if inner is not None else block.strip()
    boxed = _last_boxed(text)
    if boxed is not None and boxed[1].strip():
        return boxed[1].strip()
    phrase = _phrase_candidates(text)
    if phrase is not None:
        return phrase[1]
    variable = _last_variable(text)
    if variable is not None:
        return variable
    return _last_line(text)


def _final_part(text: str) -> str:
    close = text.rfind("</think>")
    if close >= 0 and text[close + len("</think>") :].strip():
        return text[close + len("</think>") :]
    return text


def extraction_candidates(text: Any) -> dict[str, str | None]:
    """What each extraction strategy finds on its own, in priority order (``extract_answer`` takes the
    first one that is not ``None``, searching inside an ``<answer>`` block again). For teaching and debugging."""
    text = _final_part(completion_text(text))
    block = _last_tag_block(text)
    boxed = _last_boxed(text)
    phrase = _phrase_candidates(text)
    return {
        "answer_tags": block.strip() if block is not None and block.strip() else None,
        "boxed": boxed[1].strip() if boxed is not None and boxed[1].strip() else None,
        "answer_phrase_or_####": phrase[1] if phrase else None,
        "variable": _last_variable(text),
        "last_line": _last_line(text),
    }


def extract_answer(text: Any) -> str | None:
    r"""The final answer in ``text`` (a string or a completion), or ``None`` if there is none.

    Strategies in order (see the module docstring); within each, the last match wins:
    ``<answer>`` tags, ``\boxed{}`` (nested braces), "The answer is"/"Answer:" or GSM8K ``####``,
    a variable assignment such as ``v_{R}=4``, the last line.

    >>> extract_answer(r"so \boxed{\frac{1}{2}}")
    '\\frac{1}{2}'
    >>> extract_answer("<think>2+2=4</think><answer>4</answer>")
    '4'
    """
    text = completion_text(text)
    if not text or not text.strip():
        return None
    answer = _extract(_final_part(text), use_tags=True)
    if answer is None:
        return None
    answer = answer.strip()
    if len(answer) > MAX_ANSWER_CHARS:
        answer = answer[-MAX_ANSWER_CHARS:]
    return answer or None


# ---------------------------------------------------------------------------------------------
# Normalization and comparison
# ---------------------------------------------------------------------------------------------
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
        num = _balanced_group(s, j + 1)
        if num is None:
            s = s[:i] + s[i + len("\\frac") :]
            continue
        k = num[1]
        while k < len(s) and s[k] == " ":
            k += 1
        den = _balanced_group(s, k + 1) if k < len(s) and s[k] == "{" else None
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
        group = _balanced_group(s, i + len("\\sqrt{"))
        if group is None:
            s = s[:i] + "sqrt(" + s[i + len("\\sqrt{") :]
            continue
        s = s[:i] + f"sqrt({group[0]})" + s[group[1] :]
    return s


def _canonical_number(token: str) -> str | None:
    """``'18.50'`` -> ``'18.5'``, ``'2/4'`` -> ``'1/2'``, ``'-0'`` -> ``'0'``; None if not a plain number."""
    value = _to_fraction(token)
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


def _to_fraction(token: str) -> Fraction | None:
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
    boxed = _last_boxed(s)
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


def _numbers_of(normalized: str) -> list[Fraction] | None:
    single = _to_fraction(normalized)
    if single is not None:
        return [single]
    if ", " in normalized:
        values = [_to_fraction(p) for p in normalized.split(", ")]
        if values and all(v is not None for v in values):
            return values  # type: ignore[return-value]
    return None


def _close(a: Fraction, b: Fraction, rel_tol: float) -> bool:
    """Equal, or within ``rel_tol`` when one of them is not an integer: 1,450,001 is not 1,450,000."""
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False
    try:
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=1e-12)
    except OverflowError:
        return False


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
            return all(_close(a, b, rel_tol) for a, b in zip(sorted(p_nums), sorted(r_nums), strict=True))
        return p.replace(" ", "") == r.replace(" ", "")
    except Exception:  # pragma: no cover - normalization is designed not to raise
        logger.exception("answers_match failed")
        return False


# ---------------------------------------------------------------------------------------------
# math-verify, behind a guard
# ---------------------------------------------------------------------------------------------
_FUNCTION_RE = re.compile(r"\\(?:arc)?(?:sinh?|cosh?|tanh?|sec|csc|cot|log|ln|exp)")
_BANNED_FOR_SYMPY = ("\\sum", "\\prod", "\\int", "\\lim", "\\binom", "\\choose", "**", "\\over", "\\begin")


def _exponent_operand(s: str, i: int) -> tuple[str, int]:
    """The operand of the ``^`` at ``s[i]`` and the index after it."""
    j = i + 1
    while j < len(s) and s[j] == " ":
        j += 1
    if j < len(s) and s[j] == "{":
        group = _balanced_group(s, j + 1, limit=len(s))
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
    boxed = _last_boxed(s)
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
            from math_verify import parse, verify

            half, square = (parse(t, parsing_timeout=None) for t in ("\\boxed{\\frac{1}{2}}", "\\boxed{x^2}"))
            verify(half, square, timeout_seconds=None)
            _MV_LOADED.append(True)


@functools.lru_cache(maxsize=4096)
def _mv_parse(s: str) -> tuple:
    from math_verify import parse

    return tuple(parse("\\boxed{" + s + "}", parsing_timeout=None))


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
        from math_verify import verify

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


def numeric_answer(text: Any) -> Fraction | None:
    """The value of an answer that is one number: an integer, a decimal, a fraction ``a/b``, a percentage or
    a LaTeX number, with units and words stripped (``'$1,234.00'``, ``'18 eggs'``, ``'\\frac{3}{4}'``).
    ``None`` for anything else: arithmetic still to do (``'12*10+20'``), several numbers, a variable, ``5!``."""
    if text is None:
        return None
    return _to_fraction(normalize_answer(str(text)))


def is_math_correct(pred: Any, gold: Any, rel_tol: float = 1e-6) -> bool:
    """Whether ``pred`` answers ``gold``.

    A numeric gold (``numeric_answer(gold)`` is a number) needs a numeric prediction of the same value:
    an unevaluated expression such as ``12*10+20`` for 140 scores 0 (math-verify would evaluate it, and RL
    would learn to echo the question's arithmetic). Integers must match exactly, other numbers within
    ``rel_tol``. Any other gold (an interval, an expression in x) goes to math-verify, then to the
    project's own comparison (units, separators, order-free lists).
    """
    if pred is None or gold is None or not str(gold).strip():
        return False
    gold_value = numeric_answer(gold)
    if gold_value is not None:
        pred_value = numeric_answer(pred)
        return pred_value is not None and _close(pred_value, gold_value, rel_tol)
    if math_verify_match(pred, gold):
        return True
    return answers_match(pred, gold, rel_tol=rel_tol)


def _gold_answers(answer: Any, solution: Any, func: str) -> Any:
    if answer is not None:
        return answer
    if solution is not None:
        return solution
    _require("answer", None, func)


def _gold_of(answer_value: Any, from_solution: bool) -> str | None:
    if answer_value is None:
        return None
    text = str(answer_value)
    return extract_answer(text) if from_solution else text


def _math_score(text: str, gold: str | None) -> float:
    if gold is None or not gold.strip():
        return 0.0
    pred = extract_answer(text)
    return 1.0 if pred is not None and is_math_correct(pred, gold) else 0.0


def math_accuracy_reward(completions: Any, answer: Any = None, solution: Any = None, **kwargs: Any) -> list[float]:
    """1.0 when the completion's final answer (``extract_answer``) equals the gold ``answer``, else 0.0.

    Equality is math-verify's (LaTeX or plain gold answers), with the project's own comparison as a
    second opinion where math-verify cannot parse or misses a form (units, thousands separators).
    Without an ``answer`` column the answer is extracted from ``solution``.
    """
    from_solution = answer is None and solution is not None
    gold = _gold_answers(answer, solution, "math_accuracy_reward")
    texts, cols = _batch(completions, {"gold": gold})
    return [_safe(_math_score, t, _gold_of(g, from_solution)) for t, g in zip(texts, cols["gold"], strict=True)]


# ---------------------------------------------------------------------------------------------
# Format, tags, reasoning steps
# ---------------------------------------------------------------------------------------------
_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


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


def format_reward(completions: Any, prompts: Any = None, **kwargs: Any) -> list[float]:
    """1.0 if ``has_valid_format`` (a ``<think>`` pre-filled at the end of the prompt counts), else 0.0."""
    texts, cols = _batch(completions, {"prompt": prompts})
    return [
        _safe(lambda t, p: 1.0 if has_valid_format(_with_prefill(t, p)) else 0.0, t, p)
        for t, p in zip(texts, cols["prompt"], strict=True)
    ]


def _tag_count(text: str) -> float:
    return sum(0.25 for tag in _TAGS if text.count(tag) == 1)


def tag_count_reward(completions: Any, prompts: Any = None, **kwargs: Any) -> list[float]:
    """0.25 for each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` that appears exactly once.

    Partial credit a model can climb one tag at a time; order is ``format_reward``'s job.
    """
    texts, cols = _batch(completions, {"prompt": prompts})
    pairs = zip(texts, cols["prompt"], strict=True)
    return [_safe(lambda t, p: _tag_count(_with_prefill(t, p)), t, p) for t, p in pairs]


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
    texts, _ = _batch(completions, {})
    return [_safe(_reasoning_steps, t) for t in texts]


# ---------------------------------------------------------------------------------------------
# Length and repetition
# ---------------------------------------------------------------------------------------------
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
    gold = _gold_answers(answer, solution, "cosine_length_reward")
    texts, cols = _batch(completions, {"gold": gold})
    ids = _as_list(completion_ids)
    use_ids = isinstance(ids, (list, tuple)) and len(ids) == len(texts) and not _is_single(completions)
    one_ids = isinstance(ids, (list, tuple)) and ids and not isinstance(_as_list(ids[0]), (list, tuple))
    if _is_single(completions) and one_ids:
        ids, use_ids = [ids], True  # one completion's token ids
    rewards = []
    for i, (text, g) in enumerate(zip(texts, cols["gold"], strict=True)):
        try:
            length = len(_as_list(ids[i])) if use_ids else len(text.split())
        except Exception:
            length = len(text.split())
        correct = _safe(_math_score, text, _gold_of(g, from_solution)) == 1.0
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


def _repetition(text: str, ngram_size: int, max_penalty: float) -> float:
    words = text.lower().split()[:MAX_REPETITION_WORDS]
    if len(words) < ngram_size:
        return 0.0
    ngrams = list(zip(*[words[i:] for i in range(ngram_size)]))
    scaling = 1.0 - len(set(ngrams)) / len(ngrams)
    return scaling * max_penalty if scaling else 0.0


def repetition_penalty_reward(
    completions: Any, ngram_size: int = 3, max_penalty: float = -1.0, **kwargs: Any
) -> list[float]:
    """``(1 - unique n-grams / all n-grams) * max_penalty`` over lower-cased words: 0.0 for text that
    never repeats a ``ngram_size``-word phrase, approaching ``max_penalty`` for a loop. Range ``[max_penalty, 0]``.
    (Demystifying Long CoT, Appendix C.2; TRL's version counts token ids, this one words, so it reads the same
    on a string.)"""
    if max_penalty > 0:
        raise ValueError(f"max_penalty must be <= 0, got {max_penalty}")
    if ngram_size < 1:
        raise ValueError(f"ngram_size must be >= 1, got {ngram_size}")
    texts, _ = _batch(completions, {})
    return [_safe(_repetition, t, ngram_size, max_penalty) for t in texts]


# ---------------------------------------------------------------------------------------------
# Countdown: a safe equation parser
# ---------------------------------------------------------------------------------------------
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


def _countdown_equation(text: str) -> tuple[str, int | None] | None:
    """The equation inside the last ``<answer>`` block and the result it claims after an ``=``, if any."""
    block = _last_tag_block(text)
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
    nums = _as_list(nums)
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
            return _to_fraction(target.strip())
        return Fraction(target)
    except (TypeError, ValueError, OverflowError):
        return None


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


def countdown_reward_func(completions: Any, target: Any = None, nums: Any = None, **kwargs: Any) -> list[float]:
    """``countdown_reward`` for each completion, with ``target`` and ``nums`` from the dataset columns."""
    _require("target", target, "countdown_reward_func")
    _require("nums", nums, "countdown_reward_func")
    texts, cols = _batch(completions, {"target": target, "nums": nums}, nested=("nums",))
    return [countdown_reward(t, g, n) for t, g, n in zip(texts, cols["target"], cols["nums"], strict=True)]


# ---------------------------------------------------------------------------------------------
# Instruction constraints
# ---------------------------------------------------------------------------------------------
_BULLET_RE = re.compile(r"(?m)^[ \t]*[-*•][ \t]+\S")
_FENCE_RE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)```", re.DOTALL)


def _response_part(text: str) -> str:
    block = _last_tag_block(text)
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
    return sum(1 for token in text.split() if any(c.isalnum() for c in token))


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


def instruction_constraints_reward(completions: Any, constraints: Any = None, **kwargs: Any) -> list[float]:
    """``check_instruction_constraints`` for each completion, with the ``constraints`` column (dict or JSON)."""
    _require("constraints", constraints, "instruction_constraints_reward")
    texts, cols = _batch(completions, {"constraints": constraints})
    return [_safe(check_instruction_constraints, t, c) for t, c in zip(texts, cols["constraints"], strict=True)]


#: every TRL-style reward of this module, by name (for tables and for picking rewards in configs)
REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "math_accuracy_reward": math_accuracy_reward,
    "format_reward": format_reward,
    "tag_count_reward": tag_count_reward,
    "reasoning_steps_reward": reasoning_steps_reward,
    "cosine_length_reward": cosine_length_reward,
    "repetition_penalty_reward": repetition_penalty_reward,
    "countdown_reward_func": countdown_reward_func,
    "instruction_constraints_reward": instruction_constraints_reward,
}
