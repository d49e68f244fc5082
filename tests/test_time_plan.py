"""The time plan: its formula on hand-computed notebooks, the cache accounting, and the proposed gpu profile's budget."""

import dataclasses
import json

import pytest

from helpers.config import get_profile
from helpers.time_plan import QWEN25_05B_PARAMETERS, Lengths, Throughput, benchmark_figures, time_plan

# Round numbers: a pass over a token costs 1 s (peak x MFU = 2 x N FLOP/s), vLLM samples 10 tokens/s, a decode step
# takes 0.01 s on vLLM and 0.1 s in transformers, a model load 1 s, an engine 100 s, a notebook 1000 s besides.
ROUND = Throughput(vllm_tokens_per_s=10, vllm_step_s=0.01, hf_step_s=0.1, peak_flops=2 * QWEN25_05B_PARAMETERS, mfu=1.0,
                   rl_step_overhead_s=2, model_load_s=1, vllm_startup_s=100, notebook_overhead_s=1000)
SHORT = Lengths(prompt=7, completion=5, conversation=20, verified_share=0.5)
TINY_GPU = dataclasses.replace(get_profile("gpu"), n_math=40, n_eval=4, max_new_tokens=10, max_completion_length=10,
                               max_seq_length=64, eval_batch_size=2, sft_max_examples=3, sft_epochs=2,
                               rl_candidate_prompts=4, rl_pass_rate_samples=2, num_generations=2, rl_prompts_per_step=2,
                               rl_steps=3, eval_samples=2)

# What the gpu profile had before it was sized to fit 4 hours on one A100 with vLLM
BEFORE_SIZING = dict(sft_max_examples=None, rl_steps=300, rloo_steps=300, rl_candidate_prompts=2000,
                     dpo_steps=500, reward_model_steps=500)


def seconds(table, notebook, case="expected"):
    return table.loc[notebook, f"minutes ({case})"] * 60


def test_notebook_3_by_hand():
    """Greedy before (4 x 5 tokens), SFT (3 conversations x 2 epochs x 20 tokens, 3 passes: forward, activation
    gradients, checkpointing's recomputation), the two-prompt checks (the adapter's on transformers), greedy after."""
    on_vllm = time_plan(TINY_GPU, ROUND, SHORT)
    assert on_vllm.loc["03_lora_sft", "generated tokens (expected)"] == 4 * 5 + 2 * 5 + 2 * 5 + 4 * 5
    assert on_vllm.loc["03_lora_sft", "generated tokens (upper bound)"] == 12 * 10
    assert on_vllm.loc["03_lora_sft", "trained tokens (expected)"] == 3 * 2 * 20
    # overhead + before + SFT + adapter check (1 batch x 10 steps x 0.1 s) + reloaded check + after + loads + engines
    assert seconds(on_vllm, "03_lora_sft") == pytest.approx(1000 + 20 / 10 + 120 * 3 + 1 + 10 / 10 + 20 / 10 + 2 + 200)
    # upper bound: completions at their 10-token cap, conversations at max_seq_length 64
    assert seconds(on_vllm, "03_lora_sft", "upper bound") == pytest.approx(
        1000 + 40 / 10 + 3 * 2 * 64 * 3 + 1 + 20 / 10 + 40 / 10 + 2 + 200)
    # transformers: 4 prompts in batches of 2, each batch 10 steps of 0.1 s; no engine
    on_hf = time_plan(TINY_GPU, ROUND, SHORT, vllm=False)
    assert seconds(on_hf, "03_lora_sft") == pytest.approx(1000 + 2 + 360 + 1 + 1 + 2 + 2)


def test_notebook_5_by_hand():
    """Pass rates (4 problems x 2 samples), 5.3's group and GRPO by hand on transformers (PEFT), before and after
    (greedy: only the 2 rows notebook 3 did not score), and GRPO: 3 steps x 4 completions of 7 + 5 tokens."""
    on_vllm = time_plan(TINY_GPU, ROUND, SHORT)
    assert on_vllm.loc["05_grpo", "generated tokens (expected)"] == 5 * (8 + 2 + 40 + 2 + 8 + 12 + 4 + 8)
    assert on_vllm.loc["05_grpo", "trained tokens (expected)"] == 12 * (7 + 5)
    assert on_vllm.loc["05_grpo", "vLLM engines"] == 3  # the SFT model's, TRL's, the GRPO model's
    generation = 40 / 10 + 1 + 10 + 10 / 10 + 40 / 10 + 20 / 10 + 40 / 10  # by hand: 10 batches of 4 sequences
    grpo = 3 * (10 * 0.01 + 2) + 144 * 4  # 4 passes: + old log-probs for vLLM's importance sampling
    assert seconds(on_vllm, "05_grpo") == pytest.approx(1000 + generation + grpo + 1 + 300)
    on_hf = time_plan(TINY_GPU, ROUND, SHORT, vllm=False)
    generation = 2 + 1 + 10 + 1 + 2 + 2 + 2  # batches x 10 steps x 0.1 s; sampled batches hold 2 prompts x 2
    assert seconds(on_hf, "05_grpo") == pytest.approx(1000 + generation + 3 * (10 * 0.1 + 2) + 144 * 3 + 1)


def test_notebook_9_generates_only_what_the_earlier_notebooks_did_not():
    """Math rows up to n_eval were scored by notebook 5 for sft and grpo (cached); each row past it costs those two a
    completion each. The RLOO and DPO models, trained on instructions in notebooks 6 and 7, are scored on every row."""
    def generated(eval_math_prompts):
        profile = dataclasses.replace(TINY_GPU, eval_math_prompts=eval_math_prompts)
        return time_plan(profile, ROUND, SHORT).loc["09_evaluation", "generated tokens (expected)"]

    assert generated(TINY_GPU.n_eval) - generated(TINY_GPU.n_eval - 1) == 2 * 5  # rloo and dpo
    assert generated(TINY_GPU.n_eval + 3) - generated(TINY_GPU.n_eval) == 4 * 3 * 5  # sft, grpo, rloo, dpo: 3 rows, 5 tokens


def test_upper_bound_is_never_below_the_expected_case():
    table = time_plan(get_profile("gpu"))
    assert (table["minutes (upper bound)"] >= table["minutes (expected)"]).all()
    assert table.loc["total", "minutes (expected)"] == pytest.approx(table.drop("total")["minutes (expected)"].sum())


def test_the_gpu_profile_fits_four_hours_on_one_a100_with_vllm():
    proposed = get_profile("gpu")
    current = dataclasses.replace(proposed, **BEFORE_SIZING)
    plan = time_plan(proposed)
    assert plan.loc["total", "minutes (expected)"] < 240
    assert plan.loc["total", "minutes (upper bound)"] < 240  # even with every completion at its cap
    assert plan.loc["total", "minutes (expected)"] < time_plan(current).loc["total", "minutes (expected)"]
    # still meaningful: a paired interval on enough held-out problems, RL steps that move the model
    assert proposed.n_eval >= 200 and proposed.eval_math_prompts >= 200
    assert min(proposed.rl_steps, proposed.rloo_steps) * proposed.rl_prompts_per_step >= 1000


def test_measured_figures_replace_the_assumptions():
    measured = Throughput.from_measured({"sft_tokens_per_s": 13_000, "generation_tokens_per_s_vllm": 12_800,
                                         "generation_tokens_per_s_hf": 2_560}, batch=64)
    assert measured.mfu == pytest.approx(13_000 * 6 * QWEN25_05B_PARAMETERS / 312e12)  # 0.1235
    assert measured.vllm_tokens_per_s == 12_800
    assert measured.vllm_step_s == pytest.approx(0.005)
    assert measured.hf_step_s == pytest.approx(0.025)
    assert measured.model_load_s == Throughput().model_load_s  # not measured: still assumed
    assert Throughput.from_measured({}) == Throughput()


def test_benchmark_figures_read_the_benchmark_file(tmp_path):
    rows = [{"stage": "sft", "setting": "course", "tokens_per_s": 20_000.0},
            {"stage": "sft", "setting": "trl-defaults", "tokens_per_s": 9_000.0},
            {"stage": "generation", "setting": "transformers", "tokens_per_s": 3_000.0},
            {"stage": "generation", "setting": "vllm", "error": "ImportError: vllm"}]
    path = tmp_path / "benchmark_nvidia-h200.json"
    path.write_text(json.dumps({"device": "NVIDIA H200", "results": rows}))
    assert benchmark_figures(path) == {"device": "NVIDIA H200", "sft_tokens_per_s": 20_000.0,
                                       "generation_tokens_per_s_hf": 3_000.0}


def test_the_readme_course_map_shows_the_plans_minutes():
    from helpers.config import REPO_ROOT

    plan = time_plan(get_profile("gpu"))
    course_map = (REPO_ROOT / "README.md").read_text().split("## Course map", 1)[1].split("\n#", 1)[0]
    rows = [line for line in course_map.splitlines()  # "| 05 GRPO |", not the plan's own "| 05_grpo |" rows
            if line.startswith("| **all, in order**") or (line.startswith("| 0") and line[4] == " ")]
    assert len(rows) == 10
    for line, (_, minutes) in zip(rows, plan.iterrows()):
        expected = f"about {minutes['minutes (expected)']:.0f} min"
        assert expected in line.split("|")[-2] and f"(up to {minutes['minutes (upper bound)']:.0f})" in line, line
