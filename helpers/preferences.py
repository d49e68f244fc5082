"""Preferences: reward-model scores and on-policy preference pairs.

Two ideas of notebooks 6 and 7 live here:

- **A learned reward.** A reward model is the policy's backbone with a one-output *sequence
  classification* head: it reads a whole conversation (prompt + response) and returns one number, read
  at the last token. ``load_reward_model`` builds or reloads one, ``score_conversations`` and
  ``score_pairs`` score with it exactly as TRL's ``RewardTrainer`` tokenizes (the chat template over the
  full conversation), and ``RewardModelReward`` wraps it as a TRL ``reward_funcs`` entry.
- **On-policy pairs.** ``sample_completions`` draws ``k`` completions per prompt from the model being
  trained, ``verifier_score`` scores each with the rule-based rewards of ``helpers.rewards``, and
  ``best_vs_worst_pairs`` keeps, for each prompt whose samples got different scores, the best one as
  ``chosen`` and the worst one as ``rejected``. ``build_onpolicy_pairs`` chains the three; given a reward model
  it ranks with that instead of the rule (notebook 7's on-policy instruction pairs).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase, TrainerCallback
from transformers.utils import logging as hf_logging

from helpers import rewards
from helpers.chat import IGNORE_INDEX, PaddingCollator, row_prompt, tokenize_conversation
from helpers.data import reference_trace, task_of
from helpers.evaluation import score_generations
from helpers.generation import generate, sample_completions
from helpers.jsonl import write_jsonl
from helpers.models import load_tokenizer, loading_kwargs, resolve_model_name
from helpers.rl import sequence_logprobs

FORMAT_WEIGHT = 0.2  # as in GRPO (notebook 5): a correct answer always beats a well-formatted wrong one
MAX_REWARD_TOKENS = 1024  # longer conversations keep their end, where the reward model reads its score


# ---------------------------------------------------------------------------------------------
# Reward model: load, score, plug into TRL
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_transformers():
    """Silence the load report that lists the new, untrained ``score`` head (the caller says it instead)."""
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def load_reward_model(name: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None = None,
                      dtype: torch.dtype | None = None):
    """A one-output sequence-classification model from a profile name, checkpoint folder or Hub id.

    From a causal-LM checkpoint the backbone is reused and the ``score`` head (hidden size -> 1) is new
    and random; from a saved reward model everything is loaded. ``config.pad_token_id`` is set from the
    tokenizer: the model finds the last real token of each sequence by skipping padding.
    """
    source = resolve_model_name(name)
    tokenizer = tokenizer or load_tokenizer(name)
    kwargs = {"num_labels": 1, **loading_kwargs(name, dtype)}
    with _quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(source, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def _message_list(value: Any, role: str) -> list[dict]:
    """A prompt or completion as chat messages: strings become one message with ``role``."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return [dict(m) for m in value]


def conversation_ids(tokenizer: PreTrainedTokenizerBase, prompt: Any, completion: Any) -> list[int]:
    """Token ids the reward model reads for one (prompt, completion), as ``RewardTrainer`` builds them.

    Conversational input (lists of messages) goes through the chat template; plain strings are
    concatenated and end with the eos token, as TRL does for non-conversational data.
    """
    if isinstance(prompt, str) and isinstance(completion, str):
        text = prompt + completion
        if tokenizer.eos_token and not text.endswith(tokenizer.eos_token):
            text += tokenizer.eos_token
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    messages = _message_list(prompt, "user") + _message_list(completion, "assistant")
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


@torch.inference_mode()
def score_ids(model, pad_token_id: int, sequences: Sequence[Sequence[int]], batch_size: int = 16,
              max_tokens: int = MAX_REWARD_TOKENS) -> list[float]:
    """The reward model's score for each token sequence (right-padded batches; long ones keep their end).

    Batches are formed in order of length, so that little of each is padding; scores come back in input order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scores = [0.0] * len(sequences)
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            batch = [list(sequences[i])[-max_tokens:] for i in indices]
            longest = max(len(ids) for ids in batch)
            input_ids = torch.full((len(batch), longest), pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for row, ids in enumerate(batch):
                input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, :len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            for i, score in zip(indices, logits[:, 0].float().tolist()):
                scores[i] = score
    finally:
        model.train(was_training)
    return scores


def score_conversations(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Any], completions: Sequence[Any],
                        batch_size: int = 16) -> list[float]:
    """Reward-model scores of ``completions[i]`` as answers to ``prompts[i]`` (messages or strings)."""
    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions")
    if not prompts:
        return []
    sequences = [conversation_ids(tokenizer, p, c) for p, c in zip(prompts, completions)]
    return score_ids(model, tokenizer.pad_token_id, sequences, batch_size)


def constraint_kind(constraints: Any) -> str:
    """A short label for a row's constraints, e.g. ``"lowercase+max_words"`` (``"none"`` for Hub rows)."""
    keys = sorted(k for k, v in (constraints or {}).items() if v is not None)
    return "+".join(keys) if keys else "none"


def score_pairs(model, tokenizer: PreTrainedTokenizerBase, rows: Sequence[dict], batch_size: int = 16) -> pd.DataFrame:
    """Score the ``chosen`` and ``rejected`` side of preference rows: one row per pair with both scores,
    the margin (chosen - rejected), whether the model ranks the pair right (margin > 0) and its kind."""
    rows = list(rows)
    prompts = [row["prompt"] for row in rows]
    chosen = score_conversations(model, tokenizer, prompts, [row["chosen"] for row in rows], batch_size)
    rejected = score_conversations(model, tokenizer, prompts, [row["rejected"] for row in rows], batch_size)
    table = pd.DataFrame({"chosen_score": chosen, "rejected_score": rejected})
    table["margin"] = table["chosen_score"] - table["rejected_score"]
    table["correct"] = table["margin"] > 0
    table["kind"] = [constraint_kind(row.get("constraints")) for row in rows]
    return table


def pairwise_accuracy(scored: pd.DataFrame) -> float:
    """Share of pairs the reward model ranks right (chosen above rejected); 0.5 is chance."""
    return float(scored["correct"].mean())


class RewardModelReward:
    """A reward model as a TRL reward function: ``f(prompts=, completions=, **kwargs) -> list[float]``.

    Pass an instance in ``reward_funcs`` of ``GRPOTrainer`` / ``RLOOTrainer``, next to rule-based
    rewards. It renders each (prompt, completion) as ``RewardTrainer`` did when the model was trained,
    so scores mean the same in training and in RL. (TRL also accepts the model itself in
    ``reward_funcs``; this wrapper can be called directly, batched and logged by name.)
    """

    def __init__(self, model, tokenizer: PreTrainedTokenizerBase, batch_size: int = 16, name: str = "reward_model"):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.__name__ = name  # TRL logs rewards/<name>/mean

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 **kwargs: Any) -> list[float]:
        if completions is None:
            raise ValueError("RewardModelReward needs completions=")
        if prompts is None:
            raise ValueError("RewardModelReward needs prompts=: a reward model judges a response to a prompt")
        return score_conversations(self.model, self.tokenizer, list(prompts), list(completions), self.batch_size)


class RewardProbe(TrainerCallback):
    """Over-optimization, measured while RL trains on a learned reward: every ``every`` optimizer steps the policy
    answers a fixed probe set of held-out rows greedily, and the probe records the reward model's mean score of
    those answers and the share the rule-based checker accepts (``evaluation.score_generations``' ``correct``: every
    constraint met for instructions, a right answer for math).

    The policy is paid by the first number and judged by the second; when the first keeps rising and the second
    stalls or falls, the policy is exploiting the reward model (Goodhart's law). ``measure`` can also be called
    directly (step 0, before training). ``curve`` is one row per measurement; ``answers`` the last answers, scored.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, rows: Sequence[dict], reward: RewardModelReward,
                 max_new_tokens: int, every: int, batch_size: int = 16):
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.tokenizer, self.rows, self.reward = tokenizer, list(rows), reward
        self.max_new_tokens, self.every, self.batch_size = max_new_tokens, every, batch_size
        self.curve: list[dict] = []
        self.answers: pd.DataFrame | None = None

    def measure(self, model, step: int) -> dict:
        prompts = [row_prompt(row) for row in self.rows]
        texts = generate(model, self.tokenizer, prompts, max_new_tokens=self.max_new_tokens,
                         batch_size=self.batch_size, progress=False)
        scores = self.reward(prompts=prompts, completions=[[{"role": "assistant", "content": t}] for t in texts])
        accepted = score_generations(texts, self.rows)["correct"].astype(float).tolist()  # as every evaluation scores
        self.answers = pd.DataFrame({"completion": texts, "reward_model": scores, "checker": accepted})
        point = {"step": step, "reward_model": float(pd.Series(scores).mean()), "checker": float(pd.Series(accepted).mean())}
        self.curve.append(point)
        return point

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            was_training = model.training
            self.measure(model, state.global_step)
            model.train(was_training)


# ---------------------------------------------------------------------------------------------
# On-policy pairs: sample, verify, keep best vs worst
# ---------------------------------------------------------------------------------------------


def verifier_score(completion: Any, row: dict) -> float:
    """The rule-based score of one completion for one dataset row, as used to rank samples.

    - Countdown rows (``nums``, ``target``): ``countdown_reward`` (0, 0.1 or 1);
    - instruction rows (``constraints``): the share of constraints met;
    - math rows (``answer``): accuracy (0 or 1) + 0.2 x format (0 or 1), GRPO's weighting.
    """
    task = task_of(row)
    if task == "countdown":
        return rewards.countdown_reward(completion, row["target"], row["nums"])
    if task == "instructions":
        return rewards.check_instruction_constraints(completion, row["constraints"])
    accuracy = rewards.math_accuracy_reward([completion], answer=[row["answer"]])[0]
    return accuracy + FORMAT_WEIGHT * rewards.format_reward([completion])[0]


def best_vs_worst_pairs(prompts: Sequence[Any], samples: Sequence[Sequence[str]], scores: Sequence[Sequence[float]],
                        references: Sequence[tuple[str, float] | None] | None = None) -> list[dict]:
    """One preference pair per prompt whose samples scored differently: best sample vs worst sample.

    Ties go to the earliest sample (samples are drawn at random, so this picks at random and adds
    no bias, e.g. towards short answers). A prompt whose samples all scored the same teaches DPO
    nothing and is skipped, unless ``references[i] = (text, score)`` is given with a score above the
    tied one: then that reference (e.g. the dataset's worked solution) is ``chosen`` against the first
    sample, and the pair is marked ``source="reference"``. Rows are conversational, ready for
    ``DPOTrainer``: ``prompt`` (messages), ``chosen`` and ``rejected`` (one assistant message each).
    """
    if not len(prompts) == len(samples) == len(scores):
        raise ValueError(f"got {len(prompts)} prompts, {len(samples)} sample groups and {len(scores)} score groups")
    if references is not None and len(references) != len(prompts):
        raise ValueError(f"got {len(references)} references for {len(prompts)} prompts")
    pairs = []
    for index, (prompt, group, group_scores) in enumerate(zip(prompts, samples, scores)):
        if len(group) != len(group_scores) or not group:
            raise ValueError(f"prompt {index}: {len(group)} samples but {len(group_scores)} scores")
        best = max(range(len(group)), key=lambda i: (group_scores[i], -i))
        worst = min(range(len(group)), key=lambda i: (group_scores[i], i))
        if group_scores[best] > group_scores[worst]:
            chosen, chosen_score, source = group[best], group_scores[best], "on-policy"
        elif references is not None and references[index] is not None and references[index][1] > group_scores[worst]:
            (chosen, chosen_score), source = references[index], "reference"
        else:
            continue
        pairs.append({
            "prompt": list(prompt) if not isinstance(prompt, str) else prompt,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": group[worst]}],
            "chosen_score": float(chosen_score),
            "rejected_score": float(group_scores[worst]),
            "source": source,
            "prompt_index": index,
        })
    return pairs


def group_outcomes(scores: Sequence[Sequence[float]]) -> pd.Series:
    """How many prompts had samples that all scored the same (no pair) and how many differed (a pair)."""
    same = sum(1 for group in scores if max(group) == min(group))
    return pd.Series({"prompts": len(scores), "samples differ (pair)": len(scores) - same, "all samples tie": same})


def build_onpolicy_pairs(model, tokenizer: PreTrainedTokenizerBase, rows: Sequence[dict], k: int, max_new_tokens: int,
                         temperature: float = 1.0, batch_size: int = 4, min_pairs: int = 0, progress: bool = True,
                         reward: Callable[..., list[float]] | None = None, cache_dir: str | Path | None = None,
                         seed: int | None = None) -> tuple[list[dict], pd.DataFrame]:
    """Sample ``k`` completions for each row's prompt (``row_prompt``), score them and keep best vs worst where
    they differ.

    The score is ``verifier_score`` (the rule), or ``reward(prompts=, completions=)`` when given (a learned reward
    model, ``RewardModelReward``): then the samples table keeps the rule's score beside it, column ``verifier``, to
    judge the pairs the reward model made. If that gives fewer than ``min_pairs`` pairs (a model that fails every
    sample, e.g. a random one), tied groups of math rows are topped up with the row's reference solution as
    ``chosen`` (``source="reference"``), so training always has data; the returned pairs say which is which.
    Returns ``(pairs, samples)``: ``samples`` has one row per sampled completion with its score.
    ``batch_size`` counts prompts; ``cache_dir`` and ``seed`` go to ``helpers.generation.sample_completions``.
    """
    rows = list(rows)
    prompts = [row_prompt(row) for row in rows]
    samples = sample_completions(model, tokenizer, prompts, k, max_new_tokens, temperature=temperature,
                                 batch_size=batch_size, progress=progress, cache_dir=cache_dir, seed=seed)
    verifier = [[verifier_score(text, row) for text in group] for group, row in zip(samples, rows)]
    scores = verifier
    if reward is not None:
        flat = reward(prompts=[prompt for prompt, group in zip(prompts, samples) for _ in group],
                      completions=[[{"role": "assistant", "content": text}] for group in samples for text in group])
        scores = [flat[i * k:(i + 1) * k] for i in range(len(rows))]
    pairs = best_vs_worst_pairs(prompts, samples, scores)
    if len(pairs) < min_pairs:
        references = [
            (reference_trace(row), verifier_score(reference_trace(row), row))
            if "solution" in row and "answer" in row else None
            for row in rows
        ]
        topped = best_vs_worst_pairs(prompts, samples, scores, references)
        extra = [p for p in topped if p["source"] == "reference"][:min_pairs - len(pairs)]
        pairs = sorted(pairs + extra, key=lambda p: p["prompt_index"])
    for pair in pairs:  # instruction pairs keep their constraints, so that scores can be broken down by kind
        if "constraints" in rows[pair["prompt_index"]]:
            pair["constraints"] = rows[pair["prompt_index"]]["constraints"]
    table = pd.DataFrame([
        {"prompt_index": i, "sample": j, "score": score, "completion": text}
        for i, (group, group_scores) in enumerate(zip(samples, scores))
        for j, (text, score) in enumerate(zip(group, group_scores))
    ])
    if reward is not None:
        table["verifier"] = [score for group in verifier for score in group]
    return pairs, table


@torch.no_grad()
def pair_logprobs(model, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[dict], batch_size: int = 8) -> pd.DataFrame:
    """The numbers DPO compares: the summed log-probability of each pair's ``chosen`` and ``rejected``
    completion under ``model`` (assistant tokens only, ``<|im_end|>`` included), with token counts.

    Pairs are conversational (``prompt`` messages, ``chosen``/``rejected`` one assistant message each).
    For a PEFT model, call it inside ``model.disable_adapter()`` to get the reference model's numbers.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collate = PaddingCollator(tokenizer)
    columns: dict[str, list] = {}
    try:
        for side in ("chosen", "rejected"):
            examples = [tokenize_conversation(tokenizer, list(p["prompt"]) + list(p[side])) for p in pairs]
            sums, counts = [], []
            for start in range(0, len(examples), batch_size):
                batch = {k: v.to(device) for k, v in collate(examples[start:start + batch_size]).items()}
                logps = sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
                sums += logps.float().sum(-1).tolist()
                counts += (batch["labels"][:, 1:] != IGNORE_INDEX).sum(-1).tolist()
            columns[f"{side}_logp"], columns[f"{side}_tokens"] = sums, counts
    finally:
        model.train(was_training)
    return pd.DataFrame(columns)[["chosen_logp", "rejected_logp", "chosen_tokens", "rejected_tokens"]]


def save_pairs(pairs: Sequence[dict], path: str | Path) -> Path:
    """Write preference pairs as JSON lines (overwriting), for learners to read."""
    return write_jsonl(pairs, path)
