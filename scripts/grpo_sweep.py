"""Try one GRPO configuration on the validation split and append its result to a table.

    .venv/bin/python scripts/grpo_sweep.py --name filtered-lr5e-4 --steps 24 --lr 5e-4
    .venv/bin/python scripts/grpo_sweep.py --name unfiltered --no-filter
    .venv/bin/python scripts/grpo_sweep.py --name notebook-5 --trained checkpoints/cpu/grpo   # score notebook 5's model, don't train

Notebook 5's settings were chosen with this script: each run starts from the SFT checkpoint (notebook 3),
picks training prompts (by default those whose pass rate, from ``--k`` samples each, is strictly between 0 and 1),
trains with TRL's GRPOTrainer, and scores the merged model on the math *validation* split (greedy and sampled
at the training temperature), never on the test split. Results go to
``data/processed/<profile>/grpo_sweep.csv``, one row per configuration (a re-run replaces its row).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd
from datasets import Dataset

from helpers.chat import task_prompt
from helpers.config import get_profile, seed_everything
from helpers.data import load_task
from helpers.evaluation import math_scores, paired_comparison, pass_rate_filter, training_problems
from helpers.generation import weights_fingerprint
from helpers.models import load_model, load_tokenizer, merge_lora
from helpers.rewards import format_reward, math_accuracy_reward
from helpers.training import grpo_config, lora_config, run_grpo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--candidates", type=int, default=None,
                        help="training prompts whose pass rate is measured (default: the profile's)")
    parser.add_argument("--k", type=int, default=4, help="samples per candidate prompt for its pass rate")
    parser.add_argument("--no-filter", action="store_true", help="train on every candidate prompt")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the profile's)")
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the profile's)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--target", default="all-linear", choices=["attention", "all-linear"])
    parser.add_argument("--max-completion", type=int, default=64)
    parser.add_argument("--beta", type=float, default=0.0)
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature of the filter, training and sampled scores (default: the profile's)")
    parser.add_argument("--eval-samples", type=int, default=4)
    parser.add_argument("--trained", default=None,
                        help="a model already trained with these settings (e.g. notebook 5's checkpoints/cpu/grpo): "
                             "score it on the validation split instead of training again")
    args = parser.parse_args()

    # the sweep's sampling settings, as a profile: the start model's measurements then come from the same
    # generation cache as the notebooks' (free the second time)
    base = get_profile(args.profile)
    # unset settings are the profile's, named in the row so that it still reads right after the profile changes
    defaults = {"candidates": base.rl_candidate_prompts, "steps": base.rl_steps, "lr": base.rl_learning_rate,
                "temperature": base.rl_temperature}
    for name, value in defaults.items():
        if getattr(args, name) is None:  # not `or`: an explicit 0 (temperature 0) is a setting, not "unset"
            setattr(args, name, value)
    profile = dataclasses.replace(base, rl_temperature=args.temperature, rl_candidate_prompts=args.candidates,
                                  rl_pass_rate_samples=args.k, max_completion_length=args.max_completion,
                                  eval_samples=args.eval_samples)
    sft_dir = profile.checkpoint_dir / "sft"
    tokenizer = load_tokenizer(str(sft_dir))
    model = load_model(str(sft_dir))
    validation = list(load_task("math", profile, split="validation"))
    # which SFT model the row starts from: rows made from another notebook-3 run are not comparable with it
    record = {"name": args.name, **{k: v for k, v in vars(args).items() if k not in ("name", "profile")},
              "start_model": f"sft {weights_fingerprint(model)[:8]}", "validation_problems": len(validation)}
    t0 = time.perf_counter()

    candidates = list(load_task("math", profile, split="train").select(range(args.candidates)))
    if args.no_filter:
        chosen = candidates
    else:
        pass_rate, mixed = pass_rate_filter(model, tokenizer, candidates, profile)
        record["pass_rate_hist"] = pass_rate.value_counts().sort_index().to_dict()
        chosen = training_problems(mixed, candidates, args.prompts_per_step)  # as notebook 5 and helpers.train choose
    record["train_prompts"] = len(chosen)
    record["filter_min"] = (time.perf_counter() - t0) / 60
    before = math_scores(model, tokenizer, validation, profile)

    if args.trained:
        after = math_scores(load_model(args.trained), tokenizer, validation, profile)
    else:
        dataset = Dataset.from_list([{"prompt": task_prompt(row), "answer": row["answer"]} for row in chosen])
        seed_everything()
        config = grpo_config(profile, profile.checkpoint_dir / f"sweep_{args.name}", max_steps=args.steps,
                             num_generations=args.generations,
                             per_device_train_batch_size=args.generations * args.prompts_per_step,
                             learning_rate=args.lr, max_completion_length=args.max_completion, beta=args.beta,
                             reward_weights=[1.0, 0.2], save_strategy="no")
        t1 = time.perf_counter()
        trainer = run_grpo(model, tokenizer, dataset, [math_accuracy_reward, format_reward], config,
                           peft_config=lora_config(r=args.rank, alpha=2 * args.rank, target=args.target))
        record["train_min"] = (time.perf_counter() - t1) / 60
        record["s_per_step"] = record["train_min"] * 60 / args.steps
        history = pd.DataFrame([h for h in trainer.state.log_history if "reward" in h])
        record["train_reward_first4"] = history["reward"].head(4).mean()
        record["train_reward_last4"] = history["reward"].tail(4).mean()
        after = math_scores(merge_lora(trainer.model), tokenizer, validation, profile)
    greedy = paired_comparison(before["greedy_correct"], after["greedy_correct"])
    sampled = paired_comparison(before["sampled_rate"], after["sampled_rate"])
    for metric, result in (("greedy", greedy), ("sampled", sampled)):
        for key in ("before", "after", "fixed", "broken", "ci_low", "ci_high"):
            record[f"{metric}_{key}"] = result[key]
    record["total_min"] = (time.perf_counter() - t0) / 60
    print(pd.Series(record).to_string())

    path = profile.data_dir("processed") / "grpo_sweep.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if len(table):
        table = table[table["name"] != args.name]
    pd.concat([table, pd.DataFrame([record])], ignore_index=True).to_csv(path, index=False)


if __name__ == "__main__":
    main()
