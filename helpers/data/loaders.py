"""One loader per task: the offline generators (``tiny``, ``cpu``) or the Hub (``gpu``), checked, split, and
written to ``data/generated/<profile>/<task>.jsonl`` for learners to read."""

from __future__ import annotations

from collections.abc import Callable

import datasets

from helpers.config import DEFAULT_SEED, Profile, get_profile
from helpers.jsonl import write_jsonl

from .countdown import countdown_trace, make_countdown
from .hub import HUB_SOURCES, HubSource, load_hub, message
from .instructions import make_instruction_examples
from .math_problems import math_trace, sample_math_problems
from .prompts import countdown_prompt, math_prompt
from .references import reference_trace
from .schema import FEATURES, SCHEMAS, SPLITS, TASKS, validate_rows
from .splits import interleave, three_way_split


def _offline_rows(task: str, profile: Profile) -> dict[str, list[dict]]:
    """Every split of an offline task, generated with the course seed."""
    n_eval = profile.n_eval
    if task == "countdown":
        return three_way_split(make_countdown(profile.n_countdown + n_eval, seed=DEFAULT_SEED), profile.n_countdown)
    if task in ("math", "warmstart"):
        problems = three_way_split(sample_math_problems(profile.n_math + n_eval, seed=DEFAULT_SEED), profile.n_math)
        if task == "math":
            return {split: [p.row() for p in items] for split, items in problems.items()}
        countdown = _offline_rows("countdown", profile)
        return {
            split: interleave(
                [{"messages": [message("user", countdown_prompt(r["nums"], r["target"])),
                               message("assistant", countdown_trace(r["nums"], r["target"]))], "task": "countdown"}
                 for r in countdown[split]],
                [{"messages": [message("user", math_prompt(p.question)), message("assistant", math_trace(p))],
                  "task": "math"} for p in problems[split]],
            )
            for split in SPLITS
        }
    # instructions and preferences draw from one pool of distinct prompts, so the two never share one
    n_ins, n_pref = profile.n_instructions + n_eval, profile.n_preferences + n_eval
    examples = make_instruction_examples(n_ins + n_pref, seed=DEFAULT_SEED)
    if task == "instructions":
        return {split: [{"messages": [message("user", e["prompt"]), message("assistant", e["chosen"])],
                         "constraints": e["constraints"]} for e in items]
                for split, items in three_way_split(examples[:n_ins], profile.n_instructions).items()}
    if task == "preferences":
        return {split: [{"prompt": [message("user", e["prompt"])], "chosen": [message("assistant", e["chosen"])],
                         "rejected": [message("assistant", e["rejected"])], "constraints": e["constraints"]}
                        for e in items]
                for split, items in three_way_split(examples[n_ins:], profile.n_preferences).items()}
    raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")


def _load_offline(task: str, profile: Profile, split: str) -> datasets.Dataset:
    parts = _offline_rows(task, profile)
    for name, rows in parts.items():
        validate_rows(rows, SCHEMAS[task], source=f"{task} [{name}]")
    # one file per task for learners to read, `split` first on each line
    write_jsonl(({"split": split, **row} for split, rows in parts.items() for row in rows),
                profile.data_dir("generated") / f"{task}.jsonl")
    return datasets.Dataset.from_list(parts[split], features=FEATURES[task])


def _load(task: str, profile: str | Profile | None, split: str, source: str | HubSource) -> datasets.Dataset:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    if profile.source == "offline":
        return _load_offline(task, profile, split)
    if isinstance(source, str):
        if source not in HUB_SOURCES:
            raise ValueError(f"unknown Hub source {source!r}; known: {sorted(HUB_SOURCES)}")
        source = HUB_SOURCES[source]
    return load_hub(task, source, profile, split)


def load_math(profile: str | Profile | None = None, split: str = "train",
              source: str | HubSource = "openai/gsm8k") -> datasets.Dataset:
    """Math problems (``prompt``, ``solution``, ``answer``, ``difficulty``). ``gpu``: GSM8K by default;
    also ``AI-MO/NuminaMath-TIR``, ``open-r1/OpenR1-Math-220k`` and, for ``split="test"``,
    ``HuggingFaceH4/MATH-500``. Offline: generated word problems."""
    return _load("math", profile, split, source)


def load_countdown(profile: str | Profile | None = None, split: str = "train",
                   source: str | HubSource = "Jiayi-Pan/Countdown-Tasks-3to4") -> datasets.Dataset:
    """Countdown problems (``nums``, ``target``). ``gpu``: TinyZero's Countdown-Tasks-3to4;
    offline: ``make_countdown`` problems, all solvable."""
    return _load("countdown", profile, split, source)


def load_warmstart(profile: str | Profile | None = None, split: str = "train",
                   source: str | HubSource = "Asap7772/cog_behav_all_strategies") -> datasets.Dataset:
    """Warm-start SFT conversations (``messages``, ``task``) whose assistant turn is a reasoning trace in
    ``<think>...</think>\\n<answer>...</answer>`` form. Offline: Countdown search traces and math worked traces,
    alternating, for the problems of the same split of ``load_countdown`` and ``load_math``. ``gpu``:
    cog_behav_all_strategies, whose traces are all Countdown, alternating with the gold solutions
    (``reference_trace``) of the same split of ``load_math``; or Bespoke-Stratos-17k as it is."""
    rows = _load("warmstart", profile, split, source)
    if set(rows.unique("task")) != {"countdown"}:  # math traces already there (offline), or Stratos' own mix
        return rows
    # SFT on Countdown alone would leave the math task, which GRPO and evaluation also use, without a trace
    math = [{"messages": [message("user", math_prompt(r["prompt"])), message("assistant", reference_trace(r))],
             "task": "math"} for r in load_math(profile, split)]
    return datasets.Dataset.from_list(interleave(rows.to_list(), math), features=FEATURES["warmstart"])


def load_instructions(profile: str | Profile | None = None, split: str = "train",
                      source: str | HubSource = "HuggingFaceTB/smol-smoltalk") -> datasets.Dataset:
    """Instruction-following conversations (``messages``, ``constraints``). ``gpu``: smol-smoltalk
    (no constraints); offline: prompts with checkable constraints and answers that satisfy them."""
    return _load("instructions", profile, split, source)


def load_preferences(profile: str | Profile | None = None, split: str = "train",
                     source: str | HubSource = "HuggingFaceH4/ultrafeedback_binarized") -> datasets.Dataset:
    """Conversational preference pairs (``prompt``, ``chosen``, ``rejected``, ``constraints``).
    ``gpu``: UltraFeedback binarized; offline: ``chosen`` satisfies the prompt's constraints and
    ``rejected`` breaks one (prompts distinct from ``load_instructions``')."""
    return _load("preferences", profile, split, source)


_LOADERS: dict[str, Callable[..., datasets.Dataset]] = {
    "math": load_math, "countdown": load_countdown, "warmstart": load_warmstart,
    "instructions": load_instructions, "preferences": load_preferences,
}


def load_task(task: str, profile: str | Profile | None = None, split: str = "train",
              source: str | HubSource | None = None) -> datasets.Dataset:
    """Load one task of the data table (``TASKS``) for a profile and split; ``source`` overrides the
    task's default Hub source (``gpu`` only)."""
    if task not in _LOADERS:
        raise ValueError(f"unknown task {task!r}; tasks are {TASKS}")
    kwargs = {} if source is None else {"source": source}
    return _LOADERS[task](profile, split, **kwargs)
