"""The offline tokenizer against facts of the real Qwen2.5 one, and the offline models end to end."""

import time
import unicodedata

import pytest
import torch

from helpers.models import (
    CheckpointNotFoundError,
    HubUnavailableError,
    load_model,
    load_tokenizer,
    merge_lora,
    resolve_model_name,
    save_model,
)


@pytest.fixture(scope="module")
def qwen_tokenizer():
    return load_tokenizer("tiny")


def test_regular_ids_match_qwen25(qwen_tokenizer):
    assert qwen_tokenizer.encode("Hello") == [9707]
    assert qwen_tokenizer.encode("\n") == [198]
    assert qwen_tokenizer.encode("Hello world") == [9707, 1879]
    assert len(qwen_tokenizer.encode(" " * 8)) == 1  # runs of spaces merge, as in Qwen2.5


def test_special_tokens_sit_at_their_real_ids(qwen_tokenizer):
    expected = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                "<tool_call>": 151657, "</tool_call>": 151658, "<|fim_prefix|>": 151659, "<|file_sep|>": 151664}
    for token, token_id in expected.items():
        assert qwen_tokenizer.convert_tokens_to_ids(token) == token_id, token
    assert len(qwen_tokenizer) == 151665
    assert qwen_tokenizer.pad_token == "<|endoftext|>" and qwen_tokenizer.pad_token_id == 151643
    assert qwen_tokenizer.eos_token == "<|im_end|>"
    # a special token inside text is one id, not split into characters
    assert qwen_tokenizer.encode("<|im_start|>user") == [151644, 872]


def test_chat_template_renders_chatml(qwen_tokenizer):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    assert qwen_tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4<|im_end|>\n"
    )


def test_chat_template_default_system_prompt_and_generation_prompt(qwen_tokenizer):
    text = qwen_tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("text", [
    "naïve café, Grüße aus Köln — 東京 2024年 🙂👍🏽",
    "Ωμέγα ∑ x² ≤ ∞\tשלום مرحبا\n\n  indented\r\n",
    "<think>\n3 × 4 = 12\n</think>\n<answer>12</answer>",
])
def test_decode_inverts_encode_on_mixed_unicode(qwen_tokenizer, text):
    assert text == unicodedata.normalize("NFC", text)  # the tokenizer normalizes to NFC, as Qwen2.5 does
    assert qwen_tokenizer.decode(qwen_tokenizer.encode(text)) == text


@pytest.mark.slow
def test_tiny_model_forward_backward_is_fast(qwen_tokenizer):
    model = load_model("tiny")
    assert model.config.vocab_size == 151936 and model.config.num_hidden_layers == 2
    batch = qwen_tokenizer(["Hello world, this is a test."] * 4, return_tensors="pt")
    start = time.perf_counter()
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    assert time.perf_counter() - start < 1.0
    assert torch.isfinite(out.loss)


@pytest.mark.slow
@pytest.mark.parametrize("profile_name", ["tiny", "cpu"])
def test_offline_model_loads_runs_and_generates(profile_name):
    tokenizer = load_tokenizer(profile_name)
    model = load_model(profile_name)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = model(**prompt).logits
    assert logits.shape[:2] == prompt["input_ids"].shape and logits.shape[-1] == model.config.vocab_size
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    new_tokens = generated.shape[1] - prompt["input_ids"].shape[1]
    assert 1 <= new_tokens <= 8


@pytest.mark.slow
def test_cpu_model_is_smollm2_and_answers_sensibly():
    tokenizer = load_tokenizer("cpu")
    model = load_model("cpu")
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token != tokenizer.eos_token
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2+3?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=16, do_sample=False)
    answer = tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "5" in answer  # the dequantized weights are the real model, not noise


@pytest.mark.slow
def test_missing_local_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint at"):
        load_model(str(tmp_path / "sft"))
    with pytest.raises(CheckpointNotFoundError, match="tiny, cpu, gpu"):
        resolve_model_name("checkpoints/never-trained/grpo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointNotFoundError, match="holds no model"):
        load_model(tmp_path / "empty")


def test_hub_id_offline_names_the_offline_profiles(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnavailableError) as err:
        load_tokenizer("Qwen/Qwen2.5-0.5B-Instruct-not-cached")
    assert "COURSE_PROFILE=cpu" in str(err.value) and "tiny" in str(err.value)


@pytest.mark.slow
def test_lora_save_merge_reload_round_trip(tmp_path, qwen_tokenizer):
    model = load_model("tiny", lora_cfg={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters()) / 10
    with torch.no_grad():  # move the adapter off its zero init so merging changes something
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    inputs = qwen_tokenizer(["The answer is 42."], return_tensors="pt")
    with torch.no_grad():
        adapted = model(**inputs).logits
    merged = merge_lora(model)
    save_model(merged, tmp_path / "merged", qwen_tokenizer)
    reloaded = load_model(tmp_path / "merged")
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, adapted, atol=1e-4)
    assert (tmp_path / "merged" / "tokenizer.json").exists()
    with pytest.raises(TypeError, match="PEFT model"):
        merge_lora(reloaded)


@pytest.mark.slow
def test_save_model_replaces_previous_checkpoint(tmp_path, qwen_tokenizer):
    model = load_model("tiny")
    target = tmp_path / "ckpt"
    save_model(model, target)
    (target / "stale.txt").write_text("from an older run")
    save_model(model, target, qwen_tokenizer)
    assert not (target / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folders left behind


@pytest.mark.slow
def test_building_the_initial_model_leaves_the_random_state_alone(tmp_path, monkeypatch):
    """A fresh checkout builds the initial model mid-notebook; what the notebook draws next must not change."""
    import random

    import numpy as np

    import helpers.config as course_config
    from helpers.config import get_profile, seed_everything
    from helpers.models import initial_checkpoint

    seed_everything(5)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    monkeypatch.setattr(course_config, "CHECKPOINT_DIR", tmp_path)
    seed_everything(5)
    built = initial_checkpoint(get_profile("tiny"))
    assert built.startswith(str(tmp_path))  # it really was built here, not found
    drawn = (random.random(), np.random.rand(), torch.rand(3))
    assert drawn[:2] == expected[:2] and torch.equal(drawn[2], expected[2])


def test_a_local_checkpoint_loads_without_a_progress_bar(capfd):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    load_model("tiny")
    assert "Loading weights" not in capfd.readouterr().err  # notebook 9 loads fourteen checkpoints
    assert hf_logging.is_progress_bar_enabled()  # restored for Hub downloads


def test_loading_places_the_model_on_the_gpu_alone_but_leaves_a_launched_process_to_its_trainer(monkeypatch):
    from helpers.models import loading_kwargs

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loading_kwargs("tiny") == {"dtype": torch.float32, "device_map": "auto"}
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun / accelerate launch: one process per GPU
    assert loading_kwargs("tiny") == {"dtype": torch.float32}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE")
    assert loading_kwargs("tiny", dtype=torch.bfloat16) == {"dtype": torch.bfloat16}
