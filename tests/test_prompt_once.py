"""``helpers.prompt_once``: completions scored with their prompt read once get TRL's log-probabilities, entropies
and gradients."""

import contextlib
from types import SimpleNamespace

import pytest
import torch
from peft import LoraConfig, get_peft_model
from trl import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head

from helpers.models import load_model
from helpers.prompt_once import ReadsEachPromptOnce, completion_logps_reading_prompts_once, distinct_prompts


class TRLScoring:
    """Just enough of a trainer to call TRL's own scoring method."""
    accelerator = SimpleNamespace(autocast=contextlib.nullcontext, num_processes=1, is_main_process=True)
    _get_per_token_logps_and_entropies = GRPOTrainer._get_per_token_logps_and_entropies


class CourseScoring(ReadsEachPromptOnce, TRLScoring):
    pass


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    model = load_model("tiny", dtype=torch.float32)
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))  # as the GRPO trainer does
    # LoRA weights initialised away from 0, so the adapter changes the outputs and receives gradients
    return get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))


def grouped_batch(copies=3, vocab=200):
    """Two left-padded prompts (5 and 3 tokens), each followed by ``copies`` right-padded completions."""
    torch.manual_seed(1)
    prompts = torch.tensor([[11, 12, 13, 14, 15], [0, 0, 21, 22, 23]]).repeat_interleave(copies, 0)
    prompt_mask = (prompts != 0).long()
    completions = torch.randint(1, vocab, (2 * copies, 6))
    lengths = torch.tensor([6, 2, 4, 1, 6, 3])[:2 * copies]
    completion_mask = (torch.arange(6)[None] < lengths[:, None]).long()
    input_ids = torch.cat([prompts, completions * completion_mask], dim=1)
    return input_ids, torch.cat([prompt_mask, completion_mask], dim=1), 6


def embedding_input_shapes(policy, call):
    """The shape of every batch of token ids ``policy`` embeds while ``call()`` runs, and its result."""
    shapes = []
    handle = policy.get_base_model().model.embed_tokens.register_forward_hook(
        lambda module, args, output: shapes.append(tuple(args[0].shape)))
    try:
        return shapes, call()
    finally:
        handle.remove()


def lora_gradients(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.requires_grad]


SHUFFLED = [3, 0, 5, 1, 4, 2]  # TRL shuffles a step's rows before the loss


def test_distinct_prompts_in_any_row_order():
    input_ids, mask, completion_length = grouped_batch(copies=3)
    first_rows, prompt_of_row = distinct_prompts(input_ids, mask, completion_length)
    assert len(first_rows) == 2 and prompt_of_row.tolist() in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])
    assert torch.equal(prompt_of_row[first_rows], torch.arange(2))  # each distinct prompt's row holds it
    first_rows, prompt_of_row = distinct_prompts(input_ids[SHUFFLED], mask[SHUFFLED], completion_length)
    shuffled_ids = input_ids[SHUFFLED]
    assert first_rows.tolist() in ([0, 1], [1, 0])  # rows 0 and 1 after shuffling hold the two prompts
    assert torch.equal(shuffled_ids[first_rows[prompt_of_row], :5], shuffled_ids[:, :5])
    # the same tokens with another padding are another prompt
    other_mask = mask.clone()
    other_mask[3, 0] = 1
    assert len(distinct_prompts(input_ids, other_mask, completion_length)[0]) == 3


@pytest.mark.parametrize("rows", [list(range(6)), SHUFFLED], ids=["grouped", "shuffled"])
def test_log_probs_entropies_and_gradients_match_trl(policy, rows):
    input_ids, mask, completion_length = grouped_batch(copies=3)
    input_ids, mask = input_ids[rows], mask[rows]
    weights = torch.randn(len(input_ids), completion_length)  # a loss that weighs every token differently

    trl_logps, trl_entropies, _ = TRLScoring()._get_per_token_logps_and_entropies(
        policy, input_ids, mask, completion_length, compute_entropy=True)
    trl_gradients = lora_gradients(policy, (trl_logps * weights).sum() + trl_entropies.sum())
    logps, entropies, aux = CourseScoring()._get_per_token_logps_and_entropies(
        policy, input_ids, mask, completion_length, compute_entropy=True)
    gradients = lora_gradients(policy, (logps * weights).sum() + entropies.sum())

    assert aux is None and logps.shape == (6, completion_length)
    completion_mask = mask[:, -completion_length:].bool()
    assert (logps[~completion_mask] == 0).all()  # padding scores 0, as in TRL
    assert torch.allclose(logps, trl_logps, atol=1e-5)
    assert torch.allclose(entropies[completion_mask], trl_entropies[completion_mask], atol=1e-5)
    assert trl_logps.abs().sum() > 1 and len(gradients) > 10
    for ours, theirs in zip(gradients, trl_gradients):
        assert torch.allclose(ours, theirs, atol=1e-5, rtol=1e-4)


def test_prompt_read_once_in_the_first_pass(policy):
    input_ids, mask, completion_length = grouped_batch(copies=3)
    seen, _ = embedding_input_shapes(policy, lambda: completion_logps_reading_prompts_once(
        policy, input_ids[SHUFFLED], mask[SHUFFLED], completion_length))
    # the distinct prompts but their last token, then every row's last prompt token and completion
    assert seen == [(2, 4), (6, 1 + completion_length)]


def test_rows_that_share_no_prompt_go_to_trl(policy):
    input_ids, mask, completion_length = grouped_batch(copies=3)
    rows = [0, 3]  # one completion of each prompt: nothing to share
    expected, _, _ = TRLScoring()._get_per_token_logps_and_entropies(policy, input_ids[rows], mask[rows],
                                                                      completion_length)
    seen, (logps, entropies, _) = embedding_input_shapes(policy, lambda: CourseScoring()._get_per_token_logps_and_entropies(
        policy, input_ids[rows], mask[rows], completion_length))
    assert seen == [(2, input_ids.shape[1])] and entropies is None  # one pass over the full rows: TRL's
    assert torch.equal(logps, expected)
