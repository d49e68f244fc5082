"""Splits: a seeded 90/10 train/validation split for sources without one, and the offline three-way split."""

from __future__ import annotations

import random
from itertools import chain, zip_longest

import datasets

from helpers.config import DEFAULT_SEED

VALIDATION_FRACTION = 0.1


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


def three_way_split(items: list, pool_size: int) -> dict[str, list]:
    """The first ``pool_size`` items split 90/10 into train/validation; the rest are the test split."""
    pool = items[:pool_size]
    train_idx, val_idx = _split_indices(len(pool), DEFAULT_SEED, VALIDATION_FRACTION)
    return {"train": [pool[i] for i in train_idx], "validation": [pool[i] for i in val_idx], "test": items[pool_size:]}


def interleave(*lists: list) -> list:
    return [x for x in chain.from_iterable(zip_longest(*lists)) if x is not None]
