"""Which reward model can RLOO use on instruction following? Notebook 6's settings, chosen on the validation split.

    .venv/bin/python scripts/instruction_reward_study.py samples
    .venv/bin/python scripts/instruction_reward_study.py rm --pairs both --rm-instructions 180 --rm-name both180
    .venv/bin/python scripts/instruction_reward_study.py rloo --rm-name both180 --steps 20 --name both180

``samples``: the start model (the profile's initial instruct model) answers every training and validation
instruction ``--k`` times; the checker scores each answer (share of constraints met). ``rm``: a reward model trained
on the written preference pairs (``--pairs offline``), on the start model's own answers paired best against worst by
the checker (``onpolicy``, the first ``--rm-instructions`` training instructions), or on both; it prints the share of
held-out pairs of the policy's answers (validation instructions) it ranks right. ``rloo``: RLOO from the start model
with that reward model as the only reward; every ``--every`` steps the policy answers the validation instructions
greedily and the reward model's mean score and the checker's rate are printed; the paired change of the checker's
rate is appended to ``data/processed/<profile>/instruction_rloo_study.csv`` (a re-run with the same ``--name``
replaces its row), which notebook 6 shows. Settings are chosen on the validation split; the test split is scored
once, by notebook 6. Each command loads what the previous one wrote under ``checkpoints/<profile>/instruction_study``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from datasets import Dataset

from helpers.chat import row_prompt
from helpers.config import get_profile, seed_everything
from helpers.data import load_task
from helpers.evaluation import paired_comparison
from helpers.generation import sample_completions
from helpers.models import load_model, load_tokenizer, merge_lora, save_model
from helpers.preferences import RewardModelReward, RewardProbe, best_vs_worst_pairs, load_reward_model, score_pairs
from helpers.rewards import check_instruction_constraints
from helpers.training import (
    lora_config,
    reward_config,
    reward_model_lora_config,
    rloo_config,
    run_reward_model,
    run_rloo,
)

PAIR_COLUMNS = ("prompt", "chosen", "rejected")


def study_dir(profile):
    path = profile.checkpoint_dir / "instruction_study"
    path.mkdir(parents=True, exist_ok=True)
    return path


def instruction_rows(profile, split):
    return list(load_task("instructions", profile, split=split))


def cmd_samples(args, profile):
    tokenizer, policy = load_tokenizer(profile.name), load_model(profile.name)
    for split in ("train", "validation"):
        rows = instruction_rows(profile, split)
        start = time.perf_counter()
        groups = sample_completions(policy, tokenizer, [row_prompt(r) for r in rows], k=args.k,
                                    max_new_tokens=profile.max_completion_length, temperature=args.temperature,
                                    batch_size=args.batch, seed=0)
        shares = [[check_instruction_constraints(t, r["constraints"]) for t in g] for g, r in zip(groups, rows)]
        with open(study_dir(profile) / f"samples_{split}.json", "w") as f:
            json.dump([{"samples": g, "share": s} for g, s in zip(groups, shares)], f)
        shares = np.array(shares)
        print(f"{split}: {len(rows)} instructions in {(time.perf_counter() - start) / 60:.1f} min; every constraint met "
              f"{(shares == 1).mean():.3f}; {int((shares.max(1) > shares.min(1)).sum())} give a pair", flush=True)


def onpolicy_pairs(profile, split, limit=None):
    rows = instruction_rows(profile, split)[:limit]
    with open(study_dir(profile) / f"samples_{split}.json") as f:
        records = json.load(f)[:limit]
    pairs = best_vs_worst_pairs([row_prompt(r) for r in rows], [r["samples"] for r in records],
                                [r["share"] for r in records])
    return [{**p, "constraints": rows[p["prompt_index"]]["constraints"]} for p in pairs]


def cmd_rm(args, profile):
    pairs = []
    if args.pairs in ("offline", "both"):
        pairs += [{c: r[c] for c in PAIR_COLUMNS} for r in load_task("preferences", profile, split="train")]
    if args.pairs in ("onpolicy", "both"):
        pairs += [{c: p[c] for c in PAIR_COLUMNS} for p in onpolicy_pairs(profile, "train", args.rm_instructions)]
    tokenizer = load_tokenizer(profile.name)
    seed_everything()
    config = reward_config(profile, study_dir(profile) / f"rm_run_{args.rm_name}", max_steps=args.steps,
                           save_strategy="no")
    start = time.perf_counter()
    trainer = run_reward_model(load_reward_model(profile.name, tokenizer), tokenizer,
                               Dataset.from_list(pairs).shuffle(seed=0), config, peft_config=reward_model_lora_config())
    minutes = (time.perf_counter() - start) / 60
    merged = merge_lora(trainer.model)
    heldout = score_pairs(merged, tokenizer, onpolicy_pairs(profile, "validation"), batch_size=profile.eval_batch_size)
    written = score_pairs(merged, tokenizer, load_task("preferences", profile, split="test"),
                          batch_size=profile.eval_batch_size)
    on_policy = "" if args.pairs == "offline" else f" + on-policy pairs of {args.rm_instructions or 'all'} instructions"
    summary = {"pairs": ("written pairs" if args.pairs != "onpolicy" else "") + on_policy, "train_pairs": len(pairs),
               "steps": args.steps, "minutes": minutes, "onpolicy_accuracy": float(heldout["correct"].mean()),
               "onpolicy_pairs": len(heldout), "written_accuracy": float(written["correct"].mean())}
    out = save_model(merged, study_dir(profile) / f"rm_{args.rm_name}", tokenizer)
    (out / "study.json").write_text(json.dumps(summary, indent=1))
    print(summary, flush=True)


def cmd_rloo(args, profile):
    rm_dir = study_dir(profile) / f"rm_{args.rm_name}"
    rm_summary = json.loads((rm_dir / "study.json").read_text())
    rm_tokenizer = load_tokenizer(str(rm_dir))
    reward = RewardModelReward(load_reward_model(str(rm_dir), rm_tokenizer), rm_tokenizer,
                               batch_size=profile.eval_batch_size)
    tokenizer, policy = load_tokenizer(profile.name), load_model(profile.name)
    train_rows = instruction_rows(profile, "train")
    probe = RewardProbe(tokenizer, instruction_rows(profile, "validation"), reward, profile.max_completion_length,
                        every=args.every, batch_size=profile.eval_batch_size)
    start = time.perf_counter()
    print(probe.measure(policy, 0), flush=True)
    before = probe.answers
    dataset = Dataset.from_list([{"prompt": row_prompt(r)} for r in train_rows]).shuffle(seed=0)
    seed_everything()
    config = rloo_config(profile, study_dir(profile) / f"rloo_{args.name}", max_steps=args.steps, beta=args.beta,
                         learning_rate=args.lr, temperature=args.temperature, save_strategy="no")
    trainer = run_rloo(policy, tokenizer, dataset, [reward], config, peft_config=lora_config(target="all-linear"),
                       callbacks=[probe])
    if args.steps % args.every:
        probe.measure(merge_lora(trainer.model), args.steps)
    print(probe.curve[-1], flush=True)
    change = paired_comparison(before["checker"], probe.answers["checker"])
    row = {"name": args.name, "reward model pairs": rm_summary["pairs"],
           "reward model on-policy accuracy": rm_summary["onpolicy_accuracy"], "steps": args.steps,
           "learning rate": args.lr, "beta": args.beta, "temperature": args.temperature, "split": "validation",
           **{k: change[k] for k in ("n", "before", "after", "fixed", "broken", "ci_low", "ci_high")},
           "reward model before": probe.curve[0]["reward_model"], "reward model after": probe.curve[-1]["reward_model"],
           "minutes": round((time.perf_counter() - start) / 60, 1)}
    print(row, flush=True)
    pd.DataFrame(probe.curve).to_csv(study_dir(profile) / f"curve_{args.name}.csv", index=False)
    path = profile.data_dir("processed") / "instruction_rloo_study.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=list(row))
    table = pd.concat([table[table["name"] != args.name], pd.DataFrame([row])], ignore_index=True)
    table.to_csv(path, index=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cmd", choices=("samples", "rm", "rloo"))
    parser.add_argument("--profile", default=None)
    parser.add_argument("--k", type=int, default=4, help="samples: answers per instruction")
    parser.add_argument("--temperature", type=float, default=1.0, help="samples and rloo: sampling temperature")
    parser.add_argument("--batch", type=int, default=16, help="samples: instructions per generate call")
    parser.add_argument("--pairs", choices=("offline", "onpolicy", "both"), default="both", help="rm: training pairs")
    parser.add_argument("--rm-instructions", type=int, default=None, help="rm: training instructions giving on-policy pairs")
    parser.add_argument("--rm-name", default=None, help="rm and rloo: the reward model's name (default: --pairs)")
    parser.add_argument("--steps", type=int, default=None, help="rm: 100 by default; rloo: the profile's rloo_steps")
    parser.add_argument("--beta", type=float, default=0.05, help="rloo: KL coefficient")
    parser.add_argument("--lr", type=float, default=None, help="rloo: the profile's rloo_learning_rate by default")
    parser.add_argument("--every", type=int, default=4, help="rloo: steps between two probe measurements")
    parser.add_argument("--name", default="run", help="rloo: the row's name")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    args.rm_name = args.rm_name or args.pairs
    args.steps = args.steps or (100 if args.cmd == "rm" else profile.rloo_steps)
    args.lr = args.lr or profile.rloo_learning_rate
    {"samples": cmd_samples, "rm": cmd_rm, "rloo": cmd_rloo}[args.cmd](args, profile)


if __name__ == "__main__":
    main()
