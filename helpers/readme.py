"""The README's tables, rendered so that they cannot go stale: results from the committed result files, plans from
the functions that compute them.

Each table sits in the README between ``<!-- name:start -->`` and ``<!-- name:end -->``.
``python -m helpers.readme`` rewrites every block (results from ``data/processed/cpu/``; the ``gpu`` profile's
memory and time plans from ``helpers.memory`` and ``helpers.time_plan``); a test checks that the README equals
what they give.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from helpers import memory, time_plan
from helpers.config import REPO_ROOT, get_profile
from helpers.evaluation import describe_change, markdown_table, stage_results_markdown

RESULTS_DIR = REPO_ROOT / "data" / "processed" / "cpu"  # the committed result files, in the repository
README = REPO_ROOT / "README.md"


def _change(row: pd.Series, metric: str) -> str:
    result = {k: row[f"{metric}_{k}"] for k in ("before", "after", "ci_low", "ci_high")}
    return (f"{result['before']:.1%} → {result['after']:.1%} ({int(row[f'{metric}_fixed'])} up / "
            f"{int(row[f'{metric}_broken'])} down), {describe_change(result)}")


def grpo_sweep_markdown(path: Path) -> str:
    """One row per GRPO configuration scored on the validation split by ``scripts/grpo_sweep.py``, with the SFT
    model it started from (rows from different notebook-3 runs do not compare)."""
    sweep = pd.read_csv(path)
    rows = [{"configuration": r["name"], "start model": r["start_model"], "training problems": int(r["train_prompts"]),
             "steps": int(r["steps"]),
             "learning rate": r["lr"], "beta": r["beta"], "temperature": r["temperature"],
             "validation problems": int(r["validation_problems"]),
             "greedy": _change(r, "greedy"), "sampled": _change(r, "sampled")} for _, r in sweep.iterrows()]
    return markdown_table(pd.DataFrame(rows), float_format="{:g}", index=False)


def instruction_study_markdown(path: Path) -> str:
    """One row per RLOO run on instruction following scored on the validation split by
    ``scripts/instruction_reward_study.py``: the reward model's training pairs and its accuracy on held-out pairs of
    the policy's own answers, the settings, and the paired change of the checker's rate."""
    study = pd.read_csv(path)
    rows = [{"configuration": r["name"], "reward model trained on": r["reward model pairs"],
             "its accuracy on the policy's answers": "–" if pd.isna(r["reward model on-policy accuracy"])
             else f"{r['reward model on-policy accuracy']:.0%}",
             "steps": int(r["steps"]), "learning rate": r["learning rate"], "beta": r["beta"],
             "validation instructions": int(r["n"]),
             "checker": f"{r['before']:.1%} → {r['after']:.1%} ({int(r['fixed'])} up / {int(r['broken'])} down), "
                        f"{describe_change(r.to_dict())}",
             "minutes": r["minutes"]} for _, r in study.iterrows()]
    return markdown_table(pd.DataFrame(rows), float_format="{:g}", index=False)


def dpo_study_markdown(path: Path) -> str:
    """One row per DPO run on instruction following scored on the validation split by
    ``scripts/instruction_reward_study.py dpo``: which pairs (written, or the start model's own answers ranked by the
    reward model), how many, the settings, and the paired change of the checker's rate."""
    study = pd.read_csv(path)
    kinds = {"offline": "written (off-policy)", "onpolicy": "own answers ranked by the reward model (on-policy)"}
    rows = [{"configuration": r["name"], "pairs": kinds[r["pairs"]], "training pairs": int(r["train pairs"]),
             "steps": int(r["steps"]), "pairs per step": int(r["pairs per step"]), "learning rate": r["learning rate"],
             "beta": r["beta"], "validation instructions": int(r["n"]),
             "checker": f"{r['before']:.1%} → {r['after']:.1%} ({int(r['fixed'])} up / {int(r['broken'])} down), "
                        f"{describe_change(r.to_dict())}",
             "minutes": r["minutes"]} for _, r in study.iterrows()]
    return markdown_table(pd.DataFrame(rows), float_format="{:g}", index=False)



def step_cost_markdown(path: Path) -> str:
    """A ``scripts/grpo_step_cost.py`` table, one row per setting (one file per machine)."""
    return markdown_table(pd.read_csv(path, index_col=0), float_format="{:.3g}")


BLOCKS = {
    "stage-results": ("stage_results.csv", stage_results_markdown),
    "leaderboard": ("leaderboard.md", lambda path: path.read_text(encoding="utf-8")),
    "grpo-step-cost": ("grpo_step_cost.csv", step_cost_markdown),
    "grpo-step-cost-fp32": ("grpo_step_cost_fp32.csv", step_cost_markdown),
    "grpo-sweep": ("grpo_sweep.csv", grpo_sweep_markdown),
    "instruction-rloo-study": ("instruction_rloo_study.csv", instruction_study_markdown),
    "instruction-dpo-study": ("instruction_dpo_study.csv", dpo_study_markdown),
    "bf16-sampling-gap": ("bf16_sampling_gap.csv",
                          lambda path: markdown_table(pd.read_csv(path, index_col=0), float_format="{:.4g}")),
}


# Computed, not measured: the plans of the gpu course (no GPU was lent while the course was built)
PLANS = {
    "memory-plan-gpu": lambda: memory.plan_markdown(get_profile("gpu")),
    "memory-plan-t4": lambda: memory.plan_markdown(get_profile("t4")),
    "time-plan-gpu": lambda: time_plan.plan_markdown(get_profile("gpu")),
}


def block(name: str, results_dir: Path = RESULTS_DIR) -> str:
    """The Markdown of one README block, or a line saying the file is not committed yet."""
    if name in PLANS:
        return PLANS[name]().strip()
    file_name, render = BLOCKS[name]
    path = results_dir / file_name
    return render(path).strip() if path.exists() else f"(no `{file_name}` committed yet)"


def render_readme(text: str, results_dir: Path = RESULTS_DIR) -> str:
    """``text`` with every block that it contains replaced by ``block(name)``."""
    for name in [*BLOCKS, *PLANS]:
        start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
        if start in text and end in text:
            head, rest = text.split(start, 1)
            text = head + start + block(name, results_dir) + "\n" + end + rest.split(end, 1)[1]
    return text


if __name__ == "__main__":
    README.write_text(render_readme(README.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"rewrote the result and plan blocks of {README.name}")
