"""Training and generation speed of the gpu profile on the GPU this runs on, with no Hub access.

    python scripts/benchmark_gpu.py           # one GPU: meant to take under 8 minutes on an H100/H200-class GPU
    python scripts/benchmark_gpu.py --smoke   # the same code path on a CPU, with a tiny model and tiny sizes

The model has random weights of Qwen2.5-0.5B-Instruct's shipped config (``configs/qwen2.5-0.5b-instruct``): speed
depends on the shapes, not on what the weights know. A random model never ends its turn, so every completion runs
to its token budget: generation figures are those of full-length completions, a step's worst case.

Each training stage runs twice, side by side, with the same LoRA, data and number of steps: ``course`` (the gpu
profile's configs from ``helpers.training``) and ``trl-defaults`` (TRL's own config defaults). The first step is a
warm-up and is not counted (``--smoke`` counts its one step). Measured: SFT tokens/s; GRPO step time, split into
generation (TRL's ``_generate``: sampling, with vLLM where the config uses it, and the weight sync vLLM needs) and
update (the rest: rewards, log-probs, backward, optimizer); generation tokens/s of transformers' ``generate`` with
the course's decoding settings, and of vLLM where installed; peak GPU memory; MFU, model FLOPs against the GPU's
dense bf16 peak (``PEAK_BF16_TFLOPS``). Model FLOPs are 2 per weight per token plus attention's (PaLM, appendix B);
a LoRA backward pass costs one forward pass (no gradients of the frozen weights), and the recomputation of
activation checkpointing is not counted. Results: a printed table, ``data/processed/gpu/benchmark_<gpu>.csv`` and
``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import platform
import re
import statistics
import tempfile
import time
import traceback
from pathlib import Path

import pandas as pd
import torch
import transformers
import trl
from datasets import Dataset
from peft import get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, TrainerCallback
from trl import GRPOConfig, GRPOTrainer, SFTConfig, SFTTrainer

from helpers.chat import task_prompt
from helpers.config import Profile, cpu_bf16_enabled, get_profile, seed_everything
from helpers.data import load_task
from helpers.generation import decoding_kwargs, end_of_turn_ids
from helpers.models import build_random_checkpoint, load_model, load_tokenizer
from helpers.rewards import format_reward, math_accuracy_reward
from helpers.training import grpo_config, lora_config, sft_config

# Dense bf16 tensor-core peak in TFLOPS, by GPU name: the first pattern that matches.
PEAK_BF16_TFLOPS = [
    (r"H100.*PCIe", 756),
    (r"H100", 989),  # SXM
    (r"H200", 989),
    (r"A100", 312),
    (r"\bL4\b", 121),
    (r"\bT4\b", 65),  # no bf16: its fp16 peak
]
SFT_ROW_TOKENS = 512  # a warm-start trace's length (the gpu profile allows 2048)
# --smoke: the shipped config shrunk to a model that runs in seconds on a CPU, and sizes to match
SMOKE_MODEL = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                   num_key_value_heads=2)
SMOKE_SIZES = dict(max_seq_length=64, max_new_tokens=8, sft_batch_size=2, sft_grad_accum=1, num_generations=2,
                   rl_prompts_per_step=1, max_completion_length=8, eval_batch_size=2)
SMOKE_TRL_SIZES = {"sft": dict(per_device_train_batch_size=2, max_length=64),
                   "grpo": dict(num_generations=2, per_device_train_batch_size=2, max_completion_length=8)}


def peak_tflops(device_name: str) -> float | None:
    return next((peak for pattern, peak in PEAK_BF16_TFLOPS if re.search(pattern, device_name)), None)


@dataclasses.dataclass
class Bench:
    """What every stage shares: the model folder, its tokenizer and shapes, the profile, the device, the steps."""

    checkpoint: Path
    tokenizer: transformers.PreTrainedTokenizerBase
    profile: Profile
    warmup: int  # steps run first and not counted
    counted: int  # steps measured
    cuda: bool = torch.cuda.is_available()

    def __post_init__(self):
        self.model_config = AutoConfig.from_pretrained(self.checkpoint)
        with torch.device("meta"):  # shapes only: no memory, no weights
            self.n_params = AutoModelForCausalLM.from_config(self.model_config).num_parameters()
        self.device = torch.cuda.get_device_name(0) if self.cuda else f"CPU ({platform.machine()})"
        self.peak = peak_tflops(self.device) if self.cuda else None

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def reset_memory(self) -> None:
        if self.cuda:  # free what the previous stage left, so that each stage's peak is its own
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_memory_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None

    def forward_flops(self, tokens: float, context: float) -> float:
        """Model FLOPs of a forward pass over ``tokens`` tokens that attend to ``context`` tokens each on average."""
        config = self.model_config
        return tokens * (2 * self.n_params + 4 * config.num_hidden_layers * config.hidden_size * context)

    def mfu(self, flops: float, seconds: float) -> float | None:
        return flops / seconds / (self.peak * 1e12) if self.peak else None

    def model(self):
        return load_model(self.checkpoint, dtype=self.profile.torch_dtype)


class StepClock(TrainerCallback):
    """Wall time of every optimizer step (GRPO samples inside the step)."""

    def __init__(self, bench: Bench):
        self.bench, self.begins, self.seconds = bench, [], []

    def on_step_begin(self, args, state, control, **kwargs):
        self.begins.append(self.bench.now())

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(self.bench.now() - self.begins[-1])


def timed(method, bench: Bench, seconds: list):
    """``method`` with the wall time of each call appended to ``seconds``."""
    def wrapper(*args, **kwargs):
        start = bench.now()
        result = method(*args, **kwargs)
        seconds.append(bench.now() - start)
        return result
    return wrapper


def sft_rows(tokenizer, n_rows: int, max_tokens: int) -> tuple[list[dict], int]:
    """``n_rows`` prompt-completion conversations of ``max_tokens`` tokens each (the completion is filler words, one
    token each: speed does not depend on the words) and the tokens one row trains on."""
    prompt = [{"role": "user", "content": "Count."}]
    overhead = len(tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": ""}], tokenize=True,
                                                 return_dict=True)["input_ids"])
    completion = [{"role": "assistant", "content": " one" * max(1, max_tokens - overhead)}]
    tokens = len(tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"])
    return [{"prompt": prompt, "completion": completion}] * n_rows, min(tokens, max_tokens)


def math_prompts(n: int) -> list[list[dict]]:
    """``n`` of notebook 5's prompts (system prompt + problem), from the offline math generator."""
    rows = list(load_task("math", get_profile("tiny"), split="train"))
    return [task_prompt(rows[i % len(rows)]) for i in range(n)]


def bench_sft(bench: Bench, setting: str, config: SFTConfig) -> dict:
    rows_per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    steps = bench.warmup + bench.counted
    rows, row_tokens = sft_rows(bench.tokenizer, rows_per_step * steps, min(SFT_ROW_TOKENS, config.max_length))
    model = get_peft_model(bench.model(), lora_config())  # notebook 3's LoRA
    clock = StepClock(bench)
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=bench.tokenizer, callbacks=[clock])
    bench.reset_memory()
    trainer.train()
    seconds = sum(clock.seconds[bench.warmup:])
    tokens = rows_per_step * row_tokens * bench.counted
    flops = 2 * bench.forward_flops(tokens, row_tokens / 2)  # LoRA: forward + backward through the activations
    return {"seconds": seconds, "step_s": seconds / bench.counted, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "rows_per_step": rows_per_step, "row_tokens": row_tokens, "peak_memory_gb": bench.peak_memory_gb(),
            "mfu": bench.mfu(flops, seconds)}


def bench_grpo(bench: Bench, setting: str, config: GRPOConfig) -> dict:
    completions = config.generation_batch_size
    prompts = math_prompts(completions // config.num_generations * config.max_steps)
    clock, generation_seconds = StepClock(bench), []
    dataset = Dataset.from_list([{"prompt": p, "answer": "0"} for p in prompts])
    trainer = GRPOTrainer(model=bench.model(), args=config, reward_funcs=[math_accuracy_reward, format_reward],
                          train_dataset=dataset, processing_class=bench.tokenizer,
                          peft_config=lora_config(target=bench.profile.rl_lora_target), callbacks=[clock])
    trainer._generate = timed(trainer._generate, bench, generation_seconds)  # TRL's sampling, vLLM or transformers
    bench.reset_memory()
    trainer.train()
    logged = [row for row in trainer.state.log_history if "num_tokens" in row]  # one row per step (logging_steps=1)
    step_tokens = [b["num_tokens"] - a["num_tokens"] for a, b in zip([{"num_tokens": 0}] + logged, logged)]
    skip = bench.warmup
    step_s, generation_s = statistics.mean(clock.seconds[skip:]), statistics.mean(generation_seconds[skip:])
    completion_tokens = completions * statistics.mean(row["completions/mean_length"] for row in logged[skip:])
    tokens = statistics.mean(step_tokens[skip:])  # prompts and completions
    sampling_context = (tokens - completion_tokens / 2) / completions  # the prompt and half the completion
    flops = (bench.forward_flops(completion_tokens, sampling_context)
             + 2 * bench.forward_flops(tokens, tokens / completions / 2))  # the update: forward and backward, LoRA
    return {"seconds": step_s * bench.counted, "step_s": step_s, "generation_s": generation_s,
            "update_s": step_s - generation_s, "use_vllm": config.use_vllm, "completions_per_step": completions,
            "tokens": completion_tokens, "tokens_per_s": completion_tokens / step_s,
            "peak_memory_gb": bench.peak_memory_gb(), "mfu": bench.mfu(flops, step_s)}


def generated_tokens(new_tokens: torch.Tensor, stop_ids: list[int]) -> int:
    """Tokens generated, each row up to and including its first stop token (what follows is padding)."""
    stopped = torch.isin(new_tokens, torch.tensor(stop_ids, device=new_tokens.device))
    ends = torch.where(stopped.any(1), stopped.int().argmax(1) + 1, new_tokens.shape[1])
    return int(ends.sum())


@torch.inference_mode()
def bench_transformers_generation(bench: Bench, setting: str, config=None) -> dict:
    """``model.generate`` as ``helpers.generation.generate`` calls it: left padding, greedy, stop at <|im_end|>."""
    tokenizer, profile = bench.tokenizer, bench.profile
    model = bench.model().eval()
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in math_prompts(profile.eval_batch_size)]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    tokenizer.padding_side = side
    kwargs = dict(max_new_tokens=profile.max_new_tokens, eos_token_id=end_of_turn_ids(tokenizer),
                  pad_token_id=tokenizer.pad_token_id, **decoding_kwargs(do_sample=False))
    model.generate(**batch, **{**kwargs, "max_new_tokens": 2})  # warm-up
    bench.reset_memory()
    start = bench.now()
    output = model.generate(**batch, **kwargs)
    seconds = bench.now() - start
    prompt_length = batch["input_ids"].shape[1]
    tokens = generated_tokens(output[:, prompt_length:], end_of_turn_ids(tokenizer))
    flops = bench.forward_flops(tokens, prompt_length + profile.max_new_tokens / 2)
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds, "completions_per_step": len(texts),
            "peak_memory_gb": bench.peak_memory_gb(), "mfu": bench.mfu(flops, seconds)}


def bench_vllm_generation(bench: Bench, setting: str, config=None) -> dict:
    """vLLM's offline engine on the same prompts, greedy, stop at <|im_end|> (the engine's start-up timed apart)."""
    from vllm import LLM, SamplingParams

    tokenizer, profile = bench.tokenizer, bench.profile
    start = bench.now()
    llm = LLM(model=str(bench.checkpoint), dtype="bfloat16", gpu_memory_utilization=0.3, seed=0)
    startup = bench.now() - start
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
             for p in math_prompts(profile.eval_batch_size)]
    params = SamplingParams(temperature=0.0, max_tokens=profile.max_new_tokens,
                            stop_token_ids=end_of_turn_ids(tokenizer))
    llm.generate(texts[:1], SamplingParams(max_tokens=2))  # warm-up
    start = bench.now()
    outputs = llm.generate(texts, params)
    seconds = bench.now() - start
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    context = sum(len(o.prompt_token_ids) for o in outputs) / len(outputs) + profile.max_new_tokens / 2
    return {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds, "completions_per_step": len(texts),
            "startup_s": startup, "peak_memory_gb": bench.peak_memory_gb(),  # with the cache vLLM reserves
            "mfu": bench.mfu(bench.forward_flops(tokens, context), seconds)}


def stages(bench: Bench, run_dir: Path, smoke: bool) -> list[tuple]:
    """(stage, setting, benchmark, trainer config): the course's builders, then TRL's defaults (sizes shrunk only in
    smoke), then generation."""
    steps = bench.warmup + bench.counted
    common = dict(max_steps=steps, logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True)
    # TRL defaults to bf16; on a CPU the course's choice (native bf16 only), as the course settings' trainers got it:
    # accelerate keeps one mixed precision per process
    cpu = {} if bench.cuda else dict(use_cpu=True, bf16=cpu_bf16_enabled())
    shrink = SMOKE_TRL_SIZES if smoke else {"sft": {}, "grpo": {}}
    profile = bench.profile
    jobs = [
        ("sft", "course", bench_sft, sft_config(profile, run_dir / "sft-course", **common)),
        ("sft", "trl-defaults", bench_sft, SFTConfig(output_dir=str(run_dir / "sft-trl"), **common, **cpu,
                                                     **shrink["sft"])),
        ("grpo", "course", bench_grpo, grpo_config(profile, run_dir / "grpo-course", **common)),
        ("grpo", "trl-defaults", bench_grpo, GRPOConfig(output_dir=str(run_dir / "grpo-trl"), **common, **cpu,
                                                        **shrink["grpo"])),
        ("generation", "transformers", bench_transformers_generation, None),
    ]
    if bench.cuda and importlib.util.find_spec("vllm") is not None:
        jobs.append(("generation", "vllm", bench_vllm_generation, None))
    return jobs


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny model and tiny sizes on a CPU (seconds)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default: data/processed/gpu/")
    args = parser.parse_args(argv)
    profile = get_profile("gpu")
    if args.smoke:
        profile = dataclasses.replace(profile, accelerator="cuda" if torch.cuda.is_available() else "cpu",
                                      dtype="float32", **SMOKE_SIZES)
    output_dir = args.output_dir or profile.data_dir("processed")
    seed_everything()
    results = []
    with tempfile.TemporaryDirectory(prefix="benchmark_gpu-") as tmp:
        start = time.perf_counter()
        checkpoint = build_random_checkpoint(Path(tmp) / "model", dtype=profile.torch_dtype,
                                             **(SMOKE_MODEL if args.smoke else {}))
        tokenizer = load_tokenizer(checkpoint)  # one for every stage: reading it takes seconds
        print(f"random-weight model built in {time.perf_counter() - start:.0f} s")
        bench = Bench(checkpoint, tokenizer, profile, warmup=0 if args.smoke else 1, counted=1 if args.smoke else 2)
        for stage, setting, run, config in stages(bench, Path(tmp) / "runs", args.smoke):
            start = time.perf_counter()
            try:
                row = {"stage": stage, "setting": setting, **run(bench, setting, config)}
            except Exception as err:  # one stage failing (vLLM, memory) still leaves the others' figures
                traceback.print_exc()
                row = {"stage": stage, "setting": setting, "error": f"{type(err).__name__}: {err}"}
            row["wall_s"] = time.perf_counter() - start
            print(f"{stage} / {setting}: {row['wall_s']:.0f} s")
            results.append(row)
    table = pd.DataFrame(results).set_index(["stage", "setting"])
    print(f"\n{bench.device}, dense bf16 peak {bench.peak or 'unknown'} TFLOPS\n{table.round(3).to_string()}")
    slug = re.sub(r"[^a-z0-9]+", "-", bench.device.lower()).strip("-") + ("-smoke" if args.smoke else "")
    output_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(output_dir / f"benchmark_{slug}.csv")
    meta = {"device": bench.device, "peak_bf16_tflops": bench.peak, "smoke": args.smoke, "parameters": bench.n_params,
            "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "date": time.strftime("%Y-%m-%d"), "results": results}
    (output_dir / f"benchmark_{slug}.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    print(f"written: {output_dir / f'benchmark_{slug}.csv'} and .json")
    return results


if __name__ == "__main__":
    main()
