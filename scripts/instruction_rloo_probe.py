"""Can RLOO with the learned reward model teach instruction following? A measurement for the learned-reward issue.

    .venv/bin/python scripts/instruction_rloo_probe.py --steps 16 --beta 0.05

The policy (the profile's initial instruct model) samples answers to training instructions, the reward model of
notebook 6 (``checkpoints/<profile>/reward_model/``) scores them, RLOO updates the policy. The judge is the
constraint checker (``check_instruction_constraints``), which the policy never trains on. Every ``--probe-every``
steps the policy answers a fixed probe set of validation instructions (greedy) and both the reward model's mean
score and the checker's rate are recorded: if the first rises while the second stalls, the policy is exploiting
the reward model (Goodhart's law). The start and end models are scored with the paired statistics of the math
stages on the validation instructions (``--split test`` once, for the committed run: settings are never chosen on
the test split). Results go to ``data/processed/<profile>/instruction_rloo_probe.csv`` (one row per run, a re-run
with the same ``--name`` replaces its row) and ``..._curve_<name>.csv`` (the probe curve).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
from datasets import Dataset
from transformers import TrainerCallback

from helpers.chat import task_prompt
from helpers.config import get_profile, seed_everything
from helpers.data import load_task
from helpers.evaluation import evaluate_model, paired_comparison
from helpers.models import load_model, load_tokenizer, merge_lora
from helpers.preferences import RewardModelReward, load_reward_model
from helpers.training import lora_config, rloo_config, run_rloo


def instruction_prompts(rows: list[dict]) -> list[list[dict]]:
    return [task_prompt(row, system_prompt=None) for row in rows]  # the instruction task has no R1 system prompt


def judge(model, tokenizer, rows: list[dict], reward: RewardModelReward, max_new_tokens: int, batch_size: int) -> dict:
    """Greedy answers to ``rows`` scored as every evaluation scores them (the checker: all constraints met), and
    the reward model's score of each."""
    _, scored = evaluate_model(model, tokenizer, rows, max_new_tokens, batch_size)
    answers = scored["completion"].tolist()
    scores = reward(prompts=instruction_prompts(rows), completions=[[{"role": "assistant", "content": a}] for a in answers])
    return {"satisfied": scored["correct"].astype(float), "reward_model": pd.Series(scores), "answers": answers}


class ProbeCallback(TrainerCallback):
    """Every ``every`` steps: the reward model's mean score and the checker's rate on the probe instructions."""

    def __init__(self, tokenizer, rows, reward, max_new_tokens, batch_size, every):
        self.args = (tokenizer, rows, reward, max_new_tokens, batch_size)
        self.every = every
        self.curve: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            result = judge(model, *self.args)
            model.train()
            self.curve.append({"step": state.global_step, "reward_model": float(result["reward_model"].mean()),
                               "checker": float(result["satisfied"].mean())})
            print(self.curve[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=None)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--beta", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=None, help="default: the profile's rloo_learning_rate")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--probe", type=int, default=16, help="validation instructions in the probe set")
    parser.add_argument("--probe-every", type=int, default=4)
    parser.add_argument("--split", choices=("validation", "test"), default="validation",
                        help="instructions scored before and after: choose settings on validation (40 on cpu), "
                             "score the test split once, for the committed run")
    parser.add_argument("--n", type=int, default=200, help="at most this many of them")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    name = args.name or f"beta{args.beta:g}-steps{args.steps}"
    lr = args.lr or profile.rloo_learning_rate

    reward_dir = profile.checkpoint_dir / "reward_model"
    reward_tokenizer = load_tokenizer(str(reward_dir))
    reward = RewardModelReward(load_reward_model(str(reward_dir), reward_tokenizer), reward_tokenizer,
                               batch_size=profile.eval_batch_size)
    tokenizer, policy = load_tokenizer(profile.name), load_model(profile.name)
    scored_rows = list(load_task("instructions", profile, split=args.split))[:args.n]
    probe_rows = list(load_task("instructions", profile, split="validation"))[:args.probe]
    train_rows = list(load_task("instructions", profile, split="train"))
    record = {"name": name, "steps": args.steps, "beta": args.beta, "lr": lr, "max_new_tokens": args.max_new_tokens,
              "split": args.split, "instructions": len(scored_rows), "train_instructions": len(train_rows)}
    t0 = time.perf_counter()
    before = judge(policy, tokenizer, scored_rows, reward, args.max_new_tokens, profile.eval_batch_size)
    record["judge_min"] = (time.perf_counter() - t0) / 60

    probe = ProbeCallback(tokenizer, probe_rows, reward, args.max_new_tokens, profile.eval_batch_size, args.probe_every)
    start_probe = judge(policy, tokenizer, probe_rows, reward, args.max_new_tokens, profile.eval_batch_size)
    probe.curve.append({"step": 0, "reward_model": float(start_probe["reward_model"].mean()),
                        "checker": float(start_probe["satisfied"].mean())})
    dataset = Dataset.from_list([{"prompt": p, "constraints": r["constraints"]}
                                 for p, r in zip(instruction_prompts(train_rows), train_rows)])
    seed_everything()
    config = rloo_config(profile, profile.checkpoint_dir / f"instruction_rloo_{name}", max_steps=args.steps,
                         beta=args.beta, learning_rate=lr, max_completion_length=args.max_new_tokens,
                         save_strategy="no")
    t1 = time.perf_counter()
    trainer = run_rloo(policy, tokenizer, dataset, [reward], config, peft_config=lora_config(target="all-linear"),
                       callbacks=[probe])
    record["train_min"] = (time.perf_counter() - t1) / 60
    after = judge(merge_lora(trainer.model), tokenizer, scored_rows, reward, args.max_new_tokens, profile.eval_batch_size)
    change = paired_comparison(before["satisfied"], after["satisfied"])
    for key in ("before", "after", "fixed", "broken", "ci_low", "ci_high"):
        record[f"checker_{key}"] = change[key]
    record["reward_model_before"] = before["reward_model"].mean()
    record["reward_model_after"] = after["reward_model"].mean()
    record["total_min"] = (time.perf_counter() - t0) / 60
    print(pd.Series(record).to_string())
    out = profile.data_dir("processed")
    pd.DataFrame(probe.curve).to_csv(out / f"instruction_rloo_probe_curve_{name}.csv", index=False)
    examples = pd.DataFrame({"instruction": [r["messages"][0]["content"] for r in scored_rows],
                             "constraints": [r["constraints"] for r in scored_rows], "before": before["answers"],
                             "after": after["answers"], "checker_before": before["satisfied"],
                             "checker_after": after["satisfied"], "reward_model_after": after["reward_model"]})
    examples.to_json(out / f"instruction_rloo_probe_answers_{name}.jsonl", orient="records", lines=True)
    path = out / "instruction_rloo_probe.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if len(table):
        table = table[table["name"] != name]
    pd.concat([table, pd.DataFrame([record])], ignore_index=True).to_csv(path, index=False)


if __name__ == "__main__":
    main()
