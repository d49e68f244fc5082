"""TRL configurations built from a profile, the SFT run, and training histories saved as CSV.

The course trains with TRL's trainers (SFTTrainer here) and PEFT's LoRA; this module only
decides the numbers per profile, so every notebook trains the same way on a laptop and an A100.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import torch
from peft import LoraConfig
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from helpers.config import Profile

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
    """TRL defaults to bf16 and gradient checkpointing; both are set per device (off on CPU)."""
    on_gpu = torch.cuda.is_available() and profile.name == "gpu"
    return {
        "bf16": on_gpu,
        "use_cpu": not torch.cuda.is_available(),
        "activation_checkpointing": on_gpu,
        "report_to": "none",  # no W&B login by default
        "push_to_hub": False,
        "dataloader_num_workers": 0,
    }


def sft_config(profile: Profile, output_dir: str | Path, full_finetune: bool = False, **overrides) -> SFTConfig:
    """SFT on prompt-completion conversations: the loss covers only the completion (the assistant turn).

    Full fine-tuning uses a learning rate 10x lower than LoRA, which trains far fewer weights.
    """
    learning_rate = profile.sft_learning_rate / (10 if full_finetune else 1)
    kwargs = dict(
        output_dir=str(output_dir),
        num_train_epochs=profile.sft_epochs,
        per_device_train_batch_size=profile.sft_batch_size,
        gradient_accumulation_steps=profile.sft_grad_accum,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_length=profile.max_seq_length,
        completion_only_loss=True,
        packing=False,
        logging_steps=1 if profile.name != "gpu" else 10,
        save_strategy="steps",
        save_steps=max(1, profile.extras.get("sft_save_steps", 20)),
        save_total_limit=1,  # keep the newest checkpoint to resume from, not every one
        seed=42,
        **hardware_kwargs(profile),
    )
    kwargs.update(overrides)
    return SFTConfig(**kwargs)


class HistoryCSVCallback(TrainerCallback):
    """Rewrite ``training_history.csv`` at every log, so an interrupted run keeps its curve so far."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        save_history(state.log_history, self.path)


def save_history(log_history: list[dict], path: str | Path) -> pd.DataFrame:
    """The trainer's log history as one row per logged step (overwrites ``path``)."""
    history = pd.DataFrame([row for row in log_history if "step" in row])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    history.to_csv(path, index=False)
    return history


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The newest ``checkpoint-N`` folder in ``output_dir``, to resume an interrupted run from."""
    checkpoints = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def prepare_run_dir(output_dir: str | Path) -> str | None:
    """Get ``output_dir`` ready for a run and return the checkpoint to resume from, if any.

    An interrupted run (no ``COMPLETED`` marker) resumes from its newest checkpoint; a finished run
    is cleared, so re-running a notebook trains afresh and overwrites its own outputs.
    """
    output_dir = Path(output_dir)
    if (output_dir / COMPLETED_MARKER).exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return last_checkpoint(output_dir)


def run_sft(model, tokenizer, train_dataset, config: SFTConfig, peft_config: LoraConfig | None = None) -> SFTTrainer:
    """Train with TRL's SFTTrainer; an interrupted run in ``config.output_dir`` is resumed.

    The history is written to ``<output_dir>/training_history.csv`` while training runs.
    """
    resume_from = prepare_run_dir(config.output_dir)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[HistoryCSVCallback(Path(config.output_dir) / HISTORY_FILE)],
    )
    trainer.train(resume_from_checkpoint=resume_from)
    save_history(trainer.state.log_history, Path(config.output_dir) / HISTORY_FILE)
    (Path(config.output_dir) / COMPLETED_MARKER).write_text(f"{trainer.state.global_step} steps\n")
    return trainer


def trainable_parameters(model) -> pd.DataFrame:
    """Trainable vs total parameters, as a one-row table."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return pd.DataFrame([{"trainable": trainable, "total": total, "trainable %": round(100 * trainable / total, 3)}])
