"""Which reward model can RLOO use on instruction following, and which pairs DPO? Notebook 6's and 7's settings,
chosen on the validation split.

    .venv/bin/python scripts/instruction_reward_study.py samples
    .venv/bin/python scripts/instruction_reward_study.py rm --pairs both --rm-instructions 180 --rm-name both180
    .venv/bin/python scripts/instruction_reward_study.py rloo --rm-name both180 --steps 20 --name both180
    .venv/bin/python scripts/instruction_reward_study.py kl --names both-b0.05 both360-lr2e-4-beta0.2 --betas 0.05 0.2
    .venv/bin/python scripts/instruction_reward_study.py dpo --pairs onpolicy --rm-name reward_model \
        --rm-instructions 120 --steps 30 --dpo-batch 4 --lr 5e-4 --name onpolicy120-s30-b4-lr5e-4

``samples``: the start model (the profile's initial instruct model) answers every training and validation
instruction ``--k`` times; the checker scores each answer (share of constraints met). ``rm``: a reward model trained
on the written preference pairs (``--pairs offline``), on the start model's own answers paired best against worst by
the checker (``onpolicy``, the first ``--rm-instructions`` training instructions), or on both; it prints the share of
held-out pairs of the policy's answers (validation instructions) it ranks right. ``rloo``: RLOO from the start model
with that reward model as the only reward; every ``--every`` steps the policy answers the validation instructions
greedily and the reward model's mean score and the checker's rate are printed; the paired change of the checker's
rate is appended to ``data/processed/<profile>/instruction_rloo_study.csv`` (a re-run with the same ``--name``
replaces its row), which notebook 6 shows. ``dpo``: DPO from the start model on the written pairs (``--pairs
offline``) or on its own answers to the first ``--rm-instructions`` training instructions, best against worst by the
reward model in ``checkpoints/<profile>/<--rm-name>`` (``onpolicy``; notebook 6's is ``reward_model``); the paired
change of the checker's rate on the validation instructions goes to ``instruction_dpo_study.csv`` (notebook 7 and
the README show it). ``kl``: the probe curves of ``rloo`` runs with different ``--beta`` side by side, to
``instruction_rloo_kl_curves.csv`` and ``figures/<profile>/06_rloo_kl_comparison.png``. Settings are chosen on the
validation split; the test split is scored once, by notebooks 6 and 7. Each command loads what the previous one
wrote under ``checkpoints/<profile>/instruction_study``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset

from helpers.chat import row_prompt
from helpers.config import get_profile, seed_everything
from helpers.data import load_task
from helpers.evaluation import evaluate_model, paired_comparison
from helpers.generation import sample_completions
from helpers.models import load_model, load_tokenizer, merge_lora, save_model
from helpers.preferences import (
    RewardModelReward,
    RewardProbe,
    best_vs_worst_pairs,
    load_reward_model,
    score_conversations,
    score_pairs,
)
from helpers.rewards import check_instruction_constraints
from helpers.training import (
    dpo_config,
    lora_config,
    reward_config,
    reward_model_lora_config,
    rloo_config,
    run_dpo,
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


def reward_model_pairs(profile, rm_dir, limit=None, min_margin=0.0):
    """The start model's answers to the training instructions, best vs worst by the reward model's score (kept if
    the two scores differ by more than ``min_margin``). The scores are saved beside the samples, to be read again."""
    rows = instruction_rows(profile, "train")[:limit]
    with open(study_dir(profile) / "samples_train.json") as f:
        records = json.load(f)[:limit]
    scores_path = study_dir(profile) / f"rm_scores_train_{Path(rm_dir).name}.json"
    prompts = [row_prompt(r) for r in rows]
    known = json.loads(scores_path.read_text()) if scores_path.exists() else []
    if len(known) < len(records):
        tokenizer = load_tokenizer(str(rm_dir))
        model = load_reward_model(str(rm_dir), tokenizer)
        flat = score_conversations(model, tokenizer, [p for p, r in zip(prompts, records) for _ in r["samples"]],
                                   [[{"role": "assistant", "content": t}] for r in records for t in r["samples"]],
                                   batch_size=profile.eval_batch_size)
        known, start = [], 0
        for r in records:
            known.append(flat[start:start + len(r["samples"])])
            start += len(r["samples"])
        scores_path.write_text(json.dumps(known))
    scores = known[:len(records)]
    pairs = best_vs_worst_pairs(prompts, [r["samples"] for r in records], scores)
    pairs = [p for p in pairs if p["chosen_score"] - p["rejected_score"] > min_margin]
    agree = []  # +1: the checker also prefers the reward model's chosen answer; 0: it ties them; -1: the rejected one
    for pair in pairs:
        share = dict(zip(records[pair["prompt_index"]]["samples"], records[pair["prompt_index"]]["share"]))
        agree.append(int(np.sign(share[pair["chosen"][0]["content"]] - share[pair["rejected"][0]["content"]])))
    print(f"{len(pairs)} reward-model pairs; the checker agrees with {agree.count(1)}, ties {agree.count(0)}, "
          f"disagrees with {agree.count(-1)}", flush=True)
    return pairs


def cmd_dpo(args, profile):
    """DPO from the start model on the written pairs (``--pairs offline``) or on its own answers ranked by the reward
    model (``onpolicy``); the checker's rate on the validation instructions, greedy, before and after."""
    start = time.perf_counter()
    if args.pairs == "offline":
        pairs = [{c: r[c] for c in PAIR_COLUMNS} for r in load_task("preferences", profile, split="train")]
    else:
        pairs = [{c: p[c] for c in PAIR_COLUMNS} for p in
                 reward_model_pairs(profile, profile.checkpoint_dir / args.rm_name, args.rm_instructions,
                                    args.min_margin)]
    tokenizer, policy = load_tokenizer(profile.name), load_model(profile.name)
    rows = instruction_rows(profile, "validation")
    _, before = evaluate_model(policy, tokenizer, rows, profile.max_completion_length, profile.eval_batch_size)
    seed_everything()
    overrides = {k: v for k, v in (("max_steps", args.steps), ("learning_rate", args.lr), ("beta", args.beta),
                                   ("per_device_train_batch_size", args.dpo_batch)) if v is not None}
    config = dpo_config(profile, study_dir(profile) / f"dpo_{args.name}", save_strategy="no", **overrides)
    trainer = run_dpo(policy, tokenizer, Dataset.from_list(pairs).shuffle(seed=0), config,
                      peft_config=lora_config(target=profile.rl_lora_target))
    _, after = evaluate_model(merge_lora(trainer.model), tokenizer, rows, profile.max_completion_length,
                              profile.eval_batch_size)
    change = paired_comparison(before["correct"], after["correct"])
    row = {"name": args.name, "pairs": args.pairs, "min margin": args.min_margin, "train pairs": len(pairs), "steps": config.max_steps,
           "pairs per step": config.per_device_train_batch_size, "learning rate": config.learning_rate,
           "beta": config.beta, "split": "validation",
           **{k: change[k] for k in ("n", "before", "after", "fixed", "broken", "ci_low", "ci_high")},
           "minutes": round((time.perf_counter() - start) / 60, 1)}
    print(row, flush=True)
    path = profile.data_dir("processed") / "instruction_dpo_study.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=list(row))
    pd.concat([table[table["name"] != args.name], pd.DataFrame([row])], ignore_index=True).to_csv(path, index=False)


def cmd_kl(args, profile):
    """The probe curves of RLOO runs that differ in the KL coefficient, side by side: the reward model's mean score
    and the checker's rate on the validation instructions per step, to ``instruction_rloo_kl_curves.csv`` and
    ``figures/<profile>/06_rloo_kl_comparison.png``."""
    import matplotlib.pyplot as plt

    from helpers.plotting import save_figure

    if len(args.names) != len(args.betas):
        raise SystemExit(f"--names and --betas pair up: got {len(args.names)} names and {len(args.betas)} betas")
    curves = pd.concat([pd.read_csv(study_dir(profile) / f"curve_{name}.csv").assign(name=name, beta=beta)
                        for name, beta in zip(args.names, args.betas)], ignore_index=True)
    curves = curves.drop_duplicates(["name", "step"])  # a run whose last step was probed twice
    curves.to_csv(profile.data_dir("processed") / "instruction_rloo_kl_curves.csv", index=False)
    fig, (ax_rm, ax_checker) = plt.subplots(1, 2, figsize=(10, 3.5))
    for beta, curve in curves.groupby("beta"):
        ax_rm.plot(curve["step"], curve["reward_model"], marker="o", label=f"beta = {beta:g}")
        ax_checker.plot(curve["step"], curve["checker"], marker="s", label=f"beta = {beta:g}")
    ax_rm.set(xlabel="RLOO step", ylabel="reward model's mean score", title="what RLOO is paid")
    ax_checker.set(xlabel="RLOO step", ylabel="share of answers accepted", ylim=(0, 1), title="how the checker judges")
    for ax in (ax_rm, ax_checker):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"RLOO with two KL coefficients, {profile.name}: validation instructions")
    fig.tight_layout()
    print(save_figure(fig, "06_rloo_kl_comparison", profile))
    print(curves.round(3).to_string(index=False))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cmd", choices=("samples", "rm", "rloo", "dpo", "kl"))
    parser.add_argument("--profile", default=None)
    parser.add_argument("--k", type=int, default=4, help="samples: answers per instruction")
    parser.add_argument("--temperature", type=float, default=1.0, help="samples and rloo: sampling temperature")
    parser.add_argument("--batch", type=int, default=16, help="samples: instructions per generate call")
    parser.add_argument("--pairs", choices=("offline", "onpolicy", "both"), default="both", help="rm: training pairs")
    parser.add_argument("--rm-instructions", type=int, default=None, help="rm: training instructions giving on-policy pairs")
    parser.add_argument("--rm-name", default=None, help="rm and rloo: the reward model's name (default: --pairs)")
    parser.add_argument("--steps", type=int, default=None, help="rm: 100 by default; rloo: the profile's rloo_steps")
    parser.add_argument("--beta", type=float, default=None, help="rloo: KL coefficient (0.05); dpo: DPO's beta (0.1)")
    parser.add_argument("--lr", type=float, default=None, help="rloo: the profile's rloo_learning_rate by default")
    parser.add_argument("--every", type=int, default=4, help="rloo: steps between two probe measurements")
    parser.add_argument("--name", default="run", help="rloo and dpo: the row's name")
    parser.add_argument("--names", nargs="*", default=[], help="kl: the rloo runs' names, whose curves are compared")
    parser.add_argument("--betas", nargs="*", type=float, default=[], help="kl: each run's KL coefficient, in order")
    parser.add_argument("--min-margin", type=float, default=0.0, help="dpo: on-policy pairs' least reward-model gap")
    parser.add_argument("--dpo-batch", type=int, default=None, help="dpo: pairs per step (the profile's by default)")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    args.rm_name = args.rm_name or args.pairs
    if args.cmd in ("rm", "rloo"):  # dpo: the profile's dpo settings unless given
        args.steps = args.steps or (100 if args.cmd == "rm" else profile.rloo_steps)
        args.lr = args.lr or profile.rloo_learning_rate
        args.beta = 0.05 if args.beta is None else args.beta
    {"samples": cmd_samples, "rm": cmd_rm, "rloo": cmd_rloo, "dpo": cmd_dpo, "kl": cmd_kl}[args.cmd](args, profile)


if __name__ == "__main__":
    main()
