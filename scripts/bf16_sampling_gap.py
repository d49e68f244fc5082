"""How far the bf16 sampling copy is from the float32 policy it stands for, on its own samples.

    .venv/bin/python scripts/bf16_sampling_gap.py            # the cpu profile's SFT model, 8 training problems x 4

Where the CPU has native bf16 the course samples from a bf16 copy of the policy (``helpers.generation.sampler``)
and trains the float32 weights on those samples, without the importance-sampling correction TRL applies to vLLM's
samples. This measures the gap that correction would undo: per sampled token, log pi_float32 - log pi_bf16 at the
training temperature, and per completion the sum (the log of the sequence's importance ratio). Writes
``data/processed/<profile>/bf16_sampling_gap.csv``.
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch

from helpers.chat import task_prompt
from helpers.config import get_profile, seed_everything
from helpers.data import load_task
from helpers.generation import sampler, samples_in_bf16
from helpers.models import load_model, load_tokenizer
from helpers.rl import sample_group, sequence_logprobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    profile = get_profile(args.profile)
    start = profile.checkpoint_dir / "sft"
    start = str(start) if (start / "config.json").exists() else profile.name
    tokenizer, model = load_tokenizer(start), load_model(start).eval()
    if not samples_in_bf16(model):
        raise SystemExit("this CPU samples in float32 (no native bf16, or COURSE_CPU_BF16=0): there is no gap to measure")
    seed_everything()
    tokens, sequences = [], []
    for row in load_task("math", profile, split="train").select(range(args.problems)):
        group = sample_group(model, tokenizer, task_prompt(row), args.samples, profile.max_completion_length,
                             profile.rl_temperature)
        with torch.no_grad(), sampler(model) as bf16_copy:
            batch = (group["input_ids"], group["attention_mask"], group["labels"], profile.rl_temperature)
            gap = sequence_logprobs(model, *batch) - sequence_logprobs(bf16_copy, *batch).float()
        mask = group["labels"][:, 1:] != -100
        tokens.append(gap[mask])
        sequences.append((gap * mask).sum(dim=1))
    token_gap, sequence_gap = torch.cat(tokens), torch.cat(sequences)
    table = pd.DataFrame([
        {"measure": "per token: log pi_fp32 - log pi_bf16", "n": token_gap.numel(), "mean |gap|": token_gap.abs().mean(),
         "median |gap|": token_gap.abs().median(), "max |gap|": token_gap.abs().max(),
         "ratio min": token_gap.exp().min(), "ratio max": token_gap.exp().max()},
        {"measure": "per completion: sum over its tokens", "n": sequence_gap.numel(),
         "mean |gap|": sequence_gap.abs().mean(), "median |gap|": sequence_gap.abs().median(),
         "max |gap|": sequence_gap.abs().max(), "ratio min": sequence_gap.exp().min(),
         "ratio max": sequence_gap.exp().max()}]).set_index("measure").astype(float).round(4)
    table["n"] = table["n"].astype(int)
    out = profile.data_dir("processed") / "bf16_sampling_gap.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out)
    print(table.to_string())


if __name__ == "__main__":
    main()
