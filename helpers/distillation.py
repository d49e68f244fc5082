"""Rejection sampling and sequence-level distillation, plus an optional teacher behind any OpenAI-compatible API.

Rejection sampling (DeepSeek-R1's stage 3): sample ``k`` completions per training prompt from the best
model so far, keep only the ones a program verifies as correct (and well formatted), at most one per
prompt (the shortest), and fine-tune on them. The same verified traces, used to train a *fresh* copy
of the initial model, are sequence-level distillation: the student imitates the teacher's outputs,
not its probabilities.

The teacher is the course's own best RL checkpoint (``stage_checkpoint(profile, TEACHER_PREFERENCE)``), or, when
``TEACHER_API_KEY`` is set, any model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint
(``TeacherClient``). Its answers are cached as JSONL, keyed by a hash of the model, the prompt and the
sampling settings, so re-running a notebook makes no request twice. The key is read from the
environment only and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from helpers.chat import task_prompt
from helpers.data import reference_trace
from helpers.evaluation import score_generations
from helpers.generation import sample_completions
from helpers.jsonl import append_jsonl, read_jsonl

# Stages that can serve as teacher / starting point, best first (notebook 8 falls back along this list).
TEACHER_PREFERENCE = ("grpo", "sft")  # the math teacher: the first that exists (RLOO and DPO train on instructions)

ENV_BASE_URL = "TEACHER_BASE_URL"
ENV_API_KEY = "TEACHER_API_KEY"
ENV_MODEL = "TEACHER_MODEL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TEACHER_MODEL = "gpt-4o-mini"


# ---------------------------------------------------------------------------------------------
# Rejection sampling
# ---------------------------------------------------------------------------------------------


def sample_scored(model, tokenizer, rows: list[dict], n_samples: int, max_new_tokens: int,
                  temperature: float = 0.8, batch_size: int = 16, progress: bool = True) -> pd.DataFrame:
    """``n_samples`` sampled completions for each row's task prompt, scored: one row per completion
    (``prompt_index``, ``sample``, ``format_ok``, ``correct``, ``length_chars``, ``completion``, ...).

    ``batch_size`` counts prompts; each batch generates ``batch_size * n_samples`` sequences.
    """
    groups = sample_completions(model, tokenizer, [task_prompt(row) for row in rows], n_samples, max_new_tokens,
                                temperature=temperature, batch_size=batch_size, progress=progress)
    scored = score_generations([text for group in groups for text in group], rows)
    scored.insert(1, "sample", [i % n_samples for i in range(len(scored))])
    return scored


def select_verified(scored: pd.DataFrame, require_format: bool = True, max_per_prompt: int = 1,
                    length_column: str = "length_chars", max_length: float | None = None) -> pd.DataFrame:
    """The rejection step: keep verified-correct completions, shortest first, at most ``max_per_prompt``
    per prompt.

    ``require_format`` also demands the ``<think>``/``<answer>`` format (we train on these, so they
    should show the format we want). ``max_length`` drops completions longer than that in
    ``length_column`` (e.g. a token count the student can generate). Ties keep sampling order.
    Returns the kept rows sorted by ``prompt_index``.
    """
    if max_per_prompt < 1:
        raise ValueError(f"max_per_prompt must be >= 1, got {max_per_prompt}")
    keep = scored["correct"].astype(bool)
    if require_format:
        keep &= scored["format_ok"].astype(bool)
    if max_length is not None:
        keep &= scored[length_column] <= max_length
    kept = scored[keep].copy()
    kept["_order"] = range(len(kept))
    kept = kept.sort_values([length_column, "_order"], kind="stable")
    kept = kept.groupby("prompt_index", sort=False).head(max_per_prompt)
    return kept.sort_values(["prompt_index", length_column, "_order"]).drop(columns="_order")


def rejection_summary(scored: pd.DataFrame, kept: pd.DataFrame) -> dict:
    """How much survives each filter: samples, correct, correct and formatted, prompts solved, kept."""
    correct = scored["correct"].astype(bool)
    formatted = correct & scored["format_ok"].astype(bool)
    return {
        "prompts": int(scored["prompt_index"].nunique()),
        "samples": len(scored),
        "correct samples": int(correct.sum()),
        "correct and formatted": int(formatted.sum()),
        "prompts with a verified sample": int(scored.loc[formatted, "prompt_index"].nunique()),
        "kept (one per prompt)": len(kept),
    }


def to_sft_rows(rows: list[dict], kept: pd.DataFrame) -> list[dict]:
    """Kept completions as TRL's conversational prompt-completion rows (the prompt has the R1 system prompt)."""
    return [{"prompt": task_prompt(rows[int(index)]), "completion": [{"role": "assistant", "content": text}]}
            for index, text in zip(kept["prompt_index"], kept["completion"])]


def reference_completions(rows: list[dict]) -> pd.DataFrame:
    """``reference_trace`` for every row, scored like sampled completions (``sample`` 0): the fallback
    training data when a teacher verifies nothing at all (the ``tiny`` profile's random model)."""
    scored = score_generations([reference_trace(row) for row in rows], rows)
    scored.insert(1, "sample", 0)
    return scored


# ---------------------------------------------------------------------------------------------
# An optional teacher behind an OpenAI-compatible endpoint
# ---------------------------------------------------------------------------------------------


class TeacherError(RuntimeError):
    """A request to the teacher endpoint failed (HTTP error, unreachable host, or an unexpected reply)."""


@dataclass(frozen=True)
class TeacherConfig:
    """Where the teacher lives. Build it with ``TeacherConfig.from_env()``; the key never leaves memory."""

    base_url: str
    model: str
    api_key: str = field(repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TeacherConfig | None:
        """From ``TEACHER_API_KEY`` (required), ``TEACHER_BASE_URL`` (default OpenAI's ``/v1``) and
        ``TEACHER_MODEL`` (default ``gpt-4o-mini``); ``None`` when no key is set."""
        env = os.environ if environ is None else environ
        key = (env.get(ENV_API_KEY) or "").strip()
        if not key:
            return None
        base_url = (env.get(ENV_BASE_URL) or "").strip() or DEFAULT_BASE_URL
        model = (env.get(ENV_MODEL) or "").strip() or DEFAULT_TEACHER_MODEL
        return cls(base_url=base_url.rstrip("/"), model=model, api_key=key)


def cache_key(model: str, messages: list[dict], **settings) -> str:
    """A stable hash of the model, the prompt messages and the sampling settings."""
    payload = json.dumps({"model": model, "messages": messages, "settings": settings}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class TeacherClient:
    """Chat completions from an OpenAI-compatible endpoint (standard library only), cached as JSONL.

    ``complete(messages)`` returns the assistant text. A prompt already in ``cache_path`` costs nothing;
    a new answer is appended to it at once, so an interrupted run keeps what it paid for.
    ``requests_made`` counts real HTTP requests. HTTP 429 and 5xx are retried ``retries`` times with
    exponential backoff; anything else raises ``TeacherError`` with the status and the start of the body.
    """

    def __init__(self, config: TeacherConfig, cache_path: str | Path, temperature: float = 0.0,
                 max_tokens: int = 512, timeout: float = 60.0, retries: int = 2, backoff: float = 2.0):
        self.config = config
        self.cache_path = Path(cache_path)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.requests_made = 0
        self._cache: dict[str, str] = {}
        if self.cache_path.exists():
            for record in read_jsonl(self.cache_path):  # skips a line cut short by an interrupted run
                if isinstance(record.get("key"), str) and isinstance(record.get("completion"), str):
                    self._cache[record["key"]] = record["completion"]

    @property
    def url(self) -> str:
        return f"{self.config.base_url}/chat/completions"

    def _key(self, messages: list[dict]) -> str:
        return cache_key(self.config.model, messages, temperature=self.temperature, max_tokens=self.max_tokens)

    def cached(self, messages: list[dict]) -> bool:
        return self._key(messages) in self._cache

    def _post(self, messages: list[dict]) -> str:
        body = json.dumps({"model": self.config.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": self.max_tokens}).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.config.api_key}"})
        for attempt in range(self.retries + 1):
            self.requests_made += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.loads(response.read().decode("utf-8"))
                break
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", errors="replace")[:300]
                if (err.code == 429 or err.code >= 500) and attempt < self.retries:
                    time.sleep(self.backoff * 2**attempt)
                    continue
                raise TeacherError(f"teacher request to {self.url} failed with HTTP {err.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError) as err:
                if attempt < self.retries:
                    time.sleep(self.backoff * 2**attempt)
                    continue
                reason = getattr(err, "reason", err)
                raise TeacherError(f"teacher endpoint {self.url} unreachable: {reason}") from None
            except json.JSONDecodeError as err:
                raise TeacherError(f"teacher endpoint {self.url} did not answer with JSON: {err}") from None
        try:
            return reply["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise TeacherError(f"unexpected reply from {self.url}: {str(reply)[:300]}") from None

    def complete(self, messages: list[dict]) -> str:
        key = self._key(messages)
        if key not in self._cache:
            completion = self._post(messages)
            append_jsonl([{"key": key, "model": self.config.model, "messages": messages, "completion": completion}],
                         self.cache_path)
            self._cache[key] = completion
        return self._cache[key]

    def complete_many(self, prompts: list[list[dict]], progress: bool = True) -> list[str]:
        return [self.complete(p) for p in tqdm(prompts, desc="teacher", disable=not progress, leave=False)]
