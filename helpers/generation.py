"""Generation: batched completions of conversational prompts, greedy or sampled, and the cache behind them.

One way to do each thing: ``decode`` is the decoding loop (greedy or sampled, each prompt read once, finished rows
leave the batch); ``generate`` feeds it chat prompts in left-padded batches and stops at the end-of-turn token;
``sample_completions`` is the one entry point for k sampled completions per prompt (its ``batch_size`` counts
prompts); ``GenerationCache`` keeps completions on disk per model fingerprint, so the same weights on the same
prompts and settings are generated once: a checkpoint evaluated in one notebook costs nothing when the next
notebook (or the leaderboard) evaluates it again, and an interrupted greedy evaluation resumes.
``helpers.rl.sample_group`` is the RL loop's own sampler: it returns the token ids the loss needs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase
from transformers.cache_utils import Cache, DynamicLayer

from helpers.config import DEFAULT_SEED, cpu_bf16_enabled, seed_everything
from helpers.jsonl import append_jsonl, read_jsonl
from helpers.prompt_once import distinct_prompts


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end an assistant turn: ``<|im_end|>`` (ChatML) and the eos token."""
    ids = {tokenizer.eos_token_id}
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
        ids.add(im_end)
    return sorted(i for i in ids if i is not None)


def decoding_kwargs(do_sample: bool, temperature: float = 1.0, top_p: float = 1.0) -> dict:
    """``generate`` keywords for plain decoding, whatever the checkpoint's ``generation_config.json`` says.

    Qwen2.5-Instruct's sets top_k 20, top_p 0.8, temperature 0.7 and a repetition penalty, and ``model.generate``
    fills every keyword not given from it: "greedy" would be penalised greedy and every sample would come from a
    truncated distribution. Explicit keywords win, so greedy is the argmax and sampling is the model's own
    distribution at ``temperature`` (nucleus ``top_p``), as in TRL's trainers, which set every field too."""
    if do_sample:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0, "min_p": None,
                "typical_p": 1.0, "repetition_penalty": 1.0}
    # greedy applies no sampling filter, only the repetition penalty; setting the filters here would only make
    # transformers log that they are unused
    return {"do_sample": False, "repetition_penalty": 1.0}


def _cpu_weight(model) -> torch.Tensor | None:
    """``model``'s first weight where it is on a CPU; None for a stand-in (tests), an engine or a GPU model."""
    if not hasattr(model, "parameters"):
        return None
    weight = next(model.parameters(), None)
    return weight if weight is not None and weight.device.type == "cpu" else None


def samples_in_bf16(model) -> bool:
    """Whether ``sampler`` hands out a bf16 copy of ``model``: float32 weights on a CPU with native bf16
    (``helpers.config.cpu_bf16_enabled``). Decoding reads every weight for every token; in bf16 it reads half the
    bytes and the CPU's bf16 dot products do the arithmetic (greedy decoding about twice as fast on a 2-core
    AVX512-BF16 machine; a whole GRPO step 1.4 times: ``scripts/grpo_step_cost.py``). Elsewhere, emulated bf16
    would be slower than float32."""
    weight = _cpu_weight(model)
    return weight is not None and weight.dtype == torch.float32 and cpu_bf16_enabled()


def samples_from_a_copy(model) -> bool:
    """Whether ``sampler`` hands out a copy of ``model``: on a CPU, a LoRA (PEFT) model or one ``samples_in_bf16``."""
    return _cpu_weight(model) is not None and (hasattr(model, "merge_and_unload") or samples_in_bf16(model))


@contextmanager
def sampler(model) -> Iterator:
    """The model to sample from: ``model`` itself, or, where ``samples_from_a_copy``, a copy in eval mode with any
    LoRA adapter merged in, in bf16 where ``samples_in_bf16``. Training keeps the float32 weights: merged into bf16
    (an 8-bit mantissa), an update of a part in a thousand would be rounded away. Merged, the copy runs one matmul
    per layer where the adapter model runs three, without LoRA dropout; with ``decode`` a whole GRPO step in float32
    on a 2-core CPU took 16.1 s instead of 24.5 (``scripts/grpo_step_cost.py``, ``grpo_step_cost_fp32.csv``). TRL's
    vLLM mode does the same on a GPU: a bf16 engine given the policy's current weights before it samples."""
    if not samples_from_a_copy(model):
        yield model
        return
    with torch.no_grad():
        plain_copy = copy.deepcopy(model)
        for module in plain_copy.modules():
            # a trainer patches the forward with instance attributes (accelerate's bf16 autocast, TRL's fused LM head)
            # whose closures call the *original* model: copied, they would sample from the training weights with
            # LoRA dropout on. Dropped, the copy runs its class's forward on its own weights.
            module.__dict__.pop("forward", None)
            module.__dict__.pop("_original_forward", None)
        if hasattr(plain_copy, "merge_and_unload"):  # a PEFT model: one plain network, as generation needs
            plain_copy = plain_copy.merge_and_unload()
        if samples_in_bf16(model):
            plain_copy = plain_copy.to(torch.bfloat16)
        plain_copy.eval()
    yield plain_copy


@torch.inference_mode()
def generate(model, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]], max_new_tokens: int = 128,
             batch_size: int = 16, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             num_return_sequences: int = 1, progress: bool = True) -> list[str]:
    """Generate a completion for each conversational prompt (``num_return_sequences`` each, in order).

    Greedy by default; ``do_sample=True`` samples with ``temperature`` and ``top_p``. On a GPU with vLLM
    installed the prompts go to vLLM instead, decoded the same way (``helpers.vllm_sampling``; ``COURSE_VLLM=0``
    keeps ``decode``).
    """
    from helpers import vllm_sampling  # imported here: it builds on this module

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    if vllm_sampling.wanted(model):
        return vllm_sampling.generate(model, tokenizer, texts, max_new_tokens, do_sample, temperature, top_p,
                                      num_return_sequences, progress)
    model.eval()
    device = next(model.parameters()).device
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    completions: list[str] = []
    with sampler(model) as decoder:
        try:
            batches = range(0, len(texts), batch_size)
            # leave=False: a finished bar clears itself (course_runner drops the blank block it leaves), so a loop over
            # models does not print one finished bar per model
            for start in tqdm(batches, desc="generating", disable=not progress, leave=False):
                batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(device)
                new_tokens = decode(decoder, batch["input_ids"], batch["attention_mask"], max_new_tokens,
                                    end_of_turn_ids(tokenizer), tokenizer.pad_token_id, do_sample, temperature, top_p,
                                    copies=num_return_sequences)
                completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        finally:
            tokenizer.padding_side = previous_side
    return completions


class PreallocatedLayer(DynamicLayer):
    """A key/value cache layer that writes each step's keys into a buffer sized for the whole generation.

    transformers' ``DynamicLayer`` grows by ``torch.cat``, copying the whole cache on every step and layer: with
    200 sequences on a CPU that copying was a third of the sampling time. Here the buffer is allocated once
    (prompt plus ``max_new_tokens``) and attention reads a view of its filled part."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
            shape = (*key_states.shape[:2], self.capacity, key_states.shape[3])
            self.key_buffer = key_states.new_zeros(shape)
            self.value_buffer = value_states.new_zeros(shape)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions, {end} were asked for")
        self.key_buffer[:, :, self.length:end] = key_states
        self.value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self._show_filled()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
        self._show_filled()

    def _show_filled(self) -> None:
        """``keys`` and ``values`` as attention and transformers read them: views of the buffers' filled part."""
        self.keys, self.values = self.key_buffer[:, :, :self.length], self.value_buffer[:, :, :self.length]


def next_tokens(logits: torch.Tensor, do_sample: bool, temperature: float = 1.0, top_p: float = 1.0) -> torch.Tensor:
    """The next token of each row: the argmax, or a draw from ``softmax(logits / temperature)`` restricted to the
    nucleus ``top_p``. The draw inverts the cumulative distribution with one uniform number per row: the same
    distribution as ``torch.multinomial``, which on a CPU spends 0.2 s per step drawing an exponential number for
    each of 200 x 49,152 vocabulary entries."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p  # the most likely token always stays
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs.masked_fill(outside, 0.0))
    cumulative = probs.cumsum(dim=-1)
    draw = torch.rand(probs.shape[0], 1, device=probs.device) * cumulative[:, -1:]
    return torch.searchsorted(cumulative, draw, right=True).squeeze(-1).clamp(max=probs.shape[-1] - 1)


@torch.inference_mode()
def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, stop_ids: list[int],
           pad_id: int, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
           copies: int = 1, prompt_of_row: torch.Tensor | None = None) -> torch.Tensor:
    """The decoding loop: ``copies`` completions of each left-padded prompt, as new token ids padded with
    ``pad_id`` after each row's stop token (shape ``[rows * copies, steps]``). With ``prompt_of_row`` instead, one
    completion per entry, of the prompt it indexes (in any order, as ``prompt_once.distinct_prompts`` gives it).

    Three things make it cheaper than ``model.generate`` on a CPU, with the same result: each prompt is read once and
    its key/value cache copied ``copies`` times (``generate`` reads a prompt of 130 tokens once per copy); the cache
    is a preallocated buffer (``PreallocatedLayer``); and a row that has stopped leaves the batch, so a batch costs
    its rows' tokens, not its longest row times its size. Position ids follow the left padding as ``generate``
    computes them.
    """
    capacity = input_ids.shape[1] + max_new_tokens
    cache = Cache(layer_class_to_replicate=lambda: PreallocatedLayer(capacity))
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    each_prompt_once = torch.arange(len(input_ids), device=input_ids.device)
    if prompt_of_row is None:
        prompt_of_row = each_prompt_once.repeat_interleave(copies)
    if not torch.equal(prompt_of_row, each_prompt_once):
        cache.batch_select_indices(prompt_of_row)  # each prompt's cache copied to the rows that continue it
        logits, attention_mask = logits[prompt_of_row], attention_mask[prompt_of_row]
        positions = positions[prompt_of_row]
    rows = logits.shape[0]
    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=input_ids.device)
    live = torch.arange(rows, device=input_ids.device)  # the rows still in the batch, by their output index
    position = positions[:, -1:]
    stops = torch.tensor(stop_ids, device=input_ids.device)
    for step in range(max_new_tokens):
        chosen = next_tokens(logits, do_sample, temperature, top_p)
        tokens[live, step] = chosen
        going = ~torch.isin(chosen, stops)
        if step == max_new_tokens - 1 or not going.any():
            return tokens[:, :step + 1]
        if not going.all():  # drop the rows that stopped
            keep = going.nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            live, chosen, attention_mask, position = live[keep], chosen[keep], attention_mask[keep], position[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(live), 1)], dim=1)
        position = position + 1
        logits = model(input_ids=chosen[:, None], attention_mask=attention_mask, position_ids=position,
                       past_key_values=cache, use_cache=True).logits[:, -1]
    return tokens


def decode_as_generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, generation_config,
                       **other_inputs) -> torch.Tensor:
    """``model.generate(input_ids, attention_mask, generation_config=...)`` answered by ``decode``: the prompt ids
    followed by the new ones, as TRL's GRPO and RLOO trainers expect. TRL repeats each prompt ``num_generations``
    times; ``decode`` reads each distinct prompt once and copies its cache to the rows that repeat it. Settings
    ``decode`` does not implement (top-k, min-p, a repetition penalty, beams, suppressed tokens, extra model inputs)
    go to ``model.generate``."""
    config = generation_config
    plain = (not other_inputs and (config.num_beams or 1) == 1 and not config.top_k and not config.min_p
             and (config.repetition_penalty or 1.0) == 1.0 and not config.suppress_tokens)
    if not plain:
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                              **other_inputs)
    first_rows, prompt_of_row = distinct_prompts(input_ids, attention_mask, completion_length=0)
    stop_ids = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    new_tokens = decode(model, input_ids[first_rows], attention_mask[first_rows], config.max_new_tokens, stop_ids,
                        config.pad_token_id, bool(config.do_sample), config.temperature or 1.0, config.top_p or 1.0,
                        prompt_of_row=prompt_of_row)
    return torch.cat([input_ids, new_tokens], dim=1)


def weights_fingerprint(model) -> str:
    """A hash of every weight and its name: the same weights, in memory or reloaded from disk, give the
    same fingerprint; one changed value gives another. About a second for a 135M-parameter model."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_fingerprint(model) -> str:
    """The cache's name for a model's completions: its weights, and the decoder when it is vLLM or a bf16 copy (their
    samples, and in near-ties their greedy tokens, differ from float32 ``decode``'s, so they never answer
    for each other)."""
    from helpers import vllm_sampling  # imported here: it builds on this module

    decoder = "-vllm" if vllm_sampling.wanted(model) else "-bf16" if samples_in_bf16(model) else ""
    return weights_fingerprint(model) + decoder


class GenerationCache:
    """Completions on disk, one JSON-lines file per model fingerprint under ``directory`` (greedy ones keyed
    per prompt; a seeded sampling call as one entry, see ``generate_sampled_cached``).

    A key covers everything greedy decoding depends on besides the weights: the chat-rendered prompt and
    the token budget. Entries are appended batch by batch, so an interrupted evaluation keeps what it
    finished; an unreadable last line (a write cut short) is skipped.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    @staticmethod
    def key(prompt_text: str, max_new_tokens: int) -> str:
        return hashlib.sha1(f"{max_new_tokens}\n{prompt_text}".encode()).hexdigest()

    def _path(self, fingerprint: str) -> Path:
        return self.directory / f"{fingerprint}.jsonl"

    def load(self, fingerprint: str) -> dict[str, str]:
        path = self._path(fingerprint)
        if not path.exists():
            return {}
        return {entry["key"]: entry["completion"] for entry in read_jsonl(path)
                if isinstance(entry.get("key"), str) and isinstance(entry.get("completion"), str)}

    def add(self, fingerprint: str, entries: dict[str, str]) -> None:
        append_jsonl(({"key": k, "completion": v} for k, v in entries.items()), self._path(fingerprint))


def generate_sampled_cached(model, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]], n_samples: int,
                            max_new_tokens: int, temperature: float, batch_size: int, cache: GenerationCache,
                            seed: int, progress: bool = True) -> list[str]:
    """``generate`` with sampling, seeded, through ``cache``: one entry holds the whole call's completions.

    A sampled completion depends on the seed and on which prompts share a batch, so the key covers the
    rendered prompts, the number of samples, the budget, the temperature, the batch size and the seed; the
    same call with the same weights then costs nothing the second time (notebook 6 re-measures notebook 5's
    start model this way)."""
    fingerprint = cache_fingerprint(model)
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    settings = json.dumps({"n": n_samples, "budget": max_new_tokens, "temperature": temperature,
                           # "draw": samples drawn by torch.multinomial before 0.13.0 are not these samples
                           "batch": batch_size, "seed": seed, "draw": "inverse-cdf", "prompts": texts})
    key = "sampled:" + hashlib.sha1(settings.encode()).hexdigest()
    known = cache.load(fingerprint)
    if key in known:
        return json.loads(known[key])
    seed_everything(seed)
    completions = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           do_sample=True, temperature=temperature, num_return_sequences=n_samples, progress=progress)
    cache.add(fingerprint, {key: json.dumps(completions)})
    return completions


def generate_greedy_cached(model, tokenizer: PreTrainedTokenizerBase, prompts: list[list[dict]], max_new_tokens: int,
                           batch_size: int, cache: GenerationCache, progress: bool = True) -> list[str]:
    """``generate`` (greedy) for the prompts ``cache`` has not seen with these weights; the rest come from it.

    A cached completion may have been generated in a different batch; padding can change the last digits
    of the logits, so in rare near-ties it may differ from a fresh run by a token."""
    fingerprint = cache_fingerprint(model)
    known = cache.load(fingerprint)
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    keys = [cache.key(text, max_new_tokens) for text in texts]
    first_missing: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key not in known:
            first_missing.setdefault(key, index)
    todo = list(first_missing.values())
    starts = range(0, len(todo), batch_size)
    for start in tqdm(starts, desc=f"generating ({len(prompts) - len(todo)} cached)", disable=not progress or not todo,
                      leave=False):
        chunk = todo[start:start + batch_size]
        fresh = generate(model, tokenizer, [prompts[i] for i in chunk], max_new_tokens=max_new_tokens,
                         batch_size=batch_size, progress=False)
        new = {keys[i]: text for i, text in zip(chunk, fresh)}
        cache.add(fingerprint, new)
        known.update(new)
    return [known[key] for key in keys]


def sample_completions(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[list[dict]], k: int,
                       max_new_tokens: int, temperature: float = 1.0, batch_size: int = 16, progress: bool = True,
                       cache_dir: str | Path | None = None, seed: int | None = None) -> list[list[str]]:
    """``k`` sampled completions for each conversational prompt: a list of ``k`` strings per prompt.

    ``batch_size`` counts prompts (each brings ``k`` sequences). ``seed`` seeds the sampling (otherwise the
    caller's random state is used); with ``cache_dir`` the call goes through ``generate_sampled_cached``
    (seed ``DEFAULT_SEED`` unless given), so the same call with the same weights is free the second time.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    prompts = list(prompts)
    if cache_dir is not None:
        flat = generate_sampled_cached(model, tokenizer, prompts, k, max_new_tokens, temperature, batch_size,
                                       GenerationCache(cache_dir), DEFAULT_SEED if seed is None else seed,
                                       progress=progress)
    else:
        if seed is not None:
            seed_everything(seed)
        flat = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                        do_sample=True, temperature=temperature, num_return_sequences=k, progress=progress)
    return [flat[i * k:(i + 1) * k] for i in range(len(prompts))]
