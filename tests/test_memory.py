"""The memory plan: its formulae on hand-computed cases, against torch's own count, and the T4 override."""

import dataclasses
import json

import pytest

from helpers.config import REPO_ROOT, get_profile
from helpers.memory import (
    GB,
    QWEN25_05B,
    activation_bytes_per_token,
    full_logits_bytes,
    kv_cache_bytes,
    lora_parameters,
    memory_plan,
    t4_profile,
)
from helpers.training import grpo_config, lora_config

TRAINING_STAGES = ["sft", "reward_model", "grpo", "rloo", "dpo"]


def test_the_shape_is_qwen25_05b_shipped_config():
    config = json.loads((REPO_ROOT / "configs" / "qwen2.5-0.5b-instruct" / "config.json").read_text())
    assert dataclasses.astuple(QWEN25_05B) == (
        config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
        config["num_key_value_heads"], config["hidden_size"] // config["num_attention_heads"],
        config["intermediate_size"], config["vocab_size"], config["tie_word_embeddings"])


def test_weights_adapters_logits_and_kv_cache_by_hand():
    # 151936 x 896 tied embeddings + 24 layers x 14,912,384 + the final norm: Qwen2.5-0.5B's 0.49B parameters
    assert QWEN25_05B.parameters() == 494_032_768
    assert QWEN25_05B.parameters() * 2 == 988_065_536  # bf16 weights: 0.92 GB
    # rank 16: q and o 16 x (896 + 896), k and v 16 x (896 + 128); all-linear adds 3 x 16 x (896 + 4864)
    assert lora_parameters(QWEN25_05B, lora_config()) == 24 * 90_112
    assert lora_parameters(QWEN25_05B, lora_config(target="all-linear")) == 24 * (90_112 + 276_480)
    # SFT's batch of 16 x 2048 tokens: the fp32 logits a plain loss would hold
    assert full_logits_bytes(QWEN25_05B, 16 * 2048) == 16 * 2048 * 151_936 * 4 == 19_914_555_392
    # per token: 24 layers x (key + value) x 2 KV heads x 64 x 2 bytes
    assert kv_cache_bytes(QWEN25_05B, 1, 1, 2) == 12_288
    # a layer without LoRA, then 4 attention adapters: each a bool mask and a bf16 copy of 896 inputs, 16 in the middle
    assert activation_bytes_per_token(QWEN25_05B, None, 2) == 2 * (6 * 896 + 2 * 128 + 4 * 4864) + 8 * 896
    assert activation_bytes_per_token(QWEN25_05B, lora_config(), 2) == 57_344 + 4 * (896 * 3 + 16 * 2)


@pytest.mark.slow
def test_activations_per_token_match_what_torch_saves_for_one_real_size_layer():
    """One Qwen2.5-0.5B-sized decoder layer in bf16: the bytes autograd keeps for the backward (counted with
    torch's saved-tensor hooks, each storage once) are what the formula says, within 1%."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    shape = QWEN25_05B
    config = Qwen2Config(hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                         num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, num_hidden_layers=1,
                         vocab_size=64, attn_implementation="sdpa")
    model = Qwen2ForCausalLM(config).to(torch.bfloat16).train()
    batch, length = 2, 128
    hidden = torch.randn(batch, length, shape.hidden, dtype=torch.bfloat16, requires_grad=True)
    positions = torch.arange(length).expand(batch, -1)
    cos, sin = model.model.rotary_emb(hidden, positions)
    not_activations = {t.untyped_storage().data_ptr() for t in [hidden, cos, sin, *model.parameters()]}
    saved = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in not_activations:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model.model.layers[0](hidden, attention_mask=None, position_embeddings=(cos, sin), position_ids=positions)
    per_token = sum(saved.values()) / (batch * length)
    assert per_token == pytest.approx(activation_bytes_per_token(shape, None, 2), rel=0.01)


@pytest.fixture(scope="module")
def gpu_plan():
    return memory_plan(get_profile("gpu"))


def test_the_plan_adds_up_and_follows_the_profile(gpu_plan):
    items = ["weights", "LoRA + optimizer", "activations", "LM head", "KV cache", "overhead"]
    assert gpu_plan["total"].to_numpy() == pytest.approx(gpu_plan[items].sum(axis=1).to_numpy())
    assert gpu_plan.loc["sft", "weights"] == pytest.approx(988_065_536 / GB)
    gpu = get_profile("gpu")
    bigger = memory_plan(dataclasses.replace(gpu, sft_batch_size=2 * gpu.sft_batch_size, rl_prompts_per_step=16))
    for stage in ("sft", "grpo", "rloo"):
        assert bigger.loc[stage, "activations"] == pytest.approx(2 * gpu_plan.loc[stage, "activations"])
        assert bigger.loc[stage, "total"] > gpu_plan.loc[stage, "total"]
    assert bigger.loc["dpo", "total"] == gpu_plan.loc["dpo", "total"]


def test_gradient_checkpointing_is_what_makes_rl_fit(gpu_plan):
    rl = gpu_plan.loc[["grpo", "rloo"]]
    assert (rl["fits 40 GB"] == "yes").all()
    assert (rl["total, checkpointing off"] > 80).all()  # every layer's activations kept: not even on 80 GB
    assert (gpu_plan.loc[TRAINING_STAGES, "full logits, fp32 (not built)"] > 0).sum() == 4  # a reward model has none


def test_the_t4_override_fits_16_gb_where_the_gpu_sizes_in_fp32_do_not():
    t4 = memory_plan(t4_profile())
    assert (t4["fits 16 GB"] == "yes").all(), t4
    # a T4 has no bf16: the gpu profile's sizes with fp32 weights (what the override trains in) overflow 16 GB
    gpu_in_fp32 = memory_plan(dataclasses.replace(get_profile("gpu"), dtype=get_profile("t4").dtype))
    assert (gpu_in_fp32["fits 16 GB"] == "no").any()
    assert gpu_in_fp32["total"].max() > 16


def test_vllm_colocate_reserves_its_share_of_each_gpu(gpu_plan, tmp_path):
    colocated = gpu_plan.loc["grpo + vLLM colocate"]
    config = grpo_config(get_profile("gpu"), tmp_path, use_cpu=True, bf16=False, use_vllm=False)
    assert colocated["vLLM share"] == config.vllm_gpu_memory_utilization == 0.3  # TRL 1.16's default
    assert colocated["KV cache"] == 0  # vLLM's cache is inside its share
    too_small = colocated["total"] / (1 - colocated["vLLM share"])  # the GPU size below which it cannot fit
    assert all((colocated[f"fits {size} GB"] == "yes") == (size >= too_small) for size in (16, 40, 80))


def test_readme_memory_plan_blocks_are_the_functions_output():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("memory-plan-gpu", "memory-plan-t4"):
        assert f"<!-- {name}:start -->" in readme and f"<!-- {name}:end -->" in readme
    from helpers.readme import render_readme

    assert render_readme(readme) == readme, "run `python -m helpers.readme` to rewrite the README's memory plan"


def test_the_lm_head_tile_is_trls():
    """Drift guard: the tile TRL's chunked log-softmax projects at a time, which the LM-head item counts."""
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

    from helpers.memory import TRL_TOKEN_CHUNK, TRL_VOCAB_CHUNK

    assert (TRL_TOKEN_CHUNK, TRL_VOCAB_CHUNK) == (TOKEN_CHUNK_SIZE, _CHUNKED_LOGPROB_CHUNK_SIZE)
