"""``helpers.signal_rows``: dropping the rows with advantage 0 leaves TRL's GRPO loss and its gradient unchanged, and
the rows dropped are not run through the model."""

import pytest
import torch
from datasets import Dataset
from test_prompt_once import SHUFFLED, grouped_batch, lora_gradients  # one batch and one gradient helper for both tests
from trl import GRPOTrainer

from helpers.config import get_profile
from helpers.models import load_model, load_tokenizer
from helpers.rewards import math_accuracy_reward
from helpers.signal_rows import rows_with_signal
from helpers.training import CourseGRPOTrainer, grpo_config, lora_config


def test_rows_with_signal_keeps_nonzero_advantages_and_at_least_one_row():
    assert rows_with_signal(torch.tensor([0.0, 1.2, 0.0, -0.5])).tolist() == [1, 3]
    assert rows_with_signal(torch.zeros(4)).tolist() == [0]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    config = grpo_config(get_profile("tiny"), tmp_path_factory.mktemp("grpo"), max_steps=1, bf16=False,
                         disable_tqdm=True)
    rows = [{"prompt": [{"role": "user", "content": "What is 1 + 1?"}], "answer": "2"}] * 4
    torch.manual_seed(0)
    trainer = CourseGRPOTrainer(model=load_model("tiny", dtype=torch.float32), reward_funcs=[math_accuracy_reward],
                                args=config, train_dataset=Dataset.from_list(rows), processing_class=load_tokenizer("tiny"),
                                peft_config=lora_config(r=4, alpha=8, dropout=0.0))
    for name, parameter in trainer.model.named_parameters():  # LoRA's B starts at 0; move it so A gets gradients
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.02)
    return trainer


def step_inputs(advantages):
    """``test_prompt_once``'s two left-padded prompts with three right-padded completions each, rows shuffled as TRL
    shuffles them, split into the inputs TRL's GRPO trainer hands its loss."""
    input_ids, mask, completion_length = grouped_batch(copies=3)
    input_ids, mask = input_ids[SHUFFLED], mask[SHUFFLED]
    prompt, completion = slice(None, -completion_length), slice(-completion_length, None)
    return {"prompt_ids": input_ids[:, prompt], "prompt_mask": mask[:, prompt],
            "completion_ids": input_ids[:, completion], "completion_mask": mask[:, completion],
            "advantages": torch.tensor(advantages), "num_items_in_batch": mask[:, completion].sum()}


def loss_gradients_and_rows_scored(trainer, compute_loss, inputs):
    rows_scored = []
    score = trainer._get_per_token_logps_and_entropies
    trainer._get_per_token_logps_and_entropies = lambda model, input_ids, *args, **kwargs: (
        rows_scored.append(len(input_ids)) or score(model, input_ids, *args, **kwargs))
    try:
        loss = compute_loss(trainer.model, inputs)
    finally:
        del trainer._get_per_token_logps_and_entropies
    return loss.detach(), lora_gradients(trainer.model, loss), rows_scored


@pytest.mark.parametrize("advantages, rows_kept", [
    ([1.1, 0.0, -0.5, 0.0, -0.6, 0.0], 3),  # SHUFFLED puts the first prompt's rows at 1, 3, 5: its group all agreed
    ([0.7, 0.0, -1.2, 0.0, 0.0, 0.5], 3),  # rows at their group's mean, inside groups that did not agree
])
def test_loss_and_gradients_are_trls_from_fewer_rows(trainer, advantages, rows_kept):
    trainer.model.eval()  # no dropout, so both computations see one network
    inputs = step_inputs(advantages)
    trl_loss, trl_gradients, trl_rows = loss_gradients_and_rows_scored(
        trainer, lambda model, batch: GRPOTrainer._compute_loss(trainer, model, batch), inputs)
    loss, gradients, rows = loss_gradients_and_rows_scored(trainer, trainer._compute_loss, inputs)
    assert trl_rows == [6] and rows == [rows_kept]
    assert loss.abs() > 1e-4
    torch.testing.assert_close(loss, trl_loss, atol=1e-6, rtol=1e-5)
    assert any(g.abs().sum() > 0 for g in gradients)
    for ours, theirs in zip(gradients, trl_gradients):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-4)


def test_a_step_whose_groups_all_agree_scores_one_row_for_nothing(trainer):
    trainer.model.eval()
    loss, gradients, rows = loss_gradients_and_rows_scored(trainer, trainer._compute_loss, step_inputs([0.0] * 6))
    assert rows == [1] and loss == 0
    assert all(g.abs().sum() == 0 for g in gradients)


def test_with_a_kl_term_every_row_is_scored(trainer, monkeypatch):
    """With ``beta > 0`` a row of advantage 0 still pulls toward the reference model: nothing may be dropped."""
    trainer.model.eval()
    monkeypatch.setattr(trainer, "beta", 0.04)
    inputs = step_inputs([1.1, 0.0, -0.5, 0.0, -0.6, 0.0])
    inputs["ref_per_token_logps"] = torch.full((6, 6), -3.0)
    _, _, rows = loss_gradients_and_rows_scored(trainer, trainer._compute_loss, inputs)
    assert rows == [6]
