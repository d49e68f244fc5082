"""The course's own sampling on vLLM: ``helpers.generation.generate`` hands its prompts here on a GPU.

Why: ``helpers.generation.decode`` decodes a padded batch step by step; vLLM schedules every sequence on its own (paged KV
cache, CUDA graphs, prompts shared by the ``n`` samples of a prompt read once) and samples 10x+ faster on the
``gpu`` profile. TRL's GRPO/RLOO trainers already generate with vLLM; the evaluations, pass@k, the pass-rate
filter, DPO's on-policy pairs and rejection sampling go through ``generate`` and come here.

What is mapped, so that the two paths decode the same way (``helpers.generation.decoding_kwargs``):

- the prompts: the same chat-rendered texts, tokenized as ``generate`` tokenizes them (no special tokens added)
  and handed over as token ids, so vLLM reads exactly the prompt ``decode`` would;
- greedy: ``temperature=0``; sampling: ``temperature``, ``top_p``, ``top_k=-1`` (off), ``min_p=0``. Both set
  ``repetition_penalty=1.0``, so nothing comes from the checkpoint's ``generation_config.json`` (vLLM only takes
  its eos ids, which ``end_of_turn_ids`` holds anyway);
- ``max_tokens=max_new_tokens``, stop at ``end_of_turn_ids``, ``skip_special_tokens=True``;
- ``n=num_return_sequences``, returned as ``generate`` returns them: the ``n`` completions of a prompt one after
  another (greedy asks for one and repeats it: the ``n`` argmax decodings are the same text);
- seeds: each prompt's sampling seed is drawn from torch's random state, so ``seed_everything(seed)`` before a
  call makes it repeatable here as it does for ``decode`` (the texts differ between the two paths).

The engine is built from a folder: the weights in memory may be a freshly trained, merged policy, so the model and
tokenizer are saved once to a temporary folder per ``weights_fingerprint``; one engine is kept alive and freed
when the weights change (``release_engine`` frees it by hand, e.g. before a trainer builds its own vLLM).
It takes ``COURSE_VLLM_MEMORY`` (default 0.3) of the GPU's memory, since the transformers model stays beside it.

Switch it off with ``COURSE_VLLM=0``. Used only when the model is on CUDA, ``vllm`` is importable and the model is
not a PEFT model (an unmerged adapter stays on ``decode``). Tested only against a fake ``vllm`` module
(``tests/test_vllm_sampling.py``: the arguments LLM and SamplingParams receive, the order of the outputs, one
engine per fingerprint); it has not run on a GPU with the real vLLM.
"""

from __future__ import annotations

import gc
import os
import tempfile
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from helpers.generation import end_of_turn_ids, weights_fingerprint

DEFAULT_MEMORY_SHARE = 0.3


def sampling_params(vllm, do_sample: bool, temperature: float, top_p: float, max_new_tokens: int, n: int,
                    stop_token_ids: list[int], seed: int | None):
    """vLLM's ``SamplingParams`` for one prompt, with every field ``decoding_kwargs`` fixes set explicitly."""
    if do_sample:
        sampling = {"temperature": temperature, "top_p": top_p, "top_k": -1, "min_p": 0.0, "n": n, "seed": seed}
    else:
        sampling = {"temperature": 0.0, "n": 1}
    return vllm.SamplingParams(**sampling, repetition_penalty=1.0, max_tokens=max_new_tokens,
                               stop_token_ids=stop_token_ids, skip_special_tokens=True)


def generate(model, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_new_tokens: int, do_sample: bool,
             temperature: float, top_p: float, num_return_sequences: int, progress: bool) -> list[str]:
    """``helpers.generation.generate`` on vLLM for chat-rendered ``texts``: ``num_return_sequences`` per prompt,
    consecutive. vLLM batches and schedules the prompts itself, so there is no ``batch_size``."""
    import vllm

    llm = engine_for(model, tokenizer)
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    seeds = torch.randint(2**31 - 1, (len(texts),)).tolist() if do_sample else [None] * len(texts)
    stop = end_of_turn_ids(tokenizer)
    params = [sampling_params(vllm, do_sample, temperature, top_p, max_new_tokens, num_return_sequences, stop, seed)
              for seed in seeds]
    outputs = llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids], params, use_tqdm=progress)
    copies = 1 if do_sample else num_return_sequences
    return [completion.text for output in outputs
            for completion in sorted(output.outputs, key=lambda c: c.index) for _ in range(copies)]


@dataclass
class _Engine:
    fingerprint: str
    llm: object
    folder: tempfile.TemporaryDirectory


_engine: _Engine | None = None


def engine_for(model, tokenizer: PreTrainedTokenizerBase):
    """The vLLM engine for ``model``'s current weights: the live one if they are unchanged, else a new one."""
    global _engine
    fingerprint = weights_fingerprint(model)
    if _engine is not None and _engine.fingerprint == fingerprint:
        return _engine.llm
    release_engine()  # first, so that the old engine's memory is free for the new one
    import vllm

    folder = tempfile.TemporaryDirectory(prefix=f"course-vllm-{fingerprint[:12]}-")
    model.save_pretrained(folder.name)
    tokenizer.save_pretrained(folder.name)
    llm = vllm.LLM(model=folder.name, dtype="bfloat16", enable_prefix_caching=True,
                   gpu_memory_utilization=float(os.environ.get("COURSE_VLLM_MEMORY", DEFAULT_MEMORY_SHARE)))
    _engine = _Engine(fingerprint, llm, folder)
    return llm


def release_engine() -> None:
    """Free the live engine's GPU memory and its folder (deleting vLLM's ``LLM`` shuts its engine down)."""
    global _engine
    if _engine is None:
        return
    folder, _engine = _engine.folder, None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    folder.cleanup()


def on_cuda(model) -> bool:
    parameters = getattr(model, "parameters", None)
    first = next(iter(parameters()), None) if parameters is not None else None
    return first is not None and first.device.type == "cuda"


def vllm_importable() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


def wanted(model) -> bool:
    """Whether ``generate`` should sample ``model`` on vLLM: on CUDA, installed, not switched off, no adapter."""
    if os.environ.get("COURSE_VLLM", "1") == "0" or getattr(model, "peft_config", None):
        return False
    # cheap checks first: importing vllm takes seconds, and only a CUDA model may use it
    return on_cuda(model) and vllm_importable()
