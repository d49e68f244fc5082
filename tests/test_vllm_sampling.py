"""``generate`` on vLLM, against a fake ``vllm`` module: no GPU and no vLLM here.

The fake records what ``LLM(...)``, ``SamplingParams(...)`` and ``LLM.generate`` receive and answers each prompt's
``n`` samples in reverse order, so the tests see whether the mapping, the order and the engine cache hold.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from helpers import vllm_sampling
from helpers.generation import end_of_turn_ids, generate

PROMPTS = [[{"role": "user", "content": "2+2?"}], [{"role": "user", "content": "Make 24 from 3 4 6."}]]


class FakeTokenizer:
    """The part of a tokenizer ``generate`` uses: a ChatML-like template and a character-code "tokenizer"."""

    eos_token_id, unk_token_id = 2, 0

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def convert_tokens_to_ids(self, token):
        return 7 if token == "<|im_end|>" else self.unk_token_id

    def __call__(self, texts, add_special_tokens):
        assert add_special_tokens is False  # as generate tokenizes: the template holds every special token
        return {"input_ids": [[ord(c) for c in text] for text in texts]}

    def save_pretrained(self, folder):
        Path(folder, "tokenizer.json").write_text("{}")


class FakeModel(torch.nn.Module):
    """A model whose weights can change; ``save_pretrained`` writes a file to show the folder was filled."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(3))

    def save_pretrained(self, folder):
        Path(folder, "model.safetensors").write_text(str(self.weight.tolist()))


@pytest.fixture
def fake_vllm(monkeypatch):
    """A ``vllm`` module that records its calls; the model counts as on CUDA; no engine is alive before or after."""
    module = types.ModuleType("vllm")
    module.engines, module.calls = [], []

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    class LLM:
        def __init__(self, **kwargs):
            assert {"model.safetensors", "tokenizer.json"} <= {p.name for p in Path(kwargs["model"]).iterdir()}
            self.kwargs = kwargs
            module.engines.append(self)

        def generate(self, prompts, params, use_tqdm):
            module.calls.append((self, prompts, params))
            return [types.SimpleNamespace(outputs=[
                types.SimpleNamespace(text=f"{len(prompt['prompt_token_ids'])}:{j}", index=j)
                for j in reversed(range(p.kwargs["n"]))]) for prompt, p in zip(prompts, params)]

    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(vllm_sampling, "on_cuda", lambda model: True)
    monkeypatch.setattr(vllm_sampling, "_engine", None)
    monkeypatch.delenv("COURSE_VLLM", raising=False)
    monkeypatch.delenv("COURSE_VLLM_MEMORY", raising=False)
    yield module
    vllm_sampling.release_engine()


def prompt_lengths(tokenizer):
    return [len(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)) for p in PROMPTS]


def test_vllm_is_used_only_on_cuda_when_installed_and_not_switched_off(fake_vllm, monkeypatch):
    model = FakeModel()
    assert vllm_sampling.wanted(model)
    monkeypatch.setenv("COURSE_VLLM", "0")
    assert not vllm_sampling.wanted(model)
    monkeypatch.delenv("COURSE_VLLM")
    model.peft_config = {"default": object()}  # an unmerged adapter: vLLM would load the base weights only
    assert not vllm_sampling.wanted(model)
    del model.peft_config
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed: ``import vllm`` raises ImportError
    assert not vllm_sampling.wanted(model)
    monkeypatch.undo()  # the real device check: this machine's model is on the CPU
    assert not vllm_sampling.wanted(model)


def test_greedy_is_temperature_zero_and_takes_nothing_from_the_checkpoint(fake_vllm, monkeypatch):
    monkeypatch.setenv("COURSE_VLLM_MEMORY", "0.5")
    tokenizer = FakeTokenizer()
    completions = generate(FakeModel(), tokenizer, PROMPTS, max_new_tokens=9, num_return_sequences=2, progress=False)
    (llm,) = fake_vllm.engines
    assert {k: v for k, v in llm.kwargs.items() if k != "model"} == {
        "dtype": "bfloat16", "enable_prefix_caching": True, "gpu_memory_utilization": 0.5}
    (_, prompts, params), = fake_vllm.calls
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in PROMPTS]
    assert prompts == [{"prompt_token_ids": ids} for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    # every field is given, so no top-k/top-p/repetition penalty of a generation_config.json can apply
    assert [p.kwargs for p in params] == [{"temperature": 0.0, "n": 1, "repetition_penalty": 1.0, "max_tokens": 9,
                                           "stop_token_ids": end_of_turn_ids(tokenizer), "skip_special_tokens": True}] * 2
    assert end_of_turn_ids(tokenizer) == [2, 7]
    first, second = prompt_lengths(tokenizer)
    assert completions == [f"{first}:0", f"{first}:0", f"{second}:0", f"{second}:0"]  # one argmax text, repeated


def test_sampling_maps_temperature_top_p_and_a_seed_per_prompt_in_order(fake_vllm):
    model, tokenizer = FakeModel(), FakeTokenizer()

    def sample():
        return generate(model, tokenizer, PROMPTS, max_new_tokens=5, do_sample=True, temperature=0.7, top_p=0.9,
                        num_return_sequences=3, progress=False)

    torch.manual_seed(0)
    completions = sample()
    first, second = prompt_lengths(tokenizer)
    assert completions == [f"{first}:{j}" for j in range(3)] + [f"{second}:{j}" for j in range(3)]
    params = fake_vllm.calls[-1][2]
    seeds = [p.kwargs.pop("seed") for p in params]
    assert [p.kwargs for p in params] == [{"temperature": 0.7, "top_p": 0.9, "top_k": -1, "min_p": 0.0, "n": 3,
                                           "repetition_penalty": 1.0, "max_tokens": 5, "stop_token_ids": [2, 7],
                                           "skip_special_tokens": True}] * 2
    assert len(set(seeds)) == 2  # prompts do not share a random stream
    torch.manual_seed(0)
    sample()
    assert [p.kwargs["seed"] for p in fake_vllm.calls[-1][2]] == seeds  # seed_everything makes a call repeatable
    sample()
    assert [p.kwargs["seed"] for p in fake_vllm.calls[-1][2]] != seeds  # and unseeded calls differ


def test_one_engine_per_fingerprint_rebuilt_when_the_weights_change(fake_vllm):
    model, tokenizer = FakeModel(), FakeTokenizer()
    generate(model, tokenizer, PROMPTS, max_new_tokens=4, progress=False)
    generate(model, tokenizer, PROMPTS[:1], max_new_tokens=4, progress=False)
    (first,) = fake_vllm.engines
    first_folder = Path(first.kwargs["model"])
    with torch.no_grad():
        model.weight.add_(1.0)  # a training step: the old engine samples the old policy
    generate(model, tokenizer, PROMPTS, max_new_tokens=4, progress=False)
    assert len(fake_vllm.engines) == 2 and [call[0] for call in fake_vllm.calls] == [first, first, fake_vllm.engines[1]]
    assert not first_folder.exists()  # the old engine was released with its folder
    assert Path(fake_vllm.engines[1].kwargs["model"], "model.safetensors").read_text() == "[2.0, 2.0, 2.0]"


def test_the_generation_cache_keeps_vllm_completions_apart(monkeypatch):
    import torch

    from helpers import generation, vllm_sampling

    model = torch.nn.Linear(2, 2)
    monkeypatch.setattr(generation, "cpu_bf16_enabled", lambda: False)  # float32 model.generate, any CPU
    monkeypatch.setattr(vllm_sampling, "wanted", lambda m: False)
    plain = generation.cache_fingerprint(model)
    assert plain == generation.weights_fingerprint(model)  # the transformers path keeps the keys it always had
    monkeypatch.setattr(vllm_sampling, "wanted", lambda m: True)
    assert generation.cache_fingerprint(model) == plain + "-vllm"
