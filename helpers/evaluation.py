"""Batched generation and scoring: format rate, accuracy, completion length.

Generation pads on the left (every prompt then ends where the new tokens begin) and stops at the
end-of-turn token. Scores come from ``helpers.rewards``, the same functions the RL notebooks train on.
"""

from __future__ import annotations

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from helpers import rewards


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end an assistant turn: ``<|im_end|>`` (ChatML) and the eos token."""
    ids = {tokenizer.eos_token_id}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return sorted(i for i in ids if i is not None)


@torch.inference_mode()
def generate(model, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]], max_new_tokens: int = 128,
             batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             num_return_sequences: int = 1, progress: bool = True) -> list[str]:
    """Generate a completion for each conversational prompt (``num_return_sequences`` each, in order).

    Greedy by default; ``do_sample=True`` samples with ``temperature`` and ``top_p``.
    """
    model.eval()
    device = next(model.parameters()).device
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    completions: list[str] = []
    try:
        batches = range(0, len(texts), batch_size)
        for start in tqdm(batches, desc="generating", disable=not progress, leave=False):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(device)
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                num_return_sequences=num_return_sequences,
                eos_token_id=end_of_turn_ids(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
            new_tokens = output[:, batch["input_ids"].shape[1]:]
            completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    finally:
        tokenizer.padding_side = previous_side
    return completions


def score_completion(completion: str, row: dict) -> dict:
    """Format, correctness and length of one completion for a math or Countdown row."""
    if "nums" in row and "target" in row:
        correct = rewards.countdown_reward(completion, row["target"], row["nums"]) == 1.0
    else:
        correct = rewards.math_accuracy_reward([completion], answer=[row["answer"]])[0] == 1.0
    return {
        "format_ok": rewards.has_valid_format(completion),
        "correct": bool(correct),
        "length_chars": len(completion),
    }


def score_generations(completions: list[str], rows: list[dict]) -> pd.DataFrame:
    """One row per completion: the prompt's task fields, the completion and its scores."""
    if len(completions) % len(rows):
        raise ValueError(f"{len(completions)} completions do not divide evenly over {len(rows)} rows")
    per_row = len(completions) // len(rows)
    records = []
    for index, completion in enumerate(completions):
        row = rows[index // per_row]
        records.append({"prompt_index": index // per_row, **score_completion(completion, row), "completion": completion})
    return pd.DataFrame(records)


def summarize(scored: pd.DataFrame) -> dict:
    """Format rate, accuracy and mean completion length of a scored table."""
    return {
        "prompts": scored["prompt_index"].nunique(),
        "format_rate": float(scored["format_ok"].mean()),
        "accuracy": float(scored["correct"].mean()),
        "mean_length_chars": float(scored["length_chars"].mean()),
    }


def evaluate_model(model, tokenizer: PreTrainedTokenizerBase, rows: list[dict], max_new_tokens: int,
                   batch_size: int = 16, system_prompt: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Greedy completions for ``rows`` (math or Countdown), scored: returns the summary and the per-row table."""
    from helpers.chat import R1_SYSTEM_PROMPT, task_prompt

    prompts = [task_prompt(row, system_prompt or R1_SYSTEM_PROMPT) for row in rows]
    completions = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    scored = score_generations(completions, rows)
    return summarize(scored), scored
