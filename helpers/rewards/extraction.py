r"""Answer extraction: where in a completion the final answer is.

If the text has a ``</think>`` followed by more text, only that remainder is searched (the final answer
lives after the reasoning). Strategies, most explicit first; within a strategy the *last* match wins:

1. the last ``<answer>...</answer>`` block (its content is searched again with 2-5, else used whole);
2. the last ``\boxed{...}`` / ``\fbox{...}`` (nested braces are balanced);
3. the last "The answer is ..." / "Answer: ..." phrase or GSM8K ``#### ...`` line (whichever comes last);
4. the last variable assignment with a numeric right-hand side, such as ``v_{R}=4`` or ``x = -3``;
5. the last non-empty line (the part after its last ``=``, if any).
"""

from __future__ import annotations

import re
from typing import Any

from .calling import completion_text
from .limits import MAX_ANSWER_CHARS, MAX_BOXED_SCAN, MAX_BOXED_TRIES, MAX_PHRASE_TRIES


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


def extraction_candidates(text: Any) -> dict[str, str | None]:
    """What each extraction strategy finds on its own, in priority order (``extract_answer`` takes the
    first one that is not ``None``, searching inside an ``<answer>`` block again). For teaching and debugging."""
    text = _final_part(completion_text(text))
    block = last_tag_block(text)
    boxed = last_boxed(text)
    phrase = _phrase_candidates(text)
    return {
        "answer_tags": block.strip() if block is not None and block.strip() else None,
        "boxed": boxed[1].strip() if boxed is not None and boxed[1].strip() else None,
        "answer_phrase_or_####": phrase[1] if phrase else None,
        "variable": _last_variable(text),
        "last_line": _last_line(text),
    }


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A match is only "answer is" (the answer follows it), so a second phrase later on the same line
# ("The answer is 18. Wait, ... The answer is 20.") is found too, and the last one wins.
_ANSWER_PHRASE_RE = re.compile(r"\banswer\b[*_]*[ \t]*(?:is\b|:|=)[*_: \t]*", re.IGNORECASE)
MAX_PHRASE_CHARS = 500  # characters read after an answer phrase (to the end of its line at most)
_PHRASE_OVERLAP = 64  # longer than any match of _ANSWER_PHRASE_RE short of a run of spaces
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


def balanced_group(text: str, start: int, limit: int = MAX_BOXED_SCAN) -> tuple[str, int] | None:
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


def last_boxed(text: str) -> tuple[int, str] | None:
    """(position, content) of the last ``\\boxed{...}`` whose braces balance."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    for s in reversed(starts[-MAX_BOXED_TRIES:]):
        group = balanced_group(text, s)
        if group is not None:
            return s, group[0]
    return None


def last_tag_block(text: str, open_tag: str = "<answer>", close_tag: str = "</answer>") -> str | None:
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
    boxed = last_boxed(s)
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
    # line), so a 100,000-line completion costs the scan of its last lines, not of all of it; and at most
    # MAX_PHRASE_TRIES phrases are tried, so 100,000 empty "Answer:" lines cost 100 tries, not 100,000.
    # A single long line is read in pieces of at most 2 * window characters, each overlapping the piece after
    # it by a phrase's length, so one 1.4 MB line of "The answer is " makes a few hundred match objects, not
    # 100,000 (each allocation can trigger the garbage collector, whose cost grows with a trainer's heap).
    end, window = (len(text), 4096) if "nswer" in text or "NSWER" in text else (0, 0)
    tries = 0
    while found is None and end > 0 and tries < MAX_PHRASE_TRIES:
        start = 0 if end <= window else text.rfind("\n", 0, end - window) + 1
        start = max(start, end - 2 * window)
        for m in reversed(list(_ANSWER_PHRASE_RE.finditer(text, start, min(len(text), end + _PHRASE_OVERLAP)))):
            if m.start() >= end:  # tried with the piece after this one
                continue
            tries += 1
            if tries > MAX_PHRASE_TRIES:
                break
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
        block = last_tag_block(text)
        if block is not None and block.strip():
            inner = _extract(block, use_tags=False)
            return inner if inner is not None else block.strip()
    boxed = last_boxed(text)
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


