"""What one GRPO step costs: completions per CPU-second for GRPO settings side by side, in one run.

    .venv/bin/python scripts/grpo_step_cost.py            # the cpu profile's SFT checkpoint, 4 steps each
    .venv/bin/python scripts/grpo_step_cost.py --steps 3
    .venv/bin/python scripts/grpo_step_cost.py --only "fp32, prompt read once, only rows" --out FILE  # a subset

Each setting runs a few steps of TRL's GRPOTrainer from the same start model on the same prompts; the first
step is a warm-up and is not counted. CPU-seconds are the process's CPU time (all threads), so the number
does not depend on how many cores there are. bf16 is measured too (autocast for the loss, a bf16 copy of the
policy for sampling: what the course does where ``helpers.config.cpu_bf16_enabled``), and labelled with whether
this CPU has native bf16: without AMX or AVX512-BF16 it is emulated. The float32 rows switch bf16 off with
``COURSE_CPU_BF16=0``, so both ways are measured on the same machine in one run. The rows without "prompt read
once" score completions as TRL does, each row reading its prompt again (``helpers.prompt_once``); the rows without
"only rows with signal" score every completion, also those whose group all scored the same (``helpers.signal_rows``).
The row "sampled by TRL" samples as TRL's trainer does, from the training model itself (LoRA unmerged, dropout on),
instead of the merged copy ``helpers.generation.sampler`` hands the course's trainers.
Writes ``data/processed/<profile>/grpo_step_cost.csv`` (or ``--out``), one row per setting, with this machine's
core count and whether its CPU has native bf16: compare rows of one file only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path

import pandas as pd
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOTrainer

from helpers.chat import task_prompt
from helpers.config import cpu_has_native_bf16, get_profile, seed_everything
from helpers.data import load_task
from helpers.models import load_model, load_tokenizer
from helpers.rewards import format_reward, math_accuracy_reward
from helpers.training import CourseGRPOTrainer, grpo_config, lora_config, run_grpo


@contextlib.contextmanager
def as_trl(*methods: str):
    """TRL's own ``methods`` instead of the course's overrides, for the block: ``_get_per_token_logps_and_entropies``
    (each completion's row reads its prompt again, not ``helpers.prompt_once``), ``_compute_loss`` (every completion
    scored, not only those with a learning signal, ``helpers.signal_rows``)."""
    for method in methods:
        setattr(CourseGRPOTrainer, method, getattr(GRPOTrainer, method))
    try:
        yield
    finally:
        for method in methods:
            delattr(CourseGRPOTrainer, method)


class StepClock(TrainerCallback):
    """Wall and CPU time of every optimizer step (sampling included: TRL generates inside the step)."""

    def __init__(self):
        self.marks = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.marks.append(("begin", time.perf_counter(), time.process_time()))

    def on_step_end(self, args, state, control, **kwargs):
        self.marks.append(("end", time.perf_counter(), time.process_time()))


SCORING = "_get_per_token_logps_and_entropies"  # the prompt read once
LOSS = "_compute_loss"  # only the completions with a learning signal scored
SAMPLING = "_generate_single_turn"  # sampled from a merged copy of the policy
SETTINGS = {
    # name: (prompts per step, completions per prompt, max completion tokens, LoRA target, bf16, TRL's methods used)
    "before: 2 x 8, 96 tokens, attention LoRA, fp32": (2, 8, 96, "attention", False, (SCORING, LOSS)),
    "4 x 4, 64 tokens, all-linear LoRA, fp32": (4, 4, 64, "all-linear", False, (SCORING, LOSS)),
    "4 x 4, fp32, prompt read once": (4, 4, 64, "all-linear", False, (LOSS,)),
    "4 x 4, fp32, prompt read once, only rows with signal, sampled by TRL": (4, 4, 64, "all-linear", False,
                                                                            (SAMPLING,)),
    "4 x 4, fp32, prompt read once, only rows with signal": (4, 4, 64, "all-linear", False, ()),
    "4 x 4, bf16 (autocast loss, bf16 sampling copy)": (4, 4, 64, "all-linear", True, (SCORING, LOSS)),
    "4 x 4, bf16, prompt read once": (4, 4, 64, "all-linear", True, (LOSS,)),
    "4 x 4, bf16, prompt read once, only rows with signal (the course's step)": (4, 4, 64, "all-linear", True, ()),
}
EMULATED_BF16_STEPS = 2  # without native bf16 a step takes minutes: one warm-up step and one timed step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--steps", type=int, default=4, help="steps per setting; the first is not counted")
    parser.add_argument("--only", default="", help="measure only the settings whose name contains this")
    parser.add_argument("--out", default=None, help="the CSV to write (default: data/processed/<profile>/...)")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    start = profile.checkpoint_dir / "sft"
    start = str(start) if (start / "config.json").exists() else profile.name
    tokenizer = load_tokenizer(start)
    train = load_task("math", profile, split="train")
    rows = list(train.select(range(min(64, len(train)))))
    dataset = Dataset.from_list([{"prompt": task_prompt(r), "answer": r["answer"]} for r in rows])
    native = cpu_has_native_bf16()
    out = Path(args.out) if args.out else profile.data_dir("processed") / "grpo_step_cost.csv"
    settings = {name: setting for name, setting in SETTINGS.items() if args.only in name}
    if not settings:
        raise SystemExit(f"no setting name contains {args.only!r}; the settings: {list(SETTINGS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for name, (prompts, generations, max_tokens, target, bf16, trl_methods) in settings.items():
        os.environ["COURSE_CPU_BF16"] = "1" if bf16 else "0"  # the sampling copy follows the same switch
        seed_everything()
        steps = EMULATED_BF16_STEPS if bf16 and not native else args.steps
        config = grpo_config(profile, profile.checkpoint_dir / "step_cost_run", max_steps=steps,
                             num_generations=generations, per_device_train_batch_size=prompts * generations,
                             max_completion_length=max_tokens, bf16=bf16, save_strategy="no",
                             reward_weights=[1.0, 0.2], logging_steps=1)
        clock = StepClock()
        model = load_model(start)
        with as_trl(*trl_methods):
            trainer = run_grpo(model, tokenizer, dataset, [math_accuracy_reward, format_reward], config,
                               peft_config=lora_config(target=target), callbacks=[clock])
        counted = [(b, e) for b, e in zip(clock.marks[0::2], clock.marks[1::2])][1:]
        wall = sum(e[1] - b[1] for b, e in counted)
        cpu = sum(e[2] - b[2] for b, e in counted)
        completions = len(counted) * prompts * generations
        tokens = pd.DataFrame([h for h in trainer.state.log_history if "completions/mean_length" in h])
        results.append({"setting": name, "native bf16": native if bf16 else None, "cores": os.cpu_count(),
                        "cpu has native bf16": native, "steps timed": len(counted),
                        "completions per step": prompts * generations,
                        "mean completion tokens": round(tokens["completions/mean_length"].iloc[1:].mean(), 1),
                        # what "only rows with signal" skips: these prompts are not filtered by pass rate
                        "groups without signal": round(tokens["frac_reward_zero_std"].iloc[1:].mean(), 2),
                        "s per step": round(wall / len(counted), 1),
                        "completions per CPU-second": round(completions / cpu, 3),
                        "completions per wall-second": round(completions / wall, 3)})
        del trainer, model
        table = pd.DataFrame(results).set_index("setting")
        table.to_csv(out)  # after every setting: an interrupted run keeps what it measured
    print(table.to_string())


if __name__ == "__main__":
    main()
