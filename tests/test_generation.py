"""``helpers.generation.decode``: the same tokens as ``model.generate``, and samples from the right distribution;
``decode_as_generate`` answers a trainer's ``generate`` call with it."""

import pytest
import torch
from transformers import GenerationConfig

from helpers.generation import decode, decode_as_generate, decoding_kwargs, next_tokens
from helpers.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def model_and_batch():
    model, tokenizer = load_model("tiny").eval(), load_tokenizer("tiny")
    tokenizer.padding_side = "left"
    batch = tokenizer(["Hello there, how", "1 + 1 =", "A much longer prompt, so that the others are padded"],
                      return_tensors="pt", padding=True, add_special_tokens=False)
    return model, tokenizer, batch


def generate_new_tokens(model, batch, max_new_tokens, stop_id, pad_id):
    with torch.inference_mode():
        output = model.generate(**batch, max_new_tokens=max_new_tokens, eos_token_id=stop_id, pad_token_id=pad_id,
                                **decoding_kwargs(False))
    return output[:, batch["input_ids"].shape[1]:]


def test_greedy_decode_matches_generate_with_rows_stopping_at_different_steps(model_and_batch):
    model, tokenizer, batch = model_and_batch
    pad = tokenizer.pad_token_id
    free_run = generate_new_tokens(model, batch, 8, stop_id=None, pad_id=pad)
    stop = int(free_run[0, 2])  # a token the first row writes at step 3: that row stops there, the others later
    # two greedy copies of each prompt: the prompt is read once, its cache copied, and both copies agree
    expected = generate_new_tokens(model, batch, 8, stop_id=stop, pad_id=pad).repeat_interleave(2, dim=0)
    got = decode(model, batch["input_ids"], batch["attention_mask"], 8, [stop], pad, copies=2)
    assert got.shape[0] == 6 and got.shape[1] > 3  # the other rows went on after the first stopped
    assert torch.equal(got, expected[:, :got.shape[1]])
    assert (expected[:, got.shape[1]:] == pad).all()  # generate only pads where decode stopped early
    assert int((got[0] == stop).nonzero()[0]) <= 2 and (got[0, 3:] == pad).all()


def test_decode_stops_when_every_row_has_stopped_and_respects_the_budget(model_and_batch):
    model, tokenizer, batch = model_and_batch
    first = decode(model, batch["input_ids"], batch["attention_mask"], 5, [], tokenizer.pad_token_id)
    assert first.shape == (3, 5)
    every_first_token = first[:, 0].tolist()
    stopped = decode(model, batch["input_ids"], batch["attention_mask"], 5, every_first_token, tokenizer.pad_token_id)
    assert stopped.shape == (3, 1)


def test_sampled_tokens_follow_the_softmax_at_the_temperature():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2, 0.0])).expand(40_000, -1)
    drawn = next_tokens(logits, do_sample=True, temperature=1.0)
    shares = torch.bincount(drawn, minlength=4) / len(drawn)
    assert torch.allclose(shares, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.01)
    assert shares[3] == 0  # a token of probability 0 is never drawn
    # temperature 0.5 squares the probabilities before renormalizing: 25 : 9 : 4
    shares = torch.bincount(next_tokens(logits, True, temperature=0.5), minlength=4) / len(drawn)
    assert torch.allclose(shares, torch.tensor([25, 9, 4, 0]) / 38, atol=0.01)


def test_top_p_keeps_the_smallest_set_of_tokens_that_reaches_it():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2])).expand(40_000, -1)
    shares = torch.bincount(next_tokens(logits, True, top_p=0.6), minlength=3) / 40_000
    assert torch.allclose(shares, torch.tensor([0.5, 0.3, 0.0]) / 0.8, atol=0.01)
    assert next_tokens(logits[:5], True, top_p=0.1).tolist() == [0] * 5  # the most likely token always stays


def test_greedy_is_the_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 2.9]])
    assert next_tokens(logits, do_sample=False).tolist() == [1, 0]


def forward_batch_sizes(model, call):
    """The batch size of every forward pass of ``model`` while ``call()`` runs, and its result."""
    sizes = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: sizes.append(len(kwargs["input_ids"])),
                                           with_kwargs=True)
    try:
        return call(), sizes
    finally:
        hook.remove()


def test_decode_as_generate_answers_a_trainers_generate_call_reading_each_repeated_prompt_once(model_and_batch):
    model, tokenizer, batch = model_and_batch
    # as TRL calls it: each prompt twice in a row, prompt ids returned in front of the new ones
    repeated = {name: tensor.repeat_interleave(2, dim=0) for name, tensor in batch.items()}
    config = GenerationConfig(max_new_tokens=6, do_sample=False, eos_token_id=[tokenizer.eos_token_id],
                              pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode():
        expected = model.generate(**repeated, generation_config=config)
    got, sizes = forward_batch_sizes(model, lambda: decode_as_generate(model, **repeated, generation_config=config))
    assert torch.equal(got, expected[:, :got.shape[1]])
    assert sizes[0] == 3  # the three distinct prompts were read once each, not twice
    # prompts repeated unevenly and out of order are still read once each, and each row continues its own prompt
    uneven = {name: tensor[[1, 0, 1, 2, 1]] for name, tensor in batch.items()}
    got, sizes = forward_batch_sizes(model, lambda: decode_as_generate(model, **uneven, generation_config=config))
    assert sizes[0] == 3 and torch.equal(got[:, :uneven["input_ids"].shape[1]], uneven["input_ids"])
    with torch.inference_mode():
        expected = model.generate(**uneven, generation_config=config)
    assert torch.equal(got, expected[:, :got.shape[1]])


def test_decode_as_generate_leaves_settings_it_does_not_implement_to_generate():
    class StandIn:
        def generate(self, **kwargs):
            self.called_with = kwargs
            return "generate's answer"

    stand_in, ids = StandIn(), torch.ones(2, 3, dtype=torch.long)
    for setting in ({"top_k": 20}, {"min_p": 0.1}, {"repetition_penalty": 1.1}, {"suppress_tokens": [5]}):
        config = GenerationConfig(max_new_tokens=4, do_sample=True, **setting)
        assert decode_as_generate(stand_in, ids, ids, config) == "generate's answer"
        assert stand_in.called_with["generation_config"] is config
