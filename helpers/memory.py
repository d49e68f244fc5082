"""How much GPU memory each training stage needs, computed from the profile: the ``gpu`` profile's memory plan.

Every number is bytes = (how many values) x (bytes per value); the table shows GB = 2**30 bytes, as torch's
memory summary and ``nvidia-smi`` count them. Per stage:

- **weights**: every parameter of the model in the profile's dtype (bf16: 2 bytes each).
- **LoRA + optimizer**: each adapted linear layer ``d_in -> d_out`` adds ``r * (d_in + d_out)`` trainable values,
  kept in fp32 (PEFT upcasts adapters), with an fp32 gradient and AdamW's two fp32 moments: 16 bytes each.
- **reference model**: none. With a LoRA adapter TRL's DPO, GRPO and RLOO trainers compute the reference
  log-probs with the adapter switched off (the same weights), and GRPO's ``beta=0`` needs no reference at all.
- **activations**: what autograd keeps for the backward pass, per token and layer (``activation_bytes_per_token``).
  With gradient checkpointing, which ``helpers.training.hardware_kwargs`` turns on on a GPU, only each layer's
  input is kept and one layer at a time is recomputed during the backward.
- **LM head**: TRL 1.16 never builds the ``tokens x vocabulary`` logits when training: its chunked log-softmax
  projects 4,096 tokens x 32,768 vocabulary entries at a time. The full fp32 logits are shown beside the total, as
  what a plain ``model(**batch).loss`` would hold (often the largest item of all).
- **KV cache** of generation: per token and layer a key and a value of ``kv_heads x head_dim`` values.
  GRPO/RLOO generate ``num_generations`` completions for each prompt of a step; with vLLM colocated, vLLM
  reserves ``vllm_gpu_memory_utilization`` of the whole GPU for its own weights and cache instead.
- **overhead**: 0.5 GB of CUDA context and kernels plus 10% of the rest for the allocator's fragmentation and
  the gradients in flight during the backward.

The items are added up, although the KV cache is freed before the update: an upper bound by less than a GB.
Real batches pad to their longest row, not to ``max_length``: the plan is the worst step, not the typical one.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from peft import LoraConfig

from helpers.config import Profile, get_profile
from helpers.evaluation import markdown_table
from helpers.training import (
    dpo_config,
    grpo_config,
    lora_config,
    reward_config,
    reward_model_lora_config,
    rloo_config,
    sft_config,
)

GB = 2**30
GPU_SIZES_GB = (16, 40, 80)  # a free Colab T4, and the two A100s
CUDA_CONTEXT_BYTES = GB // 2
FRAGMENTATION = 0.10
PROMPT_TOKENS = 256  # the longest RL prompt: the R1 system prompt and chat template are 100 tokens, a problem the rest
TRL_TOKEN_CHUNK, TRL_VOCAB_CHUNK = 4096, 32768  # TRL 1.16's chunked log-softmax tile (trl/kernels/chunked_logprob.py)
FP32, MASK = 4, 1  # bytes: an fp32 value; a dropout mask entry (bool)


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Qwen2-style decoder that memory depends on."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool

    def linear_layers(self) -> dict[str, tuple[int, int]]:
        """Each decoder layer's linear layers as ``name: (d_in, d_out)``."""
        h, kv, i = self.hidden, self.kv_heads * self.head_dim, self.intermediate
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def parameters(self) -> int:
        """Embeddings (once if tied to the LM head), per layer the linear weights, q/k/v biases and two norms."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        per_layer = sum(d_in * d_out for d_in, d_out in self.linear_layers().values()) + (h + 2 * kv) + 2 * h
        embeddings = self.vocab * h * (1 if self.tied_embeddings else 2)
        return embeddings + self.layers * per_layer + h  # + the final norm


# Qwen/Qwen2.5-0.5B-Instruct's config.json (shipped in configs/qwen2.5-0.5b-instruct/)
QWEN25_05B = ModelShape(layers=24, hidden=896, heads=14, kv_heads=2, head_dim=64, intermediate=4864, vocab=151936,
                        tied_embeddings=True)


def adapted_layers(shape: ModelShape, lora: LoraConfig) -> dict[str, tuple[int, int]]:
    """The linear layers of one decoder layer that ``lora`` adapts (PEFT's "all-linear" leaves out the LM head)."""
    layers = shape.linear_layers()
    if lora.target_modules == "all-linear":
        return layers
    return {name: size for name, size in layers.items() if name in lora.target_modules}


def lora_parameters(shape: ModelShape, lora: LoraConfig) -> int:
    return shape.layers * sum(lora.r * (d_in + d_out) for d_in, d_out in adapted_layers(shape, lora).values())


def activation_bytes_per_token(shape: ModelShape, lora: LoraConfig | None, act: int) -> int:
    """What autograd keeps per token in one decoder layer, activations ``act`` bytes each (2 in bf16/fp16).

    Attention: six hidden-sized tensors (among them the q/k/v input, q around RoPE, the attention output and the
    o_proj input), k and v: 2 x kv_heads x head_dim. MLP: gate and up outputs,
    SiLU output, the product that enters down_proj: 4 x intermediate. Each RMSNorm keeps its input in fp32.
    Each LoRA layer keeps its dropout mask and dropped-out input (``d_in``) and its rank-``r`` middle.
    Checked against torch's saved tensors of a real-sized layer in tests/test_memory.py."""
    h, kv, i = shape.hidden, shape.kv_heads * shape.head_dim, shape.intermediate
    kept = act * (6 * h + 2 * kv + 4 * i) + 2 * FP32 * h
    if lora is not None:
        kept += sum(d_in * (MASK + act) + lora.r * act for d_in, _ in adapted_layers(shape, lora).values())
    return kept


def training_activation_bytes(shape: ModelShape, tokens: int, lora: LoraConfig | None, act: int,
                              checkpointing: bool) -> int:
    """Without checkpointing every layer keeps everything; with it, each layer keeps its input (hidden values)
    and the backward recomputes one layer's activations at a time."""
    per_layer = activation_bytes_per_token(shape, lora, act)
    if not checkpointing:
        return tokens * shape.layers * per_layer
    return tokens * (shape.layers * shape.hidden * act + per_layer)


def lm_head_bytes(shape: ModelShape, scored_tokens: int, act: int) -> int:
    """TRL's chunked log-softmax: one logits tile, plus the scored tokens' hidden states and their fp32 gradient."""
    tile = min(scored_tokens, TRL_TOKEN_CHUNK) * min(shape.vocab, TRL_VOCAB_CHUNK) * act
    return tile + scored_tokens * shape.hidden * (act + FP32)


def full_logits_bytes(shape: ModelShape, scored_tokens: int) -> int:
    """The ``tokens x vocabulary`` logits in fp32, as transformers' own loss upcasts them."""
    return scored_tokens * shape.vocab * FP32


def kv_cache_bytes(shape: ModelShape, sequences: int, tokens_per_sequence: int, act: int) -> int:
    """A key and a value per token and layer, each ``kv_heads x head_dim`` values."""
    return sequences * tokens_per_sequence * shape.layers * 2 * shape.kv_heads * shape.head_dim * act


@dataclass(frozen=True)
class StageLoad:
    """What one stage puts on the GPU at its largest step, read from the TRL config the course builds."""

    stage: str
    sequences: int  # sequences in one forward/backward
    tokens_per_sequence: int
    scored_tokens: int  # tokens whose next-token log-prob is computed (0: a reward model's score head)
    lora: LoraConfig | None  # None: no training (generation only)
    generated_sequences: int = 0
    vllm_share: float = 0.0  # the share of the GPU vLLM reserves (colocate mode)


def stage_loads(profile: Profile) -> list[StageLoad]:
    """Each stage's batch and lengths from the configs ``helpers.training`` builds for ``profile`` (built here on
    the CPU, as the notebooks' cpu-vs-gpu tables do: bf16 and vLLM off only so that they build)."""
    out = Path(tempfile.gettempdir()) / "memory-plan"
    on_cpu = dict(use_cpu=True, bf16=False)
    sft = sft_config(profile, out, **on_cpu)
    rm = reward_config(profile, out, **on_cpu)
    dpo = dpo_config(profile, out, **on_cpu)
    loads = [
        StageLoad("sft", sft.per_device_train_batch_size, sft.max_length,
                  sft.per_device_train_batch_size * sft.max_length, lora_config()),
        # the reward trainer scores chosen and rejected in one batch; its head outputs one number per sequence
        StageLoad("reward_model", 2 * rm.per_device_train_batch_size, rm.max_length, 0, reward_model_lora_config()),
    ]
    for name, build in (("grpo", grpo_config), ("rloo", rloo_config)):
        rl = build(profile, out, use_vllm=False, **on_cpu)
        length = PROMPT_TOKENS + rl.max_completion_length
        rl_load = StageLoad(name, rl.per_device_train_batch_size, length,
                            rl.per_device_train_batch_size * rl.max_completion_length,
                            lora_config(target=profile.rl_lora_target), generated_sequences=rl.generation_batch_size)
        loads += [rl_load, dataclasses.replace(rl_load, stage=f"{name} + vLLM colocate", generated_sequences=0,
                                               vllm_share=rl.vllm_gpu_memory_utilization)]
    loads += [
        StageLoad("dpo", 2 * dpo.per_device_train_batch_size, dpo.max_length,
                  2 * dpo.per_device_train_batch_size * dpo.max_length, lora_config()),
        # notebooks 07-09 sample eval_batch_size sequences at a time from a merged model
        StageLoad("generation (07-09)", 0, PROMPT_TOKENS + profile.max_new_tokens, 0, None,
                  generated_sequences=profile.eval_batch_size),
    ]
    return loads


def stage_bytes(load: StageLoad, shape: ModelShape, weight_bytes: int, act: int, checkpointing: bool) -> dict:
    """The plan's items for one stage, in bytes."""
    tokens = load.sequences * load.tokens_per_sequence
    items = {
        "weights": shape.parameters() * weight_bytes,
        "LoRA + optimizer": 4 * FP32 * lora_parameters(shape, load.lora) if load.lora else 0,
        "activations": training_activation_bytes(shape, tokens, load.lora, act, checkpointing) if load.lora else 0,
        "LM head": lm_head_bytes(shape, load.scored_tokens, act) if load.scored_tokens else 0,
        "KV cache": kv_cache_bytes(shape, load.generated_sequences, load.tokens_per_sequence, act),
    }
    items["overhead"] = CUDA_CONTEXT_BYTES + FRAGMENTATION * sum(items.values())
    items["total"] = sum(items.values())
    return items


def memory_plan(profile: Profile | None = None, shape: ModelShape = QWEN25_05B) -> pd.DataFrame:
    """One row per stage: each item in GB, the total (with gradient checkpointing where the profile is for a GPU),
    the total without checkpointing, the full fp32 logits TRL avoids, and whether the stage fits each GPU size."""
    profile = profile or get_profile("gpu")
    weight_bytes = act = 4 if profile.dtype == "float32" else 2  # bf16/fp16 weights, activations under autocast
    checkpointing = profile.accelerator == "cuda"  # hardware_kwargs: activation checkpointing on a GPU
    rows = {}
    for load in stage_loads(profile):
        items = stage_bytes(load, shape, weight_bytes, act, checkpointing)
        other = stage_bytes(load, shape, weight_bytes, act, not checkpointing)["total"]
        row = {name: value / GB for name, value in items.items()}
        row["total, checkpointing " + ("off" if checkpointing else "on")] = other / GB
        row["full logits, fp32 (not built)"] = full_logits_bytes(shape, load.scored_tokens) / GB
        row["vLLM share"] = load.vllm_share
        for size in GPU_SIZES_GB:
            row[f"fits {size} GB"] = "yes" if row["total"] + load.vllm_share * size <= size else "no"
        rows[load.stage] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("stage")


def t4_profile() -> Profile:
    """The ``t4`` profile (``helpers.config``): the gpu course in fp32 weights with fp16 autocast, for 16 GB."""
    return get_profile("t4")


def plan_markdown(profile: Profile) -> str:
    """The plan as the README shows it."""
    return markdown_table(memory_plan(profile), float_format="{:.2f}")
