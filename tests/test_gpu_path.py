"""The ``gpu`` profile's code path on a CPU, with the real architecture.

Random weights of Qwen2.5-0.5B-Instruct's own ``config.json`` and ``generation_config.json`` (shipped in
``configs/qwen2.5-0.5b-instruct``) are loaded by the loaders the ``gpu`` profile uses, and every trainer the ``gpu``
profile builds takes one optimizer step. Only sizes shrink (batch, lengths, steps, rows); bf16 and vLLM are off, as
this CPU has neither; activation checkpointing is on, as ``hardware_kwargs`` sets it on CUDA. What would break on
Colab (a config field TRL rejects, LoRA behind activation checkpointing getting no gradient, the pad or stop token,
Qwen2.5's chat template, the checkpoint's sampling defaults leaking into greedy decoding) breaks here first.
"""

import contextlib
import dataclasses
import json
import math
import os
import random
import runpy

import pytest
import torch
from datasets import Dataset
from peft import get_peft_model

from helpers.chat import task_prompt, to_prompt_completion
from helpers.config import REPO_ROOT, Profile, get_profile
from helpers.data import load_task
from helpers.generation import generate
from helpers.models import (
    QWEN25_05B_CONFIG_DIR,
    build_random_checkpoint,
    initial_checkpoint,
    load_model,
    load_tokenizer,
)
from helpers.preferences import load_reward_model
from helpers.rewards import format_reward, math_accuracy_reward
from helpers.training import (
    dpo_config,
    grpo_config,
    lora_config,
    reward_config,
    reward_model_lora_config,
    rloo_config,
    run_dpo,
    run_grpo,
    run_reward_model,
    run_rloo,
    run_sft,
    sft_config,
)

TINY = get_profile("tiny")  # the offline loaders give rows of the Hub schemas
IM_END, ENDOFTEXT = 151645, 151643


def test_the_shipped_config_is_qwen25_05b_instruct():
    config = json.loads((QWEN25_05B_CONFIG_DIR / "config.json").read_text())
    assert {key: config[key] for key in ("num_hidden_layers", "hidden_size", "num_attention_heads",
                                         "num_key_value_heads", "intermediate_size", "vocab_size")} == {
        "num_hidden_layers": 24, "hidden_size": 896, "num_attention_heads": 14, "num_key_value_heads": 2,
        "intermediate_size": 4864, "vocab_size": 151936}
    assert config["tie_word_embeddings"] is True and config["rope_theta"] == 1e6
    assert (config["max_position_embeddings"], config["use_sliding_window"]) == (32768, False)
    generation = json.loads((QWEN25_05B_CONFIG_DIR / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [IM_END, ENDOFTEXT] and generation["pad_token_id"] == ENDOFTEXT
    assert (generation["top_k"], generation["top_p"], generation["temperature"]) == (20, 0.8, 0.7)


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    """The gpu profile with the Hub id swapped for a folder of random weights and only the sizes shrunk."""
    # float32 weights, as this CPU trains (bf16 is emulated without AMX or AVX512-BF16): they load without a cast
    checkpoint = build_random_checkpoint(tmp_path_factory.mktemp("gpu_model") / "qwen2.5-0.5b-instruct-random",
                                         dtype=torch.float32)
    return dataclasses.replace(
        get_profile("gpu"), model_id=str(checkpoint), logging_steps=1, max_seq_length=80, max_new_tokens=8,
        sft_batch_size=1, sft_grad_accum=1, rl_steps=1, num_generations=2, rl_prompts_per_step=1,
        max_completion_length=4, reward_model_steps=1, reward_model_batch_size=1, dpo_steps=1, dpo_batch_size=1,
        rloo_steps=1, eval_batch_size=2)


@pytest.fixture(scope="module", autouse=True)
def every_core():
    """A 0.5B model is far slower than the tiny one: these tests use every core (up to 4), then give the single
    thread of the other tests back. Nothing here compares numbers across runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(profile):
    return load_tokenizer(initial_checkpoint(profile))  # once: reading Qwen2.5's tokenizer takes seconds


def load_policy(profile):
    return load_model(initial_checkpoint(profile), dtype=torch.float32)


@contextlib.contextmanager
def built_as_on_cuda():
    """Configs built inside get the gpu profile's CUDA settings from ``hardware_kwargs`` (activation checkpointing,
    bf16); the caller switches bf16 and vLLM off for the CPU."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Profile, "uses_cuda", property(lambda self: True))
        yield


def build_config(builder, profile, output_dir, **overrides):
    # warmup_steps=0: a warm-up of 5% or 10% of a one-step run is that whole step, at learning rate 0
    with built_as_on_cuda():
        config = builder(profile, output_dir, bf16=False, warmup_steps=0, disable_tqdm=True, **overrides)
    assert config.activation_checkpointing  # as on the GPU: PEFT must still get gradients through it
    return config


def assert_one_finite_step(trainer):
    assert trainer.state.global_step == 1
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    assert losses and all(math.isfinite(loss) for loss in losses), trainer.state.log_history
    # PEFT starts every lora_B at zero, so a non-zero one shows that the step reached the adapter
    lora_b = [p for name, p in trainer.model.named_parameters() if "lora_B" in name]
    assert lora_b and any(p.detach().abs().sum() > 0 for p in lora_b)


def random_reward(completions, **kwargs):
    """Random weights repeat the last token (a tied-embedding model's logits favour its input), so every sample of a
    prompt is the same text, every reward of it ties and GRPO's advantages, hence its gradient, are 0: a random
    score gives the step something to follow (the trainer seeds Python's ``random``)."""
    return [random.random() for _ in completions]


def short_rows(task, n, length):
    """The ``n`` rows of ``task`` (tiny profile) with the shortest ``length(row)``: a step on them stays cheap."""
    return sorted(load_task(task, TINY, split="train"), key=length)[:n]


def preference_pairs(n):
    rows = short_rows("preferences", n, lambda row: len(str(row["prompt"])) + len(str(row["chosen"])))
    return Dataset.from_list([{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in rows])


def math_prompts(n):
    rows = short_rows("math", n, lambda row: len(row["prompt"]))
    return Dataset.from_list([{"prompt": task_prompt(row, system_prompt=None), "answer": row["answer"]}
                              for row in rows])


@pytest.mark.slow
def test_sft_step_on_a_conversation(profile, tokenizer, tmp_path):
    """Notebook 3's path: LoRA on the attention projections wrapped first, then TRL's SFTTrainer on prompt-completion
    conversations (an instruction row: the schema of the warm-start traces, and shorter)."""
    rows = short_rows("instructions", 1, lambda row: len(str(row["messages"])))
    dataset = Dataset.from_list([to_prompt_completion(row["messages"], system_prompt=None) for row in rows])
    peft_model = get_peft_model(load_policy(profile), lora_config())
    trainer = run_sft(peft_model, tokenizer, dataset, build_config(sft_config, profile, tmp_path, max_steps=1))
    assert_one_finite_step(trainer)


@pytest.mark.slow
def test_reward_model_step_on_preference_pairs(profile, tokenizer, tmp_path):
    """Notebook 6's path: a score head on the backbone, LoRA + the head trained, TRL's RewardTrainer."""
    model = load_reward_model(initial_checkpoint(profile), tokenizer, dtype=torch.float32)
    assert model.config.pad_token_id == ENDOFTEXT  # the score is read at the last token before the padding
    model = get_peft_model(model, reward_model_lora_config())
    trainer = run_reward_model(model, tokenizer, preference_pairs(1), build_config(reward_config, profile, tmp_path))
    assert_one_finite_step(trainer)


@pytest.mark.slow
def test_grpo_step_on_math_prompts(profile, tokenizer, tmp_path):
    config = build_config(grpo_config, profile, tmp_path, use_vllm=False)
    trainer = run_grpo(load_policy(profile), tokenizer, math_prompts(1),
                       [math_accuracy_reward, format_reward, random_reward], config,
                       peft_config=lora_config(target=profile.rl_lora_target))
    assert_one_finite_step(trainer)
    assert IM_END in trainer.eos_token_ids  # completions end at the end of the assistant's turn


@pytest.mark.slow
def test_rloo_step_on_math_prompts(profile, tokenizer, tmp_path):
    config = build_config(rloo_config, profile, tmp_path, use_vllm=False)
    trainer = run_rloo(load_policy(profile), tokenizer, math_prompts(1), [math_accuracy_reward, random_reward],
                       config, peft_config=lora_config(target=profile.rl_lora_target))
    assert_one_finite_step(trainer)


@pytest.mark.slow
def test_dpo_step_on_preference_pairs(profile, tokenizer, tmp_path):
    trainer = run_dpo(load_policy(profile), tokenizer, preference_pairs(1), build_config(dpo_config, profile, tmp_path),
                      peft_config=lora_config())
    assert_one_finite_step(trainer)


class ScriptedLogits:
    """A forward hook on ``lm_head`` that replaces the logits: "Hello" (in the prompt) leads " world" by a margin
    that Qwen2.5's repetition penalty of 1.1 would overturn (10 / 1.1 < 9.5) and sampling at its temperature 0.7
    would often overturn; at forward call ``stop_at`` ``<|im_end|>`` leads instead, once."""

    def __init__(self, tokenizer, stop_at: int):
        self.favourite, self.runner_up = tokenizer.convert_tokens_to_ids(["Hello", "Ġworld"])
        self.stop_at, self.calls = stop_at, 0

    def __call__(self, module, inputs, output):
        logits = torch.zeros_like(output)
        logits[..., self.favourite], logits[..., self.runner_up] = 10.0, 9.5
        if self.calls == self.stop_at:
            logits[..., IM_END] = 20.0
        self.calls += 1
        return logits


@pytest.mark.slow
def test_course_greedy_decoding_stops_at_im_end_and_ignores_the_checkpoints_sampling_defaults(profile, tokenizer):
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    rendered = tokenizer.apply_chat_template(turns, tokenize=False)
    assert rendered == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                        "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n")
    model = load_policy(profile)
    assert (model.generation_config.do_sample, model.generation_config.repetition_penalty) == (True, 1.1)
    hook = model.lm_head.register_forward_hook(ScriptedLogits(tokenizer, stop_at=3))
    try:
        prompts = [[{"role": "user", "content": "Hello"}], [{"role": "user", "content": "Hello, Hello and Hello"}]]
        completions = generate(model, tokenizer, prompts, max_new_tokens=8, progress=False)
    finally:
        hook.remove()
    # three greedy "Hello"s (no penalty, no sampling), then <|im_end|> ends both rows of the left-padded batch
    assert completions == ["HelloHelloHello"] * 2


@pytest.mark.slow
def test_benchmark_smoke_run_writes_both_settings(tmp_path):
    benchmark = runpy.run_path(str(REPO_ROOT / "scripts" / "benchmark_gpu.py"), run_name="benchmark_gpu")
    results = benchmark["main"](["--smoke", "--output-dir", str(tmp_path)])
    assert {(row["stage"], row["setting"]) for row in results} >= {
        ("sft", "course"), ("sft", "trl-defaults"), ("grpo", "course"), ("grpo", "trl-defaults"),
        ("generation", "transformers")}
    for row in results:
        assert "error" not in row and row["seconds"] > 0 and row["tokens_per_s"] > 0, row
    grpo = [row for row in results if row["stage"] == "grpo"]
    assert all(0 < row["generation_s"] < row["seconds"] for row in grpo)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".csv", ".json"]
