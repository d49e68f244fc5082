"""The ``gpu`` profile's Hub datasets (``HUB_SOURCES``) and one ``normalize_*_row`` per source into the course schema."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np

from helpers.config import DEFAULT_SEED, Profile
from helpers.rewards.extraction import last_boxed

from .prompts import countdown_prompt
from .schema import FEATURES, SCHEMAS, validate_row
from .splits import train_validation_split


def _get(row: Mapping, name: str, kind: type) -> Any:
    """A field of a Hub row, with an error naming the field when it is missing or mistyped."""
    if name not in row or row[name] is None:
        raise ValueError(f"missing field {name!r}")
    if not isinstance(row[name], kind):
        raise ValueError(f"field {name!r} should be {kind.__name__}, got {type(row[name]).__name__}")
    return row[name]


def message(role: str, content: str) -> dict:
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


def normalize_numina_row(row: Mapping) -> dict:
    """NuminaMath-TIR: ``problem``, ``solution`` with the answer in the last ``\\boxed{}`` -> math schema."""
    solution = _get(row, "solution", str)
    boxed = last_boxed(solution)
    answer = boxed[1].strip() if boxed else None
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


# TinyZero's Countdown task, as cog_behav's queries word it; the dataset has no nums/target columns to read instead
_TINYZERO_TASK = re.compile(r"Using the numbers \[([\d,\s]+)\],? create an equation that equals (\d+)")


def normalize_cog_behav_row(row: Mapping) -> dict:
    """cog_behav_all_strategies: ``query`` is a TinyZero prompt ("...User: Using the numbers [..], create an
    equation that equals N. ...\\nAssistant: <prefill>") and ``completion`` the rest of the answer.

    The user turn is the same task in the course's own wording (``countdown_prompt``), the one GRPO prompts with,
    so SFT teaches the prompt RL and evaluation use. The assistant turn is the prefill from its ``<think>`` on,
    then the completion: TinyZero's words before the tag ("Let me solve this step by step.") are dropped, since
    the course's format (``has_valid_format``) starts an answer with ``<think>`` and SFT must not teach what every
    later reward rejects."""
    query, completion = _get(row, "query", str), _get(row, "completion", str)
    task = _TINYZERO_TASK.search(query)
    if not task:
        raise ValueError("field 'query' has no Countdown task ('Using the numbers [...], create an equation "
                         "that equals N')")
    nums = [int(n) for n in task.group(1).split(",")]
    prefill = query.split("User:", 1)[-1].partition("Assistant:")[2]
    prefill = prefill[prefill.index("<think>"):] if "<think>" in prefill else prefill.lstrip()
    return {"messages": [message("user", countdown_prompt(nums, int(task.group(2)))),
                         message("assistant", prefill + completion)],
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
        messages.append(message(role, content.strip()))
    return {"messages": messages, "task": "stratos"}


def _chat_turns(messages: list, name: str) -> list[dict]:
    """The non-system turns of a Hub conversation, as plain role/content messages ending with the assistant."""
    turns = []
    for m in messages:
        if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise ValueError(f"field {name!r} has a message without a text 'role' and 'content': {m!r:.80}")
        if m["role"] != "system":
            turns.append(message(m["role"], m["content"]))
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
        "prompt": [message("user", _get(row, "prompt", str))],
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


# Config, split and column names as each dataset card and viewer show them (tests/fixtures/hub/ holds a few rows of
# each in the same layout). Not confirmed on a card: cog_behav's config name and its columns beyond query/completion
# (the card lists no features; the name is datasets' "default" for a repository without configs), and
# Bespoke-Stratos' own card (its columns and single train split are those of copies of it that keep its name).
HUB_SOURCES: dict[str, HubSource] = {
    # configs main, socratic; splits train, test; columns question, answer
    "openai/gsm8k": HubSource("math", "openai/gsm8k", normalize_gsm8k_row, name="main"),
    # splits train, test; columns problem, solution, messages
    "AI-MO/NuminaMath-TIR": HubSource("math", "AI-MO/NuminaMath-TIR", normalize_numina_row),
    # configs default, extended (and all); split train only
    "open-r1/OpenR1-Math-220k": HubSource("math", "open-r1/OpenR1-Math-220k", normalize_openr1_row, name="default",
                                          splits={"train": "train"}),
    # split test only; columns problem, solution, answer, subject, level, unique_id
    "HuggingFaceH4/MATH-500": HubSource("math", "HuggingFaceH4/MATH-500", normalize_math500_row, splits={"test": "test"}),
    # split train only; columns target, nums
    "Jiayi-Pan/Countdown-Tasks-3to4": HubSource("countdown", "Jiayi-Pan/Countdown-Tasks-3to4", normalize_countdown_row,
                                                splits={"train": "train"}),
    # splits train, test; columns query, completion
    "Asap7772/cog_behav_all_strategies": HubSource("warmstart", "Asap7772/cog_behav_all_strategies",
                                                   normalize_cog_behav_row),
    # split train only; columns system, conversations
    "bespokelabs/Bespoke-Stratos-17k": HubSource("warmstart", "bespokelabs/Bespoke-Stratos-17k", normalize_bespoke_row,
                                                 splits={"train": "train"}),
    # splits train, test; columns messages, source
    "HuggingFaceTB/smol-smoltalk": HubSource("instructions", "HuggingFaceTB/smol-smoltalk", normalize_smoltalk_row),
    # splits train_prefs, test_prefs, train_sft, test_sft, train_gen, test_gen
    "HuggingFaceH4/ultrafeedback_binarized": HubSource("preferences", "HuggingFaceH4/ultrafeedback_binarized",
                                                       normalize_ultrafeedback_row,
                                                       splits={"train": "train_prefs", "test": "test_prefs"}),
}


def _pool_size(task: str, profile: Profile) -> int:
    """Rows a task uses for train + validation (test adds ``n_eval``). Warm-start sources are read at Countdown's
    size: ``load_warmstart`` adds the math traces itself when a source has none."""
    sizes = {"math": profile.n_math, "countdown": profile.n_countdown, "warmstart": profile.n_countdown,
             "instructions": profile.n_instructions, "preferences": profile.n_preferences}
    return sizes[task]


def _check_config_and_split(source: HubSource, hub_split: str) -> None:
    """Fail before any download, naming what exists, when the source has no such config or split (``datasets``
    itself names a missing split only after downloading and preparing every split of the config)."""
    configs = datasets.get_dataset_config_names(source.path, data_files=source.data_files)
    if source.name is not None and source.name not in configs:
        raise ValueError(f"{source.path} has no config {source.name!r}; its configs are {configs}")
    splits = datasets.get_dataset_split_names(source.path, source.name, data_files=source.data_files)
    if hub_split not in splits:
        raise ValueError(f"{source.path} (config {source.name or 'default'!r}) has no split {hub_split!r}; "
                         f"its splits are {splits}")


def _read_hub(task: str, source: HubSource, course_split: str, limit: int) -> datasets.Dataset:
    """Up to ``limit`` rows (a seeded sample) of one source split, normalized and validated."""
    hub_split = source.splits[course_split]
    _check_config_and_split(source, hub_split)
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
        validate_row(out, schema, where)
        return out

    return raw.map(convert, with_indices=True, remove_columns=raw.column_names, features=FEATURES[task],
                   desc=f"normalizing {source.path}")


def load_hub(task: str, source: HubSource, profile: Profile, split: str) -> datasets.Dataset:
    if source.task != task:
        raise ValueError(f"{source.path} holds {source.task} rows, not {task} rows")
    pool = _pool_size(task, profile)
    if split in source.splits and (split != "train" or "validation" in source.splits):
        return _read_hub(task, source, split, profile.n_eval if split == "test" else pool)
    if "train" not in source.splits:
        raise ValueError(f"{source.path} has no {split!r} split and no train split to carve one from "
                         f"(it has {sorted(source.splits)})")
    if "test" in source.splits:
        return train_validation_split(_read_hub(task, source, "train", pool))[split]
    # No test split at the source: the test rows are set aside first (a seeded sample, at most a tenth of what
    # is read), then train and validation come from the rest, so the three never share a row.
    rows = _read_hub(task, source, "train", pool + profile.n_eval)
    n_test = min(profile.n_eval, len(rows) // 10) if len(rows) < pool + profile.n_eval else profile.n_eval
    if split == "test":
        return rows.select(range(n_test))
    return train_validation_split(rows.select(range(n_test, len(rows))))[split]
