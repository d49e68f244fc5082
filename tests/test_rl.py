"""Spec for helpers.rl: hand-computed cases, properties, and the pinned TRL computing the same numbers.

The TRL comparisons build real (tiny, offline) trainers and call the internal methods where the
math lives, so an upgrade that changes a formula (std with or without Bessel's correction, where
the epsilon goes, the KL estimator, token- versus sequence-level averaging) fails here first:

- GRPO advantages: ``GRPOTrainer._generate_and_score_completions`` (trl/trainer/grpo_trainer.py)
- GRPO loss and metrics: ``GRPOTrainer._compute_loss`` (trl/trainer/grpo_trainer.py)
- per-token log-probs: ``GRPOTrainer._get_per_token_logps_and_entropies`` (the fused LM head of
  trl/trainer/utils.py ``add_fused_lm_head``) and ``trl.trainer.utils.selective_log_softmax``
- RLOO advantages: ``RLOOTrainer._generate_and_score_completions`` (trl/trainer/rloo_trainer.py)
- DPO sigmoid loss and implicit rewards: ``DPOTrainer._compute_loss`` (trl/trainer/dpo_trainer.py)
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer
from trl.trainer.utils import selective_log_softmax

from helpers.rl import dpo_loss, group_advantages, grpo_loss, rloo_advantages, sequence_logprobs

# TRL's trainers warn about deprecated TrainingArguments aliases on every construction; not our concern here.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")

VOCAB = 64
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 +-*/=<>"


# ----------------------------------------------------------------------------- tiny offline models


@pytest.fixture(scope="module")
def tokenizer():
    """A character-level tokenizer: a BPE model with no merges maps every character to one id."""
    vocab = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(CHARS)}}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[])), pad_token="<pad>", eos_token="<eos>"
    )


def tiny_model(seed: int = 0) -> Qwen2ForCausalLM:
    """A seeded random Qwen2 in float64, so our formulas are compared without float32 noise on our side."""
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )
    return Qwen2ForCausalLM(config).to(torch.float64)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """GRPOTrainer with beta != 0 builds its reference model from the policy's path, so save one."""
    path = tmp_path_factory.mktemp("tiny_qwen2")
    tiny_model(0).save_pretrained(path)
    return path


def reward_from_column(completions, r, **kwargs):
    """A TRL reward function that hands back the rewards we chose (dataset column ``r``)."""
    return [float(x) for x in r]


def score_with_trainer(trainer, rewards, group_size):
    """Run a trainer's generate-and-score step on one batch whose rewards we set; return its advantages."""
    inputs = [{"prompt": CHARS[i // group_size], "r": r} for i, r in enumerate(rewards)]
    return trainer._generate_and_score_completions(inputs)["advantages"]


def grpo_trainer(tmp_path, tokenizer, model, **config):
    defaults = {"per_device_train_batch_size": 8, "num_generations": 4, "max_completion_length": 3}
    args = GRPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, **{**defaults, **config})
    dataset = Dataset.from_dict({"prompt": ["ab", "cd"], "r": [0.0, 1.0]})
    return GRPOTrainer(
        model=model, reward_funcs=reward_from_column, args=args, train_dataset=dataset, processing_class=tokenizer
    )


def completion_batch(seed: int = 0):
    """Prompts (one left-padded) and completions of different lengths, as GRPOTrainer lays them out."""
    gen = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(2, VOCAB, (4, 3), generator=gen)
    prompt_mask = torch.ones(4, 3, dtype=torch.long)
    prompt_mask[0, 0] = 0
    completion_ids = torch.randint(2, VOCAB, (4, 5), generator=gen)
    completion_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
    }


# ----------------------------------------------------------------------------- group_advantages


def test_group_advantages_hand_computed():
    # Groups [1, 0] and [0, 1]: mean 0.5, sample std sqrt(((0.5)^2 + (0.5)^2) / (2 - 1)) = sqrt(0.5).
    a = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert torch.allclose(group_advantages([1, 0, 0, 1], group_size=2), torch.tensor([a, -a, -a, a]))
    unscaled = group_advantages([1, 0, 0, 1], group_size=2, scale=False)
    assert torch.allclose(unscaled, torch.tensor([0.5, -0.5, -0.5, 0.5]))
    # One group of four: sample std sqrt(4 * 0.25 / 3).
    b = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert torch.allclose(group_advantages([1, 0, 0, 1], group_size=4), torch.tensor([b, -b, -b, b]))


def test_group_advantages_equal_rewards_give_zero_not_nan():
    # Every completion solved (or failed) the prompt: nothing to learn, and the epsilon avoids 0 / 0.
    assert torch.equal(group_advantages([1.0, 1.0, 0.0, 0.0], group_size=2), torch.zeros(4))


def test_group_advantages_batch_scale_uses_group_mean_and_batch_std():
    rewards = torch.tensor([1.0, 0.0, 3.0, 5.0], dtype=torch.float64)
    expected = torch.tensor([0.5, -0.5, -1.0, 1.0], dtype=torch.float64) / (rewards.std() + 1e-4)
    assert torch.allclose(group_advantages(rewards, group_size=2, scale="batch"), expected)


def test_group_advantages_properties():
    rewards = torch.rand(24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for scale in (True, "batch", False):
        adv = group_advantages(rewards, group_size=6, scale=scale)
        assert adv.shape == rewards.shape and adv.dtype == torch.float64
        assert torch.allclose(adv.view(4, 6).sum(dim=1), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    # Scaled by the group std, each group has (almost: the epsilon) unit sample std.
    stds = group_advantages(rewards, group_size=6).view(4, 6).std(dim=1)
    assert torch.allclose(stds, torch.ones(4, dtype=torch.float64), atol=1e-2)
    # A list and a tensor give the same answer.
    assert torch.allclose(group_advantages(rewards.tolist(), 6).double(), group_advantages(rewards, 6), atol=1e-6)


@pytest.mark.parametrize("bad", [{"group_size": 3}, {"group_size": 1}, {"group_size": 2, "scale": "std"}])
def test_group_advantages_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        group_advantages([1.0, 0.0, 0.0, 1.0], **bad)


@pytest.mark.slow
@pytest.mark.parametrize("scale", [True, False, "group", "batch", "none"])
def test_group_advantages_match_grpo_trainer(scale, tmp_path, tokenizer):
    # The second group's spread (1e-3) is smaller than the epsilon: adding 1e-4 to the std versus to
    # the variance, or dividing by n instead of n - 1, gives visibly different numbers there.
    rewards = [0.3, 1.0, 0.0, 0.5, 0.0, 1e-3, 0.0, 1e-3, 2.0, 2.0, 2.0, 2.0, 1.0, 0.0, 0.0, 0.0]
    trainer = grpo_trainer(tmp_path, tokenizer, tiny_model(), scale_rewards=scale, per_device_train_batch_size=16)
    expected = score_with_trainer(trainer, rewards, group_size=4)
    assert torch.allclose(group_advantages(rewards, group_size=4, scale=scale), expected, atol=1e-5)


# ----------------------------------------------------------------------------- rloo_advantages


def test_rloo_advantages_hand_computed():
    # Pairs: the other sample is the whole baseline.
    assert torch.equal(rloo_advantages([1, 0, 0, 1], group_size=2), torch.tensor([1.0, -1.0, -1.0, 1.0]))
    # One group of four: a 1 is judged against (1 + 0 + 0) / 3, a 0 against (1 + 1 + 0) / 3.
    expected = torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    assert torch.allclose(rloo_advantages([1, 0, 0, 1], group_size=4), expected)


@pytest.mark.parametrize("k", [2, 3, 8])
def test_rloo_is_scaled_mean_centering(k):
    rewards = torch.randn(4 * k, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    rloo = rloo_advantages(rewards, group_size=k)
    assert torch.allclose(rloo, k / (k - 1) * group_advantages(rewards, group_size=k, scale=False))
    assert torch.allclose(rloo.view(4, k).sum(dim=1), torch.zeros(4, dtype=torch.float64), atol=1e-12)


@pytest.mark.slow
def test_rloo_advantages_match_rloo_trainer(tmp_path, tokenizer):
    rewards = [0.3, 1.0, 0.0, 0.5, 2.0, 2.0, -1.0, 0.25]
    args = RLOOConfig(
        output_dir=str(tmp_path),
        report_to="none",
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=3,
        beta=0.0,  # with beta != 0 RLOO subtracts beta * KL from the reward before the baseline
    )
    dataset = Dataset.from_dict({"prompt": ["ab", "cd"], "r": [0.0, 1.0]})
    trainer = RLOOTrainer(
        model=tiny_model(),
        reward_funcs=reward_from_column,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    expected = score_with_trainer(trainer, rewards, group_size=4)
    assert torch.allclose(rloo_advantages(rewards, group_size=4), expected, atol=1e-5)


# ----------------------------------------------------------------------------- sequence_logprobs


def test_sequence_logprobs_shift_and_mask_by_hand():
    logits = torch.randn(1, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fake_model = lambda input_ids, attention_mask: SimpleNamespace(logits=logits)  # noqa: E731
    input_ids = torch.tensor([[3, 1, 4, 2]])
    labels = torch.tensor([[-100, -100, 4, 2]])  # the prompt is [3, 1]; the completion is [4, 2]
    out = sequence_logprobs(fake_model, input_ids, torch.ones_like(input_ids), labels)
    logp = torch.log_softmax(logits[0], dim=-1)
    # Position t holds log p(token t + 1 | tokens <= t): token 4 is predicted at position 1, token 2 at 2.
    expected = torch.tensor([[0.0, logp[1, 4], logp[2, 2]]], dtype=torch.float64)
    assert out.shape == (1, 3)
    assert torch.allclose(out, expected)


@pytest.mark.slow
def test_sequence_logprobs_match_selective_log_softmax():
    model = tiny_model()
    input_ids = torch.randint(2, VOCAB, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
        ours = sequence_logprobs(model, input_ids, torch.ones_like(input_ids), input_ids)
    assert torch.allclose(ours, selective_log_softmax(logits[:, :-1], input_ids[:, 1:]), atol=1e-10)


@pytest.mark.slow
def test_sequence_logprobs_match_grpo_trainer(tmp_path, tokenizer):
    # TRL scores completions at the sampling temperature: the logits are divided by it.
    trainer = grpo_trainer(tmp_path, tokenizer, tiny_model(), temperature=0.7)
    batch = completion_batch()
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    n_completion = batch["completion_ids"].size(1)
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, :-n_completion] = -100
    with torch.no_grad():
        expected, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, n_completion
        )
        ours = sequence_logprobs(trainer.model, input_ids, attention_mask, labels, temperature=0.7)
        at_temperature_1 = sequence_logprobs(trainer.model, input_ids, attention_mask, labels)
    assert torch.allclose(ours[:, -n_completion:], expected.double(), atol=1e-5)
    assert not torch.allclose(at_temperature_1[:, -n_completion:], expected.double(), atol=1e-3)
    assert torch.all(ours[:, :-n_completion] == 0)  # prompt tokens are not scored


# ----------------------------------------------------------------------------- grpo_loss


def hand_case():
    """Two completions: one token with A = +1, three tokens with A = -1; old_logp = ref_logp = 0."""
    ratios = torch.tensor([[1.5, 1.0, 1.0], [0.5, 1.1, 1.0]], dtype=torch.float64)
    return {
        "logps": ratios.log(),
        "old_logps": torch.zeros(2, 3, dtype=torch.float64),
        "ref_logps": torch.zeros(2, 3, dtype=torch.float64),
        "advantages": torch.tensor([1.0, -1.0], dtype=torch.float64),
        "completion_mask": torch.tensor([[1, 0, 0], [1, 1, 1]]),
    }


def test_grpo_loss_hand_computed_clipping_and_averaging():
    # Token losses -min(r * A, clip(r, 0.8, 1.2) * A):
    #   seq 0 (A = +1): r = 1.5 -> -1.2 (clipped high: no reward for moving further)
    #   seq 1 (A = -1): r = 0.5 -> +0.8 (clipped low), r = 1.1 -> +1.1, r = 1.0 -> +1.0
    per_seq = (-1.2 + (0.8 + 1.1 + 1.0) / 3) / 2  # "grpo": mean over tokens, then over sequences
    per_token = (-1.2 + 0.8 + 1.1 + 1.0) / 4  # "bnpo"/"dapo": every token weighs the same
    constant = (-1.2 + 0.8 + 1.1 + 1.0) / (2 * 3)  # "dr_grpo": B * max_completion_length
    for loss_type, expected in [("grpo", per_seq), ("bnpo", per_token), ("dapo", per_token), ("dr_grpo", constant)]:
        loss, metrics = grpo_loss(**hand_case(), loss_type=loss_type)
        assert loss.item() == pytest.approx(expected, abs=1e-12), loss_type
    assert metrics == pytest.approx(
        {"kl": metrics["kl"], "clip_ratio/low_mean": 0.25, "clip_ratio/high_mean": 0.25, "clip_ratio/region_mean": 0.5}
    )
    # dapo divides by the token count of the whole generation batch when told it; dr_grpo by a constant.
    dapo, _ = grpo_loss(**hand_case(), loss_type="dapo", num_items_in_batch=10)
    assert dapo.item() == pytest.approx((-1.2 + 0.8 + 1.1 + 1.0) / 10)
    dr_grpo, _ = grpo_loss(**hand_case(), loss_type="dr_grpo", max_completion_length=8)
    assert dr_grpo.item() == pytest.approx((-1.2 + 0.8 + 1.1 + 1.0) / (2 * 8))


@pytest.mark.parametrize("corrected", [False, True])
def test_grpo_loss_hand_computed_k3_kl_penalty(corrected):
    # k3 with ref_logp = 0 and logp = log r: exp(-log r) + log r - 1 = 1 / r + log r - 1.
    # TRL's default bias correction multiplies it by the ratio r (old_logp = 0 here).
    def kl(r):
        return (r if corrected else 1.0) * (1 / r + math.log(r) - 1)

    kl0, kl1 = kl(1.5), (kl(0.5) + kl(1.1) + kl(1.0)) / 3
    no_kl, _ = grpo_loss(**hand_case(), loss_type="grpo")
    loss, metrics = grpo_loss(**hand_case(), loss_type="grpo", beta=0.1, use_bias_correction_kl=corrected)
    assert loss.item() == pytest.approx(no_kl.item() + 0.1 * (kl0 + kl1) / 2, abs=1e-12)
    assert metrics["kl"] == pytest.approx((kl(1.5) + kl(0.5) + kl(1.1) + kl(1.0)) / 4)


def test_grpo_loss_kl_bias_correction_changes_the_gradient_not_the_value():
    # On-policy the ratio is 1, so the corrected KL has the same value, but d(ratio)/d(logp) = 1 adds
    # k3 to the gradient: k3 * grad(logp) + grad(k3) is the gradient of the reverse KL itself.
    ref_logps = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64)
    results = {}
    for corrected in (False, True):
        logps = torch.tensor([[-1.5, -1.0, -0.5]], dtype=torch.float64, requires_grad=True)
        loss, _ = grpo_loss(
            logps, None, ref_logps, torch.zeros(1), torch.ones(1, 3), beta=1.0, use_bias_correction_kl=corrected
        )
        loss.backward()
        results[corrected] = loss.item(), logps.grad
    k3 = torch.exp(ref_logps - logps.detach()) - (ref_logps - logps.detach()) - 1
    assert results[True][0] == pytest.approx(results[False][0], abs=1e-12)
    assert torch.allclose(results[False][1], (1 - torch.exp(ref_logps - logps.detach())) / 3)
    assert torch.allclose(results[True][1], results[False][1] + k3 / 3)
    # The estimator is never negative, and zero where the policy equals the reference.
    logps = torch.linspace(-3, 3, 13, dtype=torch.float64).view(1, -1)
    _, metrics = grpo_loss(logps, None, torch.zeros_like(logps), torch.ones(1), torch.ones_like(logps))
    assert metrics["kl"] > 0
    _, metrics = grpo_loss(logps, None, logps.clone(), torch.ones(1), torch.ones_like(logps))
    assert metrics["kl"] == 0


def test_grpo_loss_on_policy_is_zero_but_its_gradient_is_not():
    # One update per batch (TRL's default): ratio = 1, so the loss is -mean(A), which is 0 when the
    # group-normalised advantages of each group sum to zero. The gradient is still -A * grad(logp).
    logps = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64).requires_grad_()
    advantages = group_advantages([1.0, 0.0, 0.0, 1.0], group_size=2).double()
    loss, metrics = grpo_loss(logps, None, None, advantages, torch.ones(4, 3), loss_type="grpo")
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert metrics["clip_ratio/region_mean"] == 0
    assert torch.allclose(logps.grad, -advantages.unsqueeze(1).expand(4, 3) / (4 * 3))


def test_grpo_loss_rejects_bad_arguments():
    case = hand_case()
    with pytest.raises(ValueError):
        grpo_loss(**case, loss_type="ppo")
    case["ref_logps"] = None
    with pytest.raises(ValueError):
        grpo_loss(**case, beta=0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loss_type", "beta", "epsilon_high", "bias_correction"),
    [
        ("grpo", 0.0, None, True),
        ("grpo", 0.5, None, True),
        ("grpo", 0.5, None, False),
        ("bnpo", 0.5, None, True),
        ("dapo", 0.5, 0.28, True),
        ("dr_grpo", 0.5, None, True),
    ],
)
def test_grpo_loss_matches_grpo_trainer(
    loss_type, beta, epsilon_high, bias_correction, tmp_path, tokenizer, tiny_model_dir
):
    model = Qwen2ForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float64)
    trainer = grpo_trainer(
        tmp_path,
        tokenizer,
        model,
        loss_type=loss_type,
        beta=beta,
        epsilon_high=epsilon_high,
        use_bias_correction_kl=bias_correction,
        max_completion_length=8,
    )
    model = trainer.model.eval()  # eval: TRL does not divide by the gradient-accumulation steps
    batch = completion_batch()
    mask = batch["completion_mask"]
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], mask], dim=1)
    # The policy's log-probs as TRL computes them: the very tensor our loss gets.
    logps, _, _ = trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, mask.size(1))
    # Old and reference log-probs a few tenths of a nat away, so some ratios leave the clip range.
    gen = torch.Generator().manual_seed(1)
    old_logps = logps.detach() + 0.3 * torch.randn(logps.shape, generator=gen)
    ref_logps = logps.detach() + 0.3 * torch.randn(logps.shape, generator=gen)
    advantages = torch.tensor([1.0, -0.5, 0.7, -1.2])
    inputs = {
        **batch,
        "advantages": advantages,
        "old_per_token_logps": old_logps,
        "ref_per_token_logps": ref_logps,
        "num_items_in_batch": mask.sum(),
    }
    params = [p for p in model.parameters() if p.requires_grad]

    trl_loss = trainer._compute_loss(model, inputs)
    trl_grads = torch.autograd.grad(trl_loss, params)
    loss, metrics = grpo_loss(
        logps,
        old_logps,
        ref_logps,
        advantages,
        mask,
        epsilon=0.2,
        epsilon_high=epsilon_high,
        beta=beta,
        loss_type=loss_type,
        max_completion_length=8,
        use_bias_correction_kl=bias_correction,
    )
    grads = torch.autograd.grad(loss, params)

    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    for ours, theirs in zip(grads, trl_grads, strict=True):
        assert torch.allclose(ours, theirs, atol=1e-7, rtol=1e-5)
    logged = trainer._metrics["eval"]
    assert metrics["clip_ratio/region_mean"] > 0  # the comparison really exercises clipping
    for name in ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"):
        assert metrics[name] == pytest.approx(logged[name][-1], abs=1e-6), name
    if beta != 0.0:
        assert metrics["kl"] == pytest.approx(logged["kl"][-1], abs=1e-6)


# ----------------------------------------------------------------------------- dpo_loss


def test_dpo_loss_hand_computed():
    # The policy raised the chosen answer by 1 nat and lowered the rejected one by 1 nat vs the reference.
    losses, chosen, rejected = dpo_loss([-1.0], [-3.0], [-2.0], [-2.0], beta=0.1)
    assert chosen.item() == pytest.approx(0.1) and rejected.item() == pytest.approx(-0.1)
    # -log sigmoid(0.1 - (-0.1)) = log(1 + exp(-0.2))
    assert losses.item() == pytest.approx(math.log1p(math.exp(-0.2)))


def test_dpo_loss_properties():
    policy_chosen = torch.tensor([-5.0, -7.0, -2.0], requires_grad=True)
    policy_rejected = torch.tensor([-6.0, -4.0, -9.0])
    # At the start the policy is the reference: rewards 0 and loss log 2 for every pair.
    losses, chosen, rejected = dpo_loss(policy_chosen, policy_rejected, policy_chosen.detach(), policy_rejected)
    assert torch.allclose(losses, torch.full((3,), math.log(2)))
    assert torch.equal(chosen, torch.zeros(3)) and torch.equal(rejected, torch.zeros(3))
    # The loss pushes the chosen log-prob up; the implicit rewards carry no gradient (they are for logging).
    losses.mean().backward()
    assert torch.all(policy_chosen.grad < 0)
    assert not chosen.requires_grad
    # A wide margin in favour of the chosen answer drives the loss to 0; the reverse grows it linearly.
    assert dpo_loss([0.0], [-200.0], [0.0], [0.0])[0].item() == pytest.approx(0.0, abs=1e-8)
    assert dpo_loss([-200.0], [0.0], [0.0], [0.0])[0].item() == pytest.approx(20.0, abs=1e-6)


@pytest.mark.slow
def test_dpo_loss_matches_dpo_trainer(tmp_path, tokenizer):
    args = DPOConfig(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, per_device_train_batch_size=3
    )
    dataset = Dataset.from_dict(
        {"prompt": ["ab", "cd", "efg"], "chosen": ["1", "22", "3 + 4"], "rejected": ["333", "4", "5 - 6"]}
    )
    trainer = DPOTrainer(
        model=tiny_model(0), ref_model=tiny_model(1), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.model.eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(dataset))])
    # DPO's batch is [all chosen; all rejected]; only completion tokens count towards the log-prob.
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        policy = sequence_logprobs(trainer.model, batch["input_ids"], batch["attention_mask"], labels).sum(-1)
        ref = sequence_logprobs(trainer.ref_model, batch["input_ids"], batch["attention_mask"], labels).sum(-1)
        trl_loss = trainer._compute_loss(trainer.model, batch, return_outputs=False)
    losses, chosen, rejected = dpo_loss(*policy.chunk(2), *ref.chunk(2), beta=args.beta)

    logged = trainer._metrics["eval"]
    assert args.beta == 0.1 and args.loss_type == ["sigmoid"]  # the pinned defaults this course teaches
    assert losses.mean().item() == pytest.approx(trl_loss.item(), abs=1e-5)
    assert chosen.mean().item() == pytest.approx(logged["rewards/chosen"][-1], abs=1e-5)
    assert rejected.mean().item() == pytest.approx(logged["rewards/rejected"][-1], abs=1e-5)
    assert (chosen - rejected).mean().item() == pytest.approx(logged["rewards/margins"][-1], abs=1e-5)


# ---------------------------------------------------------------------------------------------
# The from-scratch GRPO step, on the course's tiny model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_policy():
    from helpers.models import load_model, load_tokenizer

    return load_model("tiny"), load_tokenizer("tiny")


@pytest.mark.slow
def test_sample_group_masks_everything_but_the_completion(tiny_policy):
    from helpers.rl import sample_group

    model, tokenizer = tiny_policy
    torch.manual_seed(0)
    group = sample_group(model, tokenizer, [{"role": "user", "content": "Say 4"}], group_size=3, max_new_tokens=6)
    assert group["input_ids"].shape[0] == 3 and len(group["completions"]) == 3
    prompt_length = group["input_ids"].shape[1] - (group["labels"] != -100).sum(1).max().item()
    assert (group["labels"][:, :prompt_length] == -100).all()  # the prompt is never trained
    trained = group["labels"] != -100
    assert torch.equal(group["labels"][trained], group["input_ids"][trained])
    assert torch.equal(group["attention_mask"][:, prompt_length:].bool(), trained[:, prompt_length:])


@pytest.mark.slow
def test_grpo_step_updates_only_when_rewards_differ(tiny_policy):
    from helpers.models import load_model
    from helpers.rl import grpo_step

    _, tokenizer = tiny_policy
    model = load_model("tiny")
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    prompt = [{"role": "user", "content": "Count"}]
    before = [p.detach().clone() for p in model.parameters()]
    flat = grpo_step(model, tokenizer, optimizer, prompt, lambda texts: [1.0] * len(texts), group_size=4, max_new_tokens=5)
    assert flat["zero_std_group"] and flat["loss"] == 0.0  # equal rewards: advantage 0, nothing to learn
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # eight equal 0.2 rewards have a float32 std of about 1.6e-8, not 0: still a zero-variance group
    assert torch.tensor([0.2] * 8).std() != 0
    point_two = grpo_step(model, tokenizer, optimizer, prompt, lambda texts: [0.2] * len(texts), group_size=8,
                          max_new_tokens=5)
    assert point_two["zero_std_group"]

    calls = iter(range(100))
    varied = grpo_step(model, tokenizer, optimizer, prompt, lambda texts: [float(next(calls) % 2) for _ in texts],
                       group_size=4, max_new_tokens=5, beta=0.1, ref_model=load_model("tiny"))
    assert not varied["zero_std_group"] and varied["reward_mean"] == 0.5 and varied["kl"] >= 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="ref_model"):
        grpo_step(model, tokenizer, optimizer, prompt, lambda texts: [0.0] * len(texts), 2, 3, beta=0.1)


def _notebook_function(notebook: str, name: str):
    """Execute the notebook cell that defines ``name`` (and nothing else) and return the function."""
    import json
    from pathlib import Path

    cells = json.loads((Path(__file__).parent.parent / "notebooks" / notebook).read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    matching = [s for s in sources if f"def {name}(" in s]
    assert len(matching) == 1, f"expected one cell defining {name} in {notebook}, found {len(matching)}"
    import helpers.rl

    namespace = {"torch": torch, **{k: getattr(helpers.rl, k) for k in dir(helpers.rl) if not k.startswith("__")}}
    exec(compile(matching[0], f"{notebook}:{name}", "exec"), namespace)  # noqa: S102 - our own notebook
    return namespace[name]


@pytest.mark.slow
def test_notebook_grpo_loop_matches_grpo_step():
    """Notebook 5 writes the GRPO step out in a cell (5.5); it must do what the tested grpo_step does:
    the same samples (same seed) give the same loss, the same rewards and the same updated weights."""
    from helpers.models import load_model, load_tokenizer
    from helpers.rl import grpo_step

    by_hand = _notebook_function("05_grpo.ipynb", "grpo_step_by_hand")
    tokenizer = load_tokenizer("tiny")
    prompt = [{"role": "user", "content": "Count to three"}]
    results, weights = [], []
    for step in (grpo_step, by_hand):
        model = load_model("tiny")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        calls = iter(range(1000))
        torch.manual_seed(3)
        out = step(model, tokenizer, optimizer, prompt, lambda texts, calls=calls: [float(next(calls) % 3 == 0) for _ in texts],
                   group_size=6, max_new_tokens=6, temperature=1.0)
        results.append(out)
        weights.append([p.detach().clone() for p in model.parameters()])
    reference, notebook = results
    assert notebook["loss"] == pytest.approx(reference["loss"], abs=1e-6)
    assert notebook["reward_mean"] == pytest.approx(reference["reward_mean"])
    assert reference["reward_std"] > 0  # a group that teaches something, so the weights move
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*weights))
    assert any(not torch.equal(a, b) for a, b in zip(weights[0], load_model("tiny").parameters()))
