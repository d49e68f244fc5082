"""How long each notebook takes on one GPU: an estimate computed from the profile's sizes, not a measurement.

Per notebook, seconds = generation + training + start-up, where

- **generation** depends on who generates:
  - the course's own sampling on vLLM (many prompts handed over at once): ``tokens / vllm_tokens_per_s``;
  - transformers' ``generate`` (no vLLM, or a PEFT model): ``batches x max_tokens x hf_step_s``, since a padded
    batch runs until its longest sequence ends, and one of dozens nearly always reaches the budget;
  - a GRPO/RLOO trainer's completions, one step's batch at a time: ``steps x (max_completion_length x step_s +
    rl_step_overhead_s)``, the same wait for the longest completion, with vLLM's or transformers' step time;
- **training**: ``passes x 2 x N x tokens / (peak_flops x mfu)``. A pass over a token costs 2 FLOPs per weight
  (N = 494M for Qwen2.5-0.5B). A LoRA update is 2 passes: the forward, and the backward's activation gradients (the
  frozen weights need no weight gradients, which a full fine-tune adds as a third pass). Activation checkpointing,
  on for every trainer on a GPU, recomputes the forward: +1. Each no-grad forward adds 1: GRPO's old log-probs
  (TRL corrects vLLM's sampling mismatch with them), RLOO's old and reference log-probs, DPO's reference;
- **start-up**: ``models loaded x model_load_s + vLLM engines started x vllm_startup_s + notebook_overhead_s``.

Two cases: **expected** puts completions and conversations at the mean lengths of ``Lengths``; the **upper bound**
puts every completion at its cap and every conversation at ``max_seq_length``. Cached work is not counted: the
generation cache answers greedy completions (and seeded sampled ones) that the same weights produced before, e.g.
notebook 6 re-measures notebook 5's start model, and notebook 9 re-reads every math evaluation of notebooks 3-8.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from helpers.config import Profile, get_profile
from helpers.evaluation import markdown_table

QWEN25_05B_PARAMETERS = 494_032_768  # configs/qwen2.5-0.5b-instruct; the tied embedding is also the output layer
GSM8K_TRAIN_ROWS = 7_473  # the gpu profile's math train pool is capped by the source (n_math asks for 20,000)
NOTEBOOKS = ["01_data_exploration", "02_tokenizer_and_masking", "03_lora_sft", "04_reward_functions", "05_grpo",
             "06_reward_model_and_rloo", "07_dpo", "08_rejection_sampling_and_distillation", "09_evaluation"]
STAGES = 7  # checkpoints notebook 9 scores: initial, sft, grpo, rloo, dpo, rs_sft, distilled


@dataclass(frozen=True)
class Throughput:
    """Assumed speeds of one A100 (bf16) for Qwen2.5-0.5B, each with where it comes from. Not measured here:
    ``from_measured`` puts ``scripts/benchmark_gpu.py``'s figures in their place."""

    # many sequences in flight: vLLM on an A100 80GB PCIe ran nano-vllm's bench.py (256 sequences of Qwen3-0.6B,
    # 100-1024 tokens in and out) at 9,530 tokens/s (GeeeekExplorer/nano-vllm issue 245)
    vllm_tokens_per_s: float = 9_500
    # one decode step of a small batch (a trainer's 64 completions): Qwen2.5-0.5B-Instruct on vLLM 0.6.3, A100 80GB,
    # batch 1, 311.6 tokens/s = 3.2 ms (Qwen2.5 speed benchmark, QwenLM/Qwen2.5 docs); 5 ms for 64 sequences, assumed
    vllm_step_s: float = 0.005
    # one decode step of transformers' generate: 47.4 tokens/s at batch 1 = 21 ms (the same benchmark, transformers
    # 4.46); a 0.5B model is bound by kernel launches, not FLOPs, so 25 ms for the course's batches is assumed
    hf_step_s: float = 0.025
    peak_flops: float = 312e12  # A100 dense bf16 tensor-core peak (NVIDIA's A100 datasheet)
    # assumed: a 0.5B model (hidden 896) under TRL and PEFT keeps a small share of the peak busy: short matrix
    # products, a 151,936-word output layer, LoRA's extra kernels, padding (counted here as lost utilization)
    mfu: float = 0.15
    rl_step_overhead_s: float = 2.0  # assumed: per trainer step, math-verify rewards, logging, LoRA weights synced to vLLM
    model_load_s: float = 10.0  # assumed: a 0.5B checkpoint (1 GB in bf16) from disk onto the GPU
    vllm_startup_s: float = 60.0  # assumed: an engine saves the weights, loads, profiles memory, captures CUDA graphs
    notebook_overhead_s: float = 60.0  # assumed: imports, data loading (cached after a first download), plots

    @classmethod
    def from_measured(cls, figures: dict, batch: int = 64, **assumed) -> Throughput:
        """These assumptions with measured figures in their place, from a dict with any of ``sft_tokens_per_s``,
        ``generation_tokens_per_s_vllm``, ``generation_tokens_per_s_hf`` (and ``vllm_startup_s``). The benchmark
        generates ``batch`` full-length sequences at once, so a decode step takes ``batch / tokens_per_s``; its
        vLLM batch is small, so the bulk rate read from it is a floor. SFT tokens/s gives the achieved MFU
        (an SFT token costs ``(2 + 1) x 2 x N`` FLOPs, a LoRA update with activation checkpointing); its rows are all
        one length, so that MFU leaves out the padding of real batches."""
        base = cls(**assumed)
        changes = {}
        if figures.get("sft_tokens_per_s"):
            changes["mfu"] = figures["sft_tokens_per_s"] * 3 * 2 * QWEN25_05B_PARAMETERS / base.peak_flops
        if figures.get("generation_tokens_per_s_vllm"):
            changes["vllm_tokens_per_s"] = figures["generation_tokens_per_s_vllm"]
            changes["vllm_step_s"] = batch / figures["generation_tokens_per_s_vllm"]
        if figures.get("generation_tokens_per_s_hf"):
            changes["hf_step_s"] = batch / figures["generation_tokens_per_s_hf"]
        if figures.get("vllm_startup_s"):
            changes["vllm_startup_s"] = figures["vllm_startup_s"]
        return replace(base, **changes)


def benchmark_figures(path: str | Path) -> dict:
    """The figures ``Throughput.from_measured`` reads, from ``scripts/benchmark_gpu.py``'s JSON file (its rows
    ``sft/course``, ``generation/vllm``, ``generation/transformers``), plus ``device``: the GPU they were
    measured on, which may not be an A100."""
    meta = json.loads(Path(path).read_text())
    rows = {(row["stage"], row["setting"]): row for row in meta["results"] if "error" not in row}
    figures = {"device": meta.get("device")}
    for key, stage, setting, field in [("sft_tokens_per_s", "sft", "course", "tokens_per_s"),
                                       ("generation_tokens_per_s_vllm", "generation", "vllm", "tokens_per_s"),
                                       ("generation_tokens_per_s_hf", "generation", "transformers", "tokens_per_s"),
                                       ("vllm_startup_s", "generation", "vllm", "startup_s")]:
        if (stage, setting) in rows and rows[stage, setting].get(field):
            figures[key] = rows[stage, setting][field]
    return figures


@dataclass(frozen=True)
class Lengths:
    """Assumed token counts of the expected case."""

    prompt: int = 170  # the R1 system prompt and chat template (about 100 tokens) and a GSM8K question
    completion: int = 250  # a completion's mean: about half the gpu budget of 512 (capped by the budget)
    conversation: int = 500  # an SFT warm-start conversation, or a preference prompt with one response
    verified_share: float = 0.8  # rejection sampling: training prompts with a verified sample among the k


class _Notebook:
    """One notebook's work, added up step by step in both cases."""

    def __init__(self, profile: Profile, speed: Throughput, lengths: Lengths, vllm: bool, upper: bool):
        self.p, self.t, self.lengths, self.vllm, self.upper = profile, speed, lengths, vllm, upper
        self.generated = self.trained = self.loads = self.engines = 0
        self.seconds = speed.notebook_overhead_s

    def completion(self, cap: int) -> float:
        return cap if self.upper else min(cap, self.lengths.completion)

    def conversation(self) -> float:
        return self.p.max_seq_length if self.upper else self.lengths.conversation

    def sample(self, sequences: int, cap: int, batch: int, peft: bool = False) -> None:
        """``sequences`` completions of up to ``cap`` tokens; ``batch``: sequences per ``generate`` call."""
        tokens = sequences * self.completion(cap)
        self.generated += tokens
        if self.vllm and not peft:
            self.seconds += tokens / self.t.vllm_tokens_per_s
        else:
            self.seconds += math.ceil(sequences / batch) * cap * self.t.hf_step_s

    def train(self, tokens: float, no_grad_passes: int = 0) -> None:
        """A LoRA update over ``tokens``: 2 passes, +1 recomputed by activation checkpointing (on a GPU), + the
        no-grad forwards of log-probs it needs."""
        self.trained += tokens
        self.forward(tokens, passes=2 + (self.p.accelerator == "cuda") + no_grad_passes)

    def forward(self, tokens: float, passes: int = 1) -> None:
        self.seconds += passes * 2 * QWEN25_05B_PARAMETERS * tokens / (self.t.peak_flops * self.t.mfu)

    def rl(self, steps: int, no_grad_passes: int) -> None:
        """A GRPO/RLOO run: per step ``num_generations x rl_prompts_per_step`` completions, generated then trained."""
        p, cap = self.p, self.p.max_completion_length
        completions = steps * p.num_generations * p.rl_prompts_per_step
        self.generated += completions * self.completion(cap)
        step_s = self.t.vllm_step_s if self.vllm else self.t.hf_step_s
        self.seconds += steps * (cap * step_s + self.t.rl_step_overhead_s)
        self.train(completions * (self.lengths.prompt + self.completion(cap)), no_grad_passes)
        self.start(loads=0, engines=1)  # TRL's colocated engine

    def start(self, loads: int, engines: int = 0) -> None:
        """``loads`` models read onto the GPU; ``engines`` vLLM engines started, where vLLM is installed."""
        engines = engines if self.vllm else 0
        self.loads, self.engines = self.loads + loads, self.engines + engines
        self.seconds += loads * self.t.model_load_s + engines * self.t.vllm_startup_s


def _work(nb: _Notebook, name: str) -> None:
    """What notebook ``name`` makes the GPU do: the notebooks' cells, in order (cached calls left out)."""
    p, lengths = nb.p, nb.lengths
    half, batch, cap, budget = p.n_eval // 2, p.eval_batch_size, p.max_completion_length, p.max_new_tokens
    math_train = round(0.9 * min(p.n_math, GSM8K_TRAIN_ROWS))
    if name == "02_tokenizer_and_masking":
        nb.start(loads=1)
    elif name == "03_lora_sft":
        nb.start(loads=2, engines=2)  # the initial model, the reloaded SFT model
        nb.sample(p.n_eval, budget, batch)  # before: the initial model, greedy
        sft_rows = p.sft_max_examples or round(0.9 * p.n_countdown) + math_train  # traces of both tasks
        nb.train(sft_rows * p.sft_epochs * nb.conversation())
        nb.sample(2, budget, 2, peft=True)  # the adapter model's check on two prompts
        nb.sample(2, budget, 2)  # the reloaded merged model's check
        nb.sample(p.n_eval, budget, batch)  # after: greedy
    elif name == "05_grpo":
        nb.start(loads=1, engines=2)  # the SFT model, then the merged GRPO model
        nb.sample(min(p.rl_candidate_prompts, math_train) * p.rl_pass_rate_samples, cap, batch * p.rl_pass_rate_samples)
        nb.sample(p.num_generations, cap, p.num_generations, peft=True)  # 5.3's group: helpers.rl.sample_group
        nb.sample(10 * 2 * p.num_generations, cap, 2 * p.num_generations, peft=True)  # GRPO by hand, 10 steps
        nb.sample(half, budget, batch)  # before, greedy: the half of the rows notebook 3 did not score
        nb.sample(p.n_eval * p.eval_samples, cap, batch * p.eval_samples)  # before, sampled
        nb.rl(p.rl_steps, no_grad_passes=int(nb.vllm))  # old log-probs for vLLM's importance-sampling correction
        nb.sample(p.n_eval, budget, batch)  # after, greedy
        nb.sample(p.n_eval * p.eval_samples, cap, batch * p.eval_samples)  # after, sampled
    elif name == "06_reward_model_and_rloo":
        nb.start(loads=2, engines=2)  # the reward model's backbone and the initial policy; engines: initial, RLOO
        validation = round(0.1 * p.n_instructions)
        nb.sample(p.reward_model_onpolicy_prompts * 4, cap, batch)  # the policy's answers for on-policy pairs
        nb.sample(validation * 4, cap, batch)  # held-out on-policy pairs
        # the reward model has a 1-number head instead of the 151,936-word output layer: counted as N, an overestimate
        nb.train(p.reward_model_steps * p.reward_model_batch_size * 2 * nb.conversation())
        nb.forward(p.n_eval * 2 * nb.conversation())  # score the held-out pairs
        nb.sample(p.n_eval, cap, batch)  # before: the start model on the test instructions
        probes = p.rloo_steps // max(1, p.rloo_steps // 5) + 1
        nb.sample(probes * min(100, validation), cap, batch, peft=True)  # the over-optimization probe (PROBE_INSTRUCTIONS)
        nb.rl(p.rloo_steps, no_grad_passes=2)  # old and reference log-probs (beta 0.05)
        nb.sample(p.n_eval, cap, batch)  # after
    elif name == "07_dpo":
        # the initial model (its test answers: cached by notebook 6), the reward model, two fresh copies to train;
        # engines: the two merged DPO models
        nb.start(loads=4, engines=2)
        validation = round(0.1 * p.n_instructions)
        nb.sample(p.dpo_onpolicy_prompts * 4, cap, batch)  # on-policy pairs: 4 answers per instruction
        nb.forward(p.dpo_onpolicy_prompts * 4 * nb.conversation())  # the reward model reads every answer
        for _ in ("off-policy", "on-policy"):  # one DPO run per kind of pair, the reference's forward without grad
            nb.train(p.dpo_steps * p.dpo_batch_size * 2 * (lengths.prompt + nb.completion(cap)), no_grad_passes=1)
        nb.sample(validation, cap, batch)  # before, validation
        nb.sample(2 * (validation + p.n_eval), cap, batch)  # after: both models, validation and test
    elif name == "08_rejection_sampling_and_distillation":
        nb.start(loads=8, engines=4)  # teacher x 2, student, 5 evaluated; engines: teacher, initial, distilled, RS-SFT
        nb.sample(p.rs_prompts * p.rs_samples, cap, batch)
        rs_kept = p.rs_prompts if nb.upper else round(p.rs_prompts * lengths.verified_share)  # one trace a prompt
        nb.train(rs_kept * p.sft_epochs * (lengths.prompt + nb.completion(cap)))  # the teacher's second SFT round
        nb.train(rs_kept * p.distill_epochs * (lengths.prompt + nb.completion(cap)))  # the student
        # greedy math: the distilled and RS-SFT models in full; the initial model past the rows notebook 3 scored;
        # the SFT model and the teacher past the n_eval rows notebook 5 scored
        nb.sample(2 * p.eval_math_prompts + max(0, p.eval_math_prompts - (p.n_eval - half))
                  + 2 * max(0, p.eval_math_prompts - p.n_eval), budget, batch)
    elif name == "09_evaluation":
        nb.start(loads=3 * STAGES + 2, engines=2 * STAGES)  # greedy per task, pass@k; a new engine per stage, twice
        # math: sft and grpo scored by notebook 5 up to n_eval rows, rs_sft and distilled by notebook 8; rloo and dpo
        # (trained on instructions in notebooks 6 and 7) on every row here. Countdown: notebook 3 scored half for
        # initial and SFT
        math_new = 2 * max(0, p.eval_math_prompts - p.n_eval) + 2 * p.eval_math_prompts
        countdown_new = 2 * max(0, p.eval_countdown_prompts - half) + (STAGES - 2) * p.eval_countdown_prompts
        nb.sample(math_new + countdown_new, budget, batch)
        nb.sample(STAGES * p.passk_prompts * p.passk_samples, budget, batch)  # pass@k, sampled fresh
        # majority vote (9.7): SFT's and GRPO's math_scores, cached from notebook 5


def time_plan(profile: Profile, throughput: Throughput = Throughput(), lengths: Lengths = Lengths(),
              vllm: bool = True) -> pd.DataFrame:
    """One row per notebook (and a total): tokens generated and trained, models loaded, vLLM engines started,
    and estimated minutes, expected and upper bound. ``vllm``: whether vLLM is installed (on a GPU)."""
    rows = {}
    for name in NOTEBOOKS:
        expected, bound = (_Notebook(profile, throughput, lengths, vllm, upper) for upper in (False, True))
        _work(expected, name)
        _work(bound, name)
        rows[name] = {"generated tokens (expected)": expected.generated, "generated tokens (upper bound)": bound.generated,
                      "trained tokens (expected)": expected.trained, "models loaded": expected.loads,
                      "vLLM engines": expected.engines, "minutes (expected)": expected.seconds / 60,
                      "minutes (upper bound)": bound.seconds / 60}
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("notebook")
    table.loc["total"] = table.sum()
    return table


def plan_markdown(profile: Profile, throughput: Throughput = Throughput()) -> str:
    """The plan as the README shows it."""
    return markdown_table(time_plan(profile, throughput), "{:,.0f}")


def main() -> None:
    """``python -m helpers.time_plan``: the gpu profile's plan on the assumed A100, then with the figures of every
    benchmark file under ``data/processed/gpu/`` (a benchmark run on another GPU gives that GPU's times)."""
    profile = get_profile("gpu")
    print(f"gpu profile, assumed A100 figures (an estimate):\n{plan_markdown(profile)}")
    for path in sorted(profile.data_dir("processed").glob("benchmark_*.json")):
        if not path.stem.endswith("-smoke"):
            figures = benchmark_figures(path)
            measured = Throughput.from_measured(figures, batch=profile.eval_batch_size)
            print(f"\nwith {path.name} ({figures['device']}):\n{plan_markdown(profile, measured)}")


if __name__ == "__main__":
    main()
