"""TRL configurations built from a profile, the SFT and GRPO runs, and training histories saved as CSV.

The course trains with TRL's trainers (SFTTrainer here) and PEFT's LoRA; this module only
decides the numbers per profile, so every notebook trains the same way on a laptop and an A100.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import torch
from peft import LoraConfig
from transformers import TrainerCallback, TrainerState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.utils.notebook import NotebookProgressCallback, NotebookTrainingTracker
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from helpers import vllm_sampling
from helpers.config import Profile, cpu_bf16_enabled, get_profile
from helpers.generation import decode_as_generate, sampler, samples_from_a_copy
from helpers.models import holds_model
from helpers.prompt_once import ReadsEachPromptOnce
from helpers.signal_rows import ScoresOnlyRowsWithSignal

# transformers deprecated `is_gradient_checkpointing`, which PEFT reads when it wraps a model and TRL when it
# generates: library-internal, nothing a learner can change, so it is not shown in the notebooks.
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

# The seeds' LoRA recipe: rank 16, alpha 32, dropout 0.05 on the attention projections.
ATTENTION_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj"]
HISTORY_FILE = "training_history.csv"
COMPLETED_MARKER = "COMPLETED"  # written when a run finishes; its absence means the run was interrupted


def lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05, target: str = "attention") -> LoraConfig:
    """LoRA on the attention projections (``target="attention"``) or on every linear layer (``"all-linear"``)."""
    if target not in ("attention", "all-linear"):
        raise ValueError(f"target must be 'attention' or 'all-linear', not {target!r}")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=ATTENTION_PROJECTIONS if target == "attention" else "all-linear",
        task_type="CAUSAL_LM",
    )


def hardware_kwargs(profile: Profile) -> dict:
    """TRL defaults to bf16 and gradient checkpointing; both are set per device. bf16 autocast on a CPU only
    where it is native (AMX or AVX512-BF16, detected at run time; ``config.cpu_bf16_enabled``): emulated bf16 is
    slower than float32. A GPU without native bf16 (a T4) trains in fp16 autocast instead.
    ``scripts/grpo_step_cost.py`` measures both ways."""
    on_gpu = profile.uses_cuda
    gpu_bf16 = on_gpu and torch.cuda.is_bf16_supported(including_emulation=False)
    return {
        "bf16": gpu_bf16 or (not torch.cuda.is_available() and cpu_bf16_enabled()),
        "fp16": on_gpu and not gpu_bf16,  # a T4: fp16 autocast (the t4 profile's fp32 weights take its loss scaling)
        "use_cpu": not torch.cuda.is_available(),
        "activation_checkpointing": on_gpu,
        "report_to": "none",  # no W&B login by default
        "push_to_hub": False,
        "dataloader_num_workers": 0,
    }


def run_kwargs(profile: Profile, output_dir: str | Path, save_steps: int) -> dict:
    """What every training run shares: where it writes, how often it logs and saves (keeping only the
    newest checkpoint, to resume from), the seed, and the hardware settings."""
    return dict(
        output_dir=str(output_dir),
        logging_steps=profile.logging_steps,
        save_strategy="steps",
        save_steps=max(1, save_steps),
        save_total_limit=1,
        seed=42,
        **hardware_kwargs(profile),
    )


def rl_generation_kwargs(profile: Profile) -> dict:
    """GRPO's and RLOO's shared budget: ``num_generations`` completions for each of ``rl_prompts_per_step``
    prompts (TRL's ``per_device_train_batch_size`` counts completions), sampling, and GRPO's learning rate."""
    return dict(
        num_generations=profile.num_generations,
        per_device_train_batch_size=profile.num_generations * profile.rl_prompts_per_step,
        max_completion_length=profile.max_completion_length,
        learning_rate=profile.rl_learning_rate,
        temperature=profile.rl_temperature,
        lr_scheduler_type="constant",
        # vLLM generates much faster on a GPU; it is optional (not in the required install path).
        use_vllm=profile.uses_cuda and importlib.util.find_spec("vllm") is not None,
        vllm_mode="colocate",
    )


def sft_config(profile: Profile, output_dir: str | Path, full_finetune: bool = False, **overrides) -> SFTConfig:
    """SFT on prompt-completion conversations: the loss covers only the completion (the assistant turn).

    Full fine-tuning uses a learning rate 10x lower than LoRA, which trains far fewer weights.
    """
    learning_rate = profile.sft_learning_rate / (10 if full_finetune else 1)
    kwargs = dict(
        num_train_epochs=profile.sft_epochs,
        per_device_train_batch_size=profile.sft_batch_size,
        gradient_accumulation_steps=profile.sft_grad_accum,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_length=profile.max_seq_length,
        completion_only_loss=True,
        packing=False,
        **run_kwargs(profile, output_dir, save_steps=20),
    )
    kwargs.update(overrides)
    return SFTConfig(**kwargs)


class HistoryCSVCallback(TrainerCallback):
    """Rewrite ``training_history.csv`` at every log, so an interrupted run keeps its curve so far."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:  # one writer when several processes train together
            save_history(state.log_history, self.path)


class NotebookBarCallback(NotebookProgressCallback):
    """The trainer's notebook progress bar without its table of every logged loss (80 rows at one log per step):
    the losses are in ``training_history.csv`` and the notebook draws them as curves."""

    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self.training_tracker = NotebookTrainingTracker(state.max_steps)  # no column names: no empty table header

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


def show_bar_without_log_table(trainer) -> None:
    """In a notebook, swap the trainer's progress display for ``NotebookBarCallback`` (elsewhere nothing changes:
    a terminal run keeps transformers' tqdm bar)."""
    if trainer.pop_callback(NotebookProgressCallback) is not None:
        trainer.add_callback(NotebookBarCallback())


def save_history(log_history: list[dict], path: str | Path) -> pd.DataFrame:
    """The trainer's log history as one row per logged step (overwrites ``path``)."""
    history = pd.DataFrame([row for row in log_history if "step" in row])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    history.to_csv(path, index=False)
    return history


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder in ``output_dir``, to resume an interrupted run from.

    A checkpoint counts when it has ``trainer_state.json``, the last file the trainer writes into it: a save cut
    short (a Colab disconnect) leaves a folder without it, which would fail every re-run if it were picked."""
    complete = [p for p in Path(output_dir).glob("checkpoint-*")
                if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1]))) if complete else None


def saved_stage_dir(output_dir: str | Path) -> Path | None:
    """Where the notebook saves the stage model a run directory trains: ``<stage>`` beside ``<stage>_run``."""
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name.removesuffix("_run")) if output_dir.name.endswith("_run") else None


def stage_model_saved_since_completed(output_dir: Path) -> bool:
    """Whether the notebook saved the stage model after this run finished, so the run's weights are kept there."""
    stage_dir = saved_stage_dir(output_dir)
    if stage_dir is None:  # not named <stage>_run: no stage model to wait for
        return True
    if not holds_model(stage_dir):
        return False
    saved_at = max(p.stat().st_mtime for p in stage_dir.iterdir())
    return saved_at > (output_dir / COMPLETED_MARKER).stat().st_mtime


def prepare_run_dir(output_dir: str | Path) -> str | None:
    """Get ``output_dir`` ready for a run and return the checkpoint to resume from, if any.

    An interrupted run (no ``COMPLETED`` marker) resumes from its newest checkpoint. A finished run is cleared, so
    re-running a notebook trains afresh and overwrites its own outputs, once the notebook has saved the stage
    model (``<stage>`` beside ``<stage>_run``) after it finished; until then it is kept, and ``train_with_history``
    loads its final checkpoint instead of training again (a disconnect between training and saving loses nothing).
    """
    output_dir = Path(output_dir)
    if (output_dir / COMPLETED_MARKER).exists() and (
            stage_model_saved_since_completed(output_dir) or last_checkpoint(output_dir) is None):
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return last_checkpoint(output_dir)


def train_with_history(trainer, resume_from: str | None):
    """Run ``trainer`` (any TRL/transformers trainer), keeping ``training_history.csv`` current and
    marking the run ``COMPLETED`` at the end. Call ``prepare_run_dir`` first to get ``resume_from``.

    A finished run that ``prepare_run_dir`` kept (its model not saved yet) is not trained again: its final
    checkpoint (the trainer always saves the last step) is loaded into ``trainer.model`` with its state."""
    output_dir = Path(trainer.args.output_dir)
    if resume_from is not None and (output_dir / COMPLETED_MARKER).exists():
        # What `trainer.train(resume_from_checkpoint=...)` loads, without its loop: resuming at the last step
        # can still run a step past `max_steps` when the steps do not fill whole epochs.
        trainer._load_from_checkpoint(resume_from)
        trainer.state = TrainerState.load_from_json(str(Path(resume_from) / TRAINER_STATE_NAME))
        print(f"{output_dir.name} finished before ({trainer.state.global_step} steps) and its model was not saved: "
              f"loaded {Path(resume_from).name} instead of training again (delete the folder {output_dir.name} to "
              "retrain)")
        return trainer
    trainer.add_callback(HistoryCSVCallback(output_dir / HISTORY_FILE))
    show_bar_without_log_table(trainer)
    if getattr(trainer.args, "use_vllm", False):
        vllm_sampling.release_engine()  # the trainer starts its own vLLM: the course's sampler gives its memory back
    trainer.train(resume_from_checkpoint=resume_from)
    # bf16 autocast was for training: accelerate wrapped the model's forward in it (on a GPU, or a CPU with native
    # bf16). Unwrapped in place, the trained model computes in its own dtype again, as the saved model will.
    trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    if trainer.is_world_process_zero():  # one writer when several processes train together
        save_history(trainer.state.log_history, output_dir / HISTORY_FILE)
        (output_dir / COMPLETED_MARKER).write_text(f"{trainer.state.global_step} steps\n")
    return trainer


def run_sft(model, tokenizer, train_dataset, config: SFTConfig, peft_config: LoraConfig | None = None) -> SFTTrainer:
    """Train with TRL's SFTTrainer; an interrupted run in ``config.output_dir`` is resumed.

    The history is written to ``<output_dir>/training_history.csv`` while training runs.
    """
    resume_from = prepare_run_dir(config.output_dir)
    trainer = SFTTrainer(model=model, args=config, train_dataset=train_dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    return train_with_history(trainer, resume_from)


def grpo_config(profile: Profile, output_dir: str | Path, **overrides) -> GRPOConfig:
    """GRPO from the profile: ``num_generations`` completions per prompt, ``rl_prompts_per_step`` prompts a step.

    TRL's ``per_device_train_batch_size`` counts completions, so it is prompts x generations.
    Defaults kept from TRL 1.16: ``beta=0`` (no reference model), ``loss_type="dapo"``, ``scale_rewards="group"``.
    """
    kwargs = dict(max_steps=profile.rl_steps, **rl_generation_kwargs(profile),
                  **run_kwargs(profile, output_dir, save_steps=profile.rl_steps // 4))
    kwargs.update(overrides)
    return GRPOConfig(**kwargs)


class SamplesFromAPlainCopy:
    """For TRL's GRPO and RLOO trainers on a CPU: sample each step's completions from ``generation.sampler``'s copy
    of the current policy (LoRA merged in, eval mode, bf16 where the CPU has native bf16) with the course's decoding
    loop (``generation.decode_as_generate``). TRL's ``model.generate`` path samples from the training model itself:
    the float32 weights with the adapter unmerged and LoRA dropout on (TRL does not switch to eval mode), each
    prompt read once per completion. Sampling is half of a step on a CPU. No importance-sampling correction is
    applied for the bf16 copy (TRL applies one to vLLM's samples): most tokens' probabilities agree closely, a few
    do not (``scripts/bf16_sampling_gap.py`` measures it)."""

    def _generate_single_turn(self, *args, **kwargs):
        policy = self.accelerator.unwrap_model(self.model_wrapped)  # what TRL's generation unwraps and calls
        if not samples_from_a_copy(policy):
            return super()._generate_single_turn(*args, **kwargs)
        with sampler(policy) as decoder:
            # an instance attribute shadows the method for this call only
            policy.generate = functools.partial(decode_as_generate, decoder)
            try:
                return super()._generate_single_turn(*args, **kwargs)
            finally:
                del policy.generate


class CourseGRPOTrainer(SamplesFromAPlainCopy, ReadsEachPromptOnce, ScoresOnlyRowsWithSignal, GRPOTrainer):
    """TRL's GRPOTrainer, sampling as ``SamplesFromAPlainCopy`` says, scoring only the completions with a learning
    signal (``signal_rows.ScoresOnlyRowsWithSignal``), each prompt read once (``prompt_once.ReadsEachPromptOnce``)."""


def run_grpo(model, tokenizer, train_dataset, reward_funcs: list, config: GRPOConfig,
             peft_config: LoraConfig | None = None, callbacks: list | None = None) -> GRPOTrainer:
    """Train with TRL's GRPOTrainer (history CSV per step, resume as ``run_sft``)."""
    resume_from = prepare_run_dir(config.output_dir)
    trainer = CourseGRPOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=train_dataset,
                                processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    return train_with_history(trainer, resume_from)


def trainable_parameters(model) -> pd.DataFrame:
    """Trainable vs total parameters, as a one-row table."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return pd.DataFrame([{"trainable": trainable, "total": total, "trainable %": round(100 * trainable / total, 3)}])


# ---------------------------------------------------------------------------------------------
# Reward model, RLOO and DPO (notebooks 6 and 7)
# ---------------------------------------------------------------------------------------------

from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer, RLOOConfig, RLOOTrainer  # noqa: E402


def reward_model_lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05) -> LoraConfig:
    """LoRA for a reward model: the attention projections as in ``lora_config``, plus the new ``score`` head
    trained in full (``modules_to_save``), since it starts random and LoRA alone cannot train it."""
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=ATTENTION_PROJECTIONS,
                      task_type="SEQ_CLS", modules_to_save=["score"])


def pair_training_kwargs(profile: Profile, output_dir: str | Path, steps: int, pairs_per_step: int,
                         learning_rate: float) -> dict:
    """What the two trainers on (chosen, rejected) pairs share, the reward model's and DPO's: ``steps`` steps of
    ``pairs_per_step`` pairs, a cosine schedule after a 10% warm-up, sequences up to ``max_seq_length``."""
    return dict(max_steps=steps, per_device_train_batch_size=pairs_per_step,
                per_device_eval_batch_size=profile.eval_batch_size, learning_rate=learning_rate,
                lr_scheduler_type="cosine", warmup_steps=0.1, max_length=profile.max_seq_length,
                **run_kwargs(profile, output_dir, save_steps=steps // 4))


def reward_config(profile: Profile, output_dir: str | Path, **overrides) -> RewardConfig:
    """TRL's RewardTrainer from the profile: Bradley-Terry loss on (chosen, rejected) pairs.

    ``reward_model_batch_size`` counts pairs (each step scores twice as many sequences); pairs longer than
    ``max_seq_length`` are dropped by TRL, not truncated.
    """
    kwargs = pair_training_kwargs(profile, output_dir, profile.reward_model_steps, profile.reward_model_batch_size,
                                  profile.reward_model_learning_rate)
    return RewardConfig(**{**kwargs, **overrides})


def run_reward_model(model, tokenizer, train_dataset, config: RewardConfig,
                     peft_config: LoraConfig | None = None) -> RewardTrainer:
    """Train a reward model with TRL's RewardTrainer (history CSV per step, resume as ``run_sft``).

    ``model`` is a one-output sequence-classification model (``helpers.preferences.load_reward_model``);
    ``train_dataset`` has ``prompt``, ``chosen`` and ``rejected`` (conversational or strings).
    """
    resume_from = prepare_run_dir(config.output_dir)
    trainer = RewardTrainer(model=model, args=config, train_dataset=train_dataset, processing_class=tokenizer,
                            peft_config=peft_config)
    return train_with_history(trainer, resume_from)


class CourseRLOOTrainer(SamplesFromAPlainCopy, ReadsEachPromptOnce, RLOOTrainer):
    """TRL's RLOOTrainer, sampling and scoring as ``CourseGRPOTrainer``."""


def rloo_config(profile: Profile, output_dir: str | Path, **overrides) -> RLOOConfig:
    """RLOO with GRPO's per-step budget: ``num_generations`` completions for each of ``rl_prompts_per_step``
    prompts, ``max_completion_length`` tokens, ``rl_temperature``; ``rloo_steps`` steps at ``rloo_learning_rate``.

    As in GRPO, ``per_device_train_batch_size`` counts completions. Kept from TRL 1.16: ``beta=0.05``,
    a KL penalty *subtracted from the reward* (sequence-level), and no advantage normalization.
    """
    kwargs = dict(**rl_generation_kwargs(profile), **run_kwargs(profile, output_dir, save_steps=profile.rloo_steps // 4))
    kwargs.update(max_steps=profile.rloo_steps, learning_rate=profile.rloo_learning_rate)
    kwargs.update(overrides)
    return RLOOConfig(**kwargs)


def run_rloo(model, tokenizer, train_dataset, reward_funcs: list, config: RLOOConfig,
             peft_config: LoraConfig | None = None, callbacks: list | None = None) -> RLOOTrainer:
    """Train with TRL's RLOOTrainer (history CSV per step, resume as ``run_sft``). ``reward_funcs`` may mix
    rule-based functions and learned ones (``helpers.preferences.RewardModelReward``)."""
    resume_from = prepare_run_dir(config.output_dir)
    trainer = CourseRLOOTrainer(model=model, reward_funcs=reward_funcs, args=config, train_dataset=train_dataset,
                                processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks)
    return train_with_history(trainer, resume_from)


def dpo_config(profile: Profile, output_dir: str | Path, **overrides) -> DPOConfig:
    """DPO from the profile: ``dpo_batch_size`` pairs per step for ``dpo_steps`` steps at ``dpo_learning_rate``.

    Kept from TRL 1.16: ``beta=0.1`` and ``loss_type=["sigmoid"]`` (the loss of the DPO paper). With a
    PEFT adapter the reference model is the same network with the adapter switched off.
    """
    kwargs = pair_training_kwargs(profile, output_dir, profile.dpo_steps, profile.dpo_batch_size,
                                  profile.dpo_learning_rate)
    return DPOConfig(**{**kwargs, **overrides})


def run_dpo(model, tokenizer, train_dataset, config: DPOConfig, peft_config: LoraConfig | None = None,
            ref_model=None) -> DPOTrainer:
    """Train with TRL's DPOTrainer (history CSV per step, resume as ``run_sft``). ``train_dataset`` has
    ``prompt``, ``chosen`` and ``rejected``; extra columns are ignored."""
    resume_from = prepare_run_dir(config.output_dir)
    trainer = DPOTrainer(model=model, ref_model=ref_model, args=config, train_dataset=train_dataset,
                         processing_class=tokenizer, peft_config=peft_config)
    return train_with_history(trainer, resume_from)


def config_on_cpu(build, profile: Profile, **overrides):
    """The TRL config ``build`` (``sft_config``, ``grpo_config``, ...) makes for ``profile``, built on this machine
    to be read: bf16 and vLLM, which a CPU refuses, switched off. Nothing is written to its output folder."""
    switches = {"use_cpu": True, "bf16": False, "fp16": False}
    if build in (grpo_config, rloo_config):
        switches["use_vllm"] = False
    return build(profile, Path(tempfile.gettempdir()) / "config-preview", **{**switches, **overrides})


def compare_profiles(describe, names: tuple[str, ...] = ("cpu", "gpu")) -> pd.DataFrame:
    """One row per profile of ``describe(profile)``, a dict of settings: the cpu-vs-gpu tables of the notebooks."""
    return pd.DataFrame([{"profile": name, **describe(get_profile(name))} for name in names]).set_index("profile")
