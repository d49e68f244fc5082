"""How TRL calls a reward, and the plumbing every reward here shares.

Every reward works two ways:

* directly on a string: ``format_reward("<think>..</think><answer>7</answer>")`` -> ``[1.0]``
  (a bare string, or one conversational completion, is a batch of one);
* as a TRL ``reward_funcs`` entry: TRL calls ``f(prompts=..., completions=..., completion_ids=...,
  trainer_state=..., log_extra=..., log_metric=..., **dataset_columns)`` and expects one float per
  completion. Completions may be plain strings or conversational ``[{"role": "assistant", "content": ...}]``.

``batch_columns`` turns both into texts plus one column value per text. A missing column is a wiring mistake
and raises ``ValueError`` (``require_column``); anything a model can write never raises (``safe_score``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)


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


def is_single_completion(completions: Any) -> bool:
    """A bare string or one conversational completion (a list of message dicts) is a batch of one."""
    if isinstance(completions, (str, dict)):
        return True
    if isinstance(completions, (list, tuple)) and completions and all(isinstance(m, dict) for m in completions):
        return True
    return False


def as_list(value: Any) -> Any:
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        try:
            return value.tolist()
        except Exception:  # pragma: no cover - exotic array types
            return value
    return value


def batch_columns(completions: Any, columns: dict[str, Any], nested: Iterable[str] = ()) -> tuple[list[str], dict[str, list]]:
    """Texts for each completion and, for each named column, one value per completion.

    A column given as a list as long as the batch is per-row; anything else is broadcast to every row.
    Columns named in ``nested`` (such as ``nums``) hold a list per row, so a flat list of scalars is one value.
    """
    single = is_single_completion(completions)
    items = [completions] if single else list(completions or [])
    texts = [completion_text(c) for c in items]
    n = len(texts)
    out: dict[str, list] = {}
    for name, value in columns.items():
        value = as_list(value)
        if single:
            out[name] = [value] * n
            continue
        is_rowwise = isinstance(value, (list, tuple)) and len(value) == n
        if is_rowwise and name in nested:
            is_rowwise = all(_is_sequence_like(v) for v in value)
        out[name] = list(value) if is_rowwise else [value] * n
    return texts, out


def _is_sequence_like(v: Any) -> bool:
    v = as_list(v)
    return isinstance(v, (list, tuple, str))


def require_column(name: str, value: Any, func: str) -> None:
    if value is None:
        raise ValueError(f"{func} needs the dataset column `{name}` (pass {name}=..., or keep it in the dataset)")


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[-1], dict):
        return _content_text(prompt[-1].get("content"))
    return ""


def with_prefill(text: str, prompt: Any) -> str:
    """Put back a ``<think>`` that the prompt pre-filled (an R1-style prompt ending in ``<think>``)."""
    if prompt is None or text.lstrip().startswith("<think>"):
        return text
    if _prompt_text(prompt).rstrip().endswith("<think>"):
        return "<think>" + text
    return text


def safe_score(func: Callable[..., float], *args: Any, default: float = 0.0) -> float:
    """A last line of defence: a reward that hits an unexpected error scores ``default`` and logs it."""
    try:
        return float(func(*args))
    except Exception:  # pragma: no cover - every path below is designed not to raise
        logger.exception("reward %s failed; scoring %s", getattr(func, "__name__", func), default)
        return default
