"""SFT on TRL: the trainer's loss mask is ours, configs build on every profile, runs resume and log."""

import dataclasses
import os
from contextlib import contextmanager

import pandas as pd
import pytest
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from trl import SFTConfig

from helpers.chat import IGNORE_INDEX, prompt_messages, to_prompt_completion, tokenize_conversation
from helpers.config import PROFILES, get_profile
from helpers.models import load_model, load_tokenizer
from helpers.training import (
    ATTENTION_PROJECTIONS,
    COMPLETED_MARKER,
    HISTORY_FILE,
    NotebookBarCallback,
    grpo_config,
    last_checkpoint,
    lora_config,
    prepare_run_dir,
    run_grpo,
    run_sft,
    sft_config,
    show_bar_without_log_table,
    trainable_parameters,
)

CONVERSATIONS = [
    prompt_messages("Using the numbers [3, 5, 7], make 22.")
    + [{"role": "assistant", "content": "<think>\n3*5=15, 15+7=22.\n</think>\n<answer>3*5+7</answer>"}],
    prompt_messages("What is 12 - 5?") + [{"role": "assistant", "content": "<think>12-5=7</think>\n<answer>7</answer>"}],
    [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}],
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


def tiny_config(tmp_path, **overrides):
    return sft_config(get_profile("tiny"), tmp_path / "sft", disable_tqdm=True, **overrides)


@pytest.mark.slow
def test_trainer_loss_mask_equals_tokenize_conversation_labels(tokenizer, tmp_path):
    from trl import SFTTrainer

    dataset = Dataset.from_list([to_prompt_completion(c, system_prompt=None) for c in CONVERSATIONS])
    trainer = SFTTrainer(model=load_model("tiny"), args=tiny_config(tmp_path), train_dataset=dataset,
                         processing_class=tokenizer)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(CONVERSATIONS))])
    for row, conversation in enumerate(CONVERSATIONS):
        ours = tokenize_conversation(tokenizer, conversation)
        n = len(ours["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == ours["input_ids"]
        assert batch["labels"][row, :n].tolist() == ours["labels"]
        assert set(batch["labels"][row, n:].tolist()) <= {IGNORE_INDEX}  # padding is never trained


def adapted_layers(config) -> dict[str, tuple[int, float]]:
    """The tiny model's layers LoRA wraps under ``config``: layer kind -> (rank, scaling alpha / r)."""
    model = get_peft_model(load_model("tiny"), config)
    return {name.rsplit(".", 1)[-1]: (module.r["default"], module.scaling["default"])
            for name, module in model.named_modules() if hasattr(module, "lora_A")}


@pytest.mark.slow
def test_lora_adapts_the_attention_projections_or_every_linear_layer():
    # the seeds' recipe: rank 16, alpha 32 (scaling 2) on the attention projections only
    assert adapted_layers(lora_config()) == {name: (16, 2.0) for name in ATTENTION_PROJECTIONS}
    every_linear = adapted_layers(lora_config(r=4, alpha=8, target="all-linear"))
    assert set(every_linear) == set(ATTENTION_PROJECTIONS) | {"gate_proj", "up_proj", "down_proj"}
    assert set(every_linear.values()) == {(4, 2.0)}


def test_lora_config_rejects_an_unknown_target():
    with pytest.raises(ValueError, match="attention' or 'all-linear"):
        lora_config(target="mlp")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_sft_config_builds_on_every_profile(name, tmp_path):
    """Drift guard: every field the course sets must still exist in the pinned TRL."""
    profile = PROFILES[name]
    config = sft_config(profile, tmp_path, use_cpu=True, bf16=False)
    assert isinstance(config, SFTConfig)
    assert config.report_to == []  # no W&B or other logger unless a learner asks for one
    full = sft_config(profile, tmp_path, full_finetune=True, use_cpu=True, bf16=False)
    assert full.learning_rate == pytest.approx(config.learning_rate / 10)


def test_lora_config_fields_exist_in_pinned_peft():
    fields = {f.name for f in dataclasses.fields(LoraConfig)}
    assert {"r", "lora_alpha", "lora_dropout", "target_modules", "task_type"} <= fields


@pytest.mark.slow
def test_sft_trains_logs_history_and_resumes(tokenizer, tmp_path):
    dataset = Dataset.from_list([to_prompt_completion(c) for c in CONVERSATIONS * 4])
    config = tiny_config(tmp_path, max_steps=2, save_steps=1, per_device_train_batch_size=4)
    model = load_model("tiny")
    trainer = run_sft(model, tokenizer, dataset, config, lora_config(r=4, alpha=8))
    history = pd.read_csv(tmp_path / "sft" / HISTORY_FILE)
    assert list(history["step"][history["loss"].notna()]) == [1, 2]
    assert last_checkpoint(tmp_path / "sft").endswith("checkpoint-2")
    assert trainable_parameters(trainer.model)["trainable"].item() > 0

    # A finished run is not resumed: re-running trains afresh (2 new steps, history overwritten).
    trainer = run_sft(load_model("tiny"), tokenizer, dataset, config, lora_config(r=4, alpha=8))
    assert list(pd.read_csv(tmp_path / "sft" / HISTORY_FILE)["step"].dropna().astype(int).unique()) == [1, 2]

    # An interrupted run continues: without the COMPLETED marker, asking for 3 steps resumes at step 2.
    (tmp_path / "sft" / COMPLETED_MARKER).unlink()
    config = tiny_config(tmp_path, max_steps=3, save_steps=1, per_device_train_batch_size=4)
    trainer = run_sft(load_model("tiny"), tokenizer, dataset, config, lora_config(r=4, alpha=8))
    history = pd.read_csv(tmp_path / "sft" / HISTORY_FILE)
    assert trainer.state.global_step == 3
    assert list(history["step"][history["loss"].notna()]) == [1, 2, 3]  # the resumed history, not a fresh one
    assert (tmp_path / "sft" / COMPLETED_MARKER).exists()


def test_last_checkpoint_picks_the_highest_complete_step(tmp_path):
    assert last_checkpoint(tmp_path) is None
    for step in (5, 40, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path).endswith("checkpoint-40")
    (tmp_path / "checkpoint-60").mkdir()  # a save cut short: no trainer_state.json
    (tmp_path / "checkpoint-final").mkdir()
    assert last_checkpoint(tmp_path).endswith("checkpoint-40")


def finished_run(run_dir, step=3):
    """A run folder as a finished run leaves it: its last checkpoint, then the COMPLETED marker."""
    (run_dir / f"checkpoint-{step}").mkdir(parents=True)
    (run_dir / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (run_dir / COMPLETED_MARKER).write_text(f"{step} steps\n")
    return run_dir


def saved_model(stage_dir, mtime=None):
    stage_dir.mkdir()
    (stage_dir / "config.json").write_text("{}")
    if mtime is not None:
        os.utime(stage_dir / "config.json", (mtime, mtime))


def test_a_finished_run_is_kept_until_its_stage_model_is_saved(tmp_path):
    run_dir = finished_run(tmp_path / "grpo_run")
    # a disconnect between training and saving: the finished run is kept, its last checkpoint is what to load
    assert prepare_run_dir(run_dir).endswith("checkpoint-3")
    # the stage model saved before this run finished is an older run's: still kept
    saved_model(tmp_path / "grpo", mtime=(run_dir / COMPLETED_MARKER).stat().st_mtime - 60)
    assert prepare_run_dir(run_dir).endswith("checkpoint-3")
    # saved after it finished: a re-run trains afresh
    os.utime(tmp_path / "grpo" / "config.json")
    assert prepare_run_dir(run_dir) is None
    assert not (run_dir / COMPLETED_MARKER).exists()


def test_a_finished_run_without_a_checkpoint_or_a_stage_name_trains_afresh(tmp_path):
    (tmp_path / "sft_run").mkdir()
    (tmp_path / "sft_run" / COMPLETED_MARKER).write_text("3 steps\n")  # trained with save_strategy="no"
    assert prepare_run_dir(tmp_path / "sft_run") is None
    # a folder not named <stage>_run has no stage model to wait for
    assert prepare_run_dir(finished_run(tmp_path / "scratch")) is None


@pytest.mark.slow
def test_a_rerun_loads_a_finished_runs_weights_until_the_model_is_saved(tokenizer, tmp_path, monkeypatch):
    from trl import SFTTrainer

    from helpers.models import merge_lora, save_model

    trained = []
    train = SFTTrainer.train
    monkeypatch.setattr(SFTTrainer, "train", lambda self, **kw: trained.append(1) or train(self, **kw))
    dataset = Dataset.from_list([to_prompt_completion(c) for c in CONVERSATIONS * 4])
    run_dir = tmp_path / "sft_run"

    def run():
        config = sft_config(get_profile("tiny"), run_dir, disable_tqdm=True, max_steps=1, save_steps=2,
                            warmup_steps=0, per_device_train_batch_size=4)
        return run_sft(load_model("tiny"), tokenizer, dataset, config, lora_config(r=4, alpha=8))

    def adapter(trainer):
        return {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_B" in k}

    first = adapter(run())
    assert last_checkpoint(run_dir).endswith("checkpoint-1")  # the last step is saved, though not a save step
    history = (run_dir / HISTORY_FILE).read_text()

    # the notebook disconnected before saving: the re-run loads the trained weights, no training
    rerun = run()
    assert len(trained) == 1 and rerun.state.global_step == 1
    assert all(v.abs().sum() > 0 and v.equal(first[k]) for k, v in adapter(rerun).items())
    assert (run_dir / HISTORY_FILE).read_text() == history

    # once the model is saved, a re-run trains afresh
    save_model(merge_lora(rerun.model), tmp_path / "sft", tokenizer)
    run()
    assert len(trained) == 2


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_grpo_config_builds_on_every_profile(name, tmp_path):
    """Drift guard for GRPOConfig: the batch counts completions and must hold whole groups."""
    profile = PROFILES[name]
    config = grpo_config(profile, tmp_path, use_cpu=True, bf16=False)
    # TRL derives how many completions it samples per round: whole groups, one per prompt of the step
    assert config.generation_batch_size % config.num_generations == 0
    assert config.generation_batch_size // config.num_generations == profile.rl_prompts_per_step
    assert config.use_vllm is False  # no GPU here; vLLM is only ever used on the gpu profile with CUDA
    assert (config.beta, config.loss_type) == (0.0, "dapo")  # the pinned TRL defaults the notebook explains


@pytest.mark.slow
def test_grpo_trains_on_math_rewards_and_logs_the_curves(tokenizer, tmp_path, monkeypatch):
    from helpers import prompt_once
    from helpers.chat import task_prompt
    from helpers.rewards import format_reward, math_accuracy_reward

    scored_rows = []  # the rows the trainer scored with each prompt read once (helpers.prompt_once)
    read_once = prompt_once.completion_logps_reading_prompts_once
    monkeypatch.setattr(prompt_once, "completion_logps_reading_prompts_once",
                        lambda model, ids, *args: scored_rows.append(len(ids)) or read_once(model, ids, *args))

    rows = [{"prompt": task_prompt({"prompt": f"What is {a} + 1?"}), "answer": str(a + 1)} for a in range(8)]
    config = grpo_config(get_profile("tiny"), tmp_path / "grpo", max_steps=2, save_steps=1, beta=0.02,
                         disable_tqdm=True)
    trainer = run_grpo(load_model("tiny"), tokenizer, Dataset.from_list(rows), [math_accuracy_reward, format_reward],
                       config, peft_config=lora_config(r=4, alpha=8))
    assert trainer.state.global_step == 2
    history = pd.read_csv(tmp_path / "grpo" / HISTORY_FILE)
    for column in ("reward", "rewards/math_accuracy_reward/mean", "completions/mean_length", "kl", "frac_reward_zero_std"):
        assert column in history and history[column].notna().sum() == 2, column
    assert (tmp_path / "grpo" / COMPLETED_MARKER).exists()
    # each step scores its 4 completions (2 prompts x 2) twice: the policy's, and the reference's for the KL term
    assert scored_rows == [4] * 4


def test_trl_defaults_the_notebooks_teach():
    """Notebooks 5-7 explain these TRL defaults as they are; a TRL upgrade that changes one fails here first."""
    from trl import DPOConfig, GRPOConfig, RLOOConfig

    grpo = GRPOConfig(output_dir="unused", use_cpu=True, bf16=False)
    assert (grpo.beta, grpo.loss_type, grpo.scale_rewards, grpo.epsilon, grpo.num_iterations) == (0.0, "dapo", "group",
                                                                                                 0.2, 1)
    rloo = RLOOConfig(output_dir="unused", use_cpu=True, bf16=False)
    assert (rloo.beta, rloo.normalize_advantages) == (0.05, False)
    dpo = DPOConfig(output_dir="unused", use_cpu=True, bf16=False)
    assert (dpo.beta, dpo.loss_type) == (0.1, ["sigmoid"])


class _RecordingTracker:
    def __init__(self):
        self.lines = []

    def write_line(self, values):
        self.lines.append(values)


class _TrainerCallbacks:
    """What ``show_bar_without_log_table`` uses of a trainer: its callback list."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def pop_callback(self, kind):
        found = next((cb for cb in self.callbacks if type(cb) is kind), None)
        if found is not None:
            self.callbacks.remove(found)
        return found

    def add_callback(self, callback):
        self.callbacks.append(callback)


def test_notebook_bar_logs_no_table_row_where_the_stock_bar_does():
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.utils.notebook import NotebookProgressCallback

    args = TrainingArguments(output_dir="unused", report_to=[])
    state, control = TrainerState(global_step=3), TrainerControl()
    stock, bar = NotebookProgressCallback(), NotebookBarCallback()
    for callback in (stock, bar):
        callback.training_tracker = _RecordingTracker()
        callback.on_log(args, state, control, logs={"loss": 0.5})
    assert len(stock.training_tracker.lines) == 1  # the stock callback adds a table row per log
    assert bar.training_tracker.lines == []


def test_notebook_bar_starts_without_a_table_header():
    from transformers import TrainerControl, TrainerState, TrainingArguments
    from transformers.utils.notebook import NotebookProgressCallback

    args = TrainingArguments(output_dir="unused", report_to=[])
    state, control = TrainerState(max_steps=18), TrainerControl()
    stock, bar = NotebookProgressCallback(), NotebookBarCallback()
    for callback in (stock, bar):
        callback.on_train_begin(args, state, control)
    assert stock.training_tracker.inner_table == [["Step", "Training Loss"]]  # drawn as an empty table
    assert bar.training_tracker.inner_table is None and bar.training_tracker.total == 18


def test_the_bar_replaces_the_notebook_callback_only():
    from transformers.trainer_callback import ProgressCallback
    from transformers.utils.notebook import NotebookProgressCallback

    in_notebook = _TrainerCallbacks([NotebookProgressCallback()])
    show_bar_without_log_table(in_notebook)
    assert [type(cb) for cb in in_notebook.callbacks] == [NotebookBarCallback]
    in_terminal = _TrainerCallbacks([ProgressCallback()])
    show_bar_without_log_table(in_terminal)
    assert [type(cb) for cb in in_terminal.callbacks] == [ProgressCallback]


@pytest.mark.slow
@pytest.mark.parametrize("bf16", [False, True])
def test_grpo_samples_from_a_plain_copy_of_the_policy(bf16, tokenizer, tmp_path, monkeypatch):
    """The trainer's own sampling goes through ``generation.sampler`` (a merged copy of the current policy, in bf16
    on a CPU with native bf16), once per step, and the policy's ``generate`` is its own again afterwards."""
    import helpers.generation as generation
    import helpers.training as training
    from helpers.chat import task_prompt
    from helpers.rewards import math_accuracy_reward

    monkeypatch.setattr(generation, "cpu_bf16_enabled", lambda: bf16)
    copies, policy_layer_calls_while_sampling = [], []
    real_sampler = generation.sampler

    @contextmanager
    def counting_sampler(model):
        copies.append(model)
        calls, layer = [], model.get_base_model().model.layers[0]
        # the copy inherits the hook: count only the calls that ran the policy's own layer
        hook = layer.register_forward_pre_hook(lambda module, args: calls.append(module is layer))
        try:
            with real_sampler(model) as decoder:
                yield decoder
        finally:
            hook.remove()
            policy_layer_calls_while_sampling.append(sum(calls))

    monkeypatch.setattr(training, "sampler", counting_sampler)
    rows = [{"prompt": task_prompt({"prompt": f"What is {a} + 1?"}), "answer": str(a + 1)} for a in range(4)]
    # bf16 autocast, so that accelerate wraps the policy's forward as it does in the course's runs
    config = grpo_config(get_profile("tiny"), tmp_path / "grpo", max_steps=2, bf16=bf16, disable_tqdm=True)
    trainer = run_grpo(load_model("tiny"), tokenizer, Dataset.from_list(rows), [math_accuracy_reward], config,
                       peft_config=lora_config(r=4, alpha=8))
    assert trainer.state.global_step == 2
    assert len(copies) == 2 and all(policy is trainer.model for policy in copies)
    assert policy_layer_calls_while_sampling == [0, 0]  # the copy sampled; the training weights were never run
    assert "generate" not in vars(trainer.model)  # the instance attribute set for sampling is gone


@pytest.mark.slow
def test_a_model_trained_under_bf16_autocast_computes_in_float32_afterwards(tokenizer, tmp_path):
    """accelerate wraps the model's forward in bf16 autocast for training; after training the course unwraps it, so
    the adapter model scores what its merged, saved copy will score (notebook 6's reward model, notebook 3's check)."""
    import copy

    import torch

    from helpers.models import merge_lora

    dataset = Dataset.from_list([to_prompt_completion(c) for c in CONVERSATIONS * 4])
    config = sft_config(get_profile("tiny"), tmp_path / "sft", disable_tqdm=True, max_steps=1, bf16=True,
                        per_device_train_batch_size=4)
    trainer = run_sft(load_model("tiny"), tokenizer, dataset, config, lora_config(r=4, alpha=8))
    assert "_original_forward" not in vars(trainer.model)  # what accelerate keeps while the wrapper is on
    trainer.model.eval()
    ids = tokenizer("What is 12 - 5?", return_tensors="pt")
    with torch.no_grad():
        gap = (trainer.model(**ids).logits - merge_lora(copy.deepcopy(trainer.model))(**ids).logits).abs().max()
    assert gap < 1e-4  # under bf16 autocast it is about 1e-2
