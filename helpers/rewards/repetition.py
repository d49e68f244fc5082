"""Repetition penalty: the share of repeated word n-grams, a guard against loops. Range [max_penalty, 0]."""

from __future__ import annotations

from typing import Any

from .calling import batch_columns, safe_score
from .limits import MAX_REPETITION_WORDS


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
    texts, _ = batch_columns(completions, {})
    return [safe_score(_repetition, t, ngram_size, max_penalty) for t in texts]
