"""The math of GRPO, RLOO and DPO, written out so a learner can read every step.

TRL's trainers do all of this internally (and faster); these functions compute the same
numbers from plain tensors so a notebook can print them, plot them and poke at them.
``tests/test_rl.py`` checks each one against the pinned TRL (1.16) on the same tensors.

Shapes used below:

- ``B``: number of sequences (completions) in a batch; ``k`` (``group_size``): completions per prompt,
  stored next to each other (prompt 0's k completions, then prompt 1's, ...), as TRL does.
- ``T``: completion length in tokens (padded). ``completion_mask`` is 1 on real tokens, 0 on padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from helpers.generation import decode, end_of_turn_ids, sampler

# TRL adds this to the standard deviation before dividing, so a group whose completions all got
# the same reward (std 0) gets advantage 0 instead of 0/0.
ADVANTAGE_EPS = 1e-4

GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def _as_float_tensor(values: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Rewards arrive as lists from reward functions and as tensors from trainers; accept both."""
    tensor = torch.as_tensor(values)
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


def _grouped(rewards: torch.Tensor | Sequence[float], group_size: int) -> torch.Tensor:
    """Reshape a flat reward vector into one row per prompt: ``(B,) -> (B / k, k)``."""
    rewards = _as_float_tensor(rewards)
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be one-dimensional, got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError("group_size must be at least 2: a baseline needs other samples of the same prompt")
    if rewards.numel() % group_size != 0:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.reshape(-1, group_size)


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token log-probabilities of the label tokens under ``model``.

    A causal LM's logits at position ``t`` predict token ``t + 1``, so the logits are shifted
    against the labels::

        logp[b, t] = log_softmax(logits[b, t] / temperature)[labels[b, t + 1]]   if labels[b, t + 1] != -100
                   = 0                                                             otherwise

    Returns a ``(B, L - 1)`` tensor aligned with ``labels[:, 1:]``. Because masked positions are 0,
    ``sequence_logprobs(...).sum(-1)`` is the log-probability of each whole completion (what DPO
    uses), and ``sequence_logprobs(...)[:, -T:]`` are the ``T`` completion tokens (what GRPO uses).

    ``temperature`` must be the sampling temperature when scoring sampled completions: TRL's
    GRPO/RLOO trainers divide the logits by it, so the ratio pi/pi_old compares the same distribution
    the tokens were drawn from.

    This materialises the full ``(B, L, vocab)`` log-softmax: fine for the few sequences a notebook
    inspects; TRL's trainers use a fused LM head that never builds the logits.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # log_softmax over a large vocabulary loses digits in half precision
    logits = logits / temperature
    targets = labels[:, 1:]
    is_label = targets != -100
    # -100 is not a valid index: gather at token 0 there, then overwrite with 0.
    token_logps = F.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(is_label, token_logps, torch.zeros_like(token_logps))


def group_advantages(
    rewards: torch.Tensor | Sequence[float],
    group_size: int,
    scale: bool | str = True,
) -> torch.Tensor:
    """GRPO's advantages: each reward minus the mean reward of its prompt's group.

    ::

        A_i = (r_i - mean(r_group)) / (std(r_group) + 1e-4)     scale=True or "group" (TRL's default)
        A_i = (r_i - mean(r_group)) / (std(r_batch) + 1e-4)     scale="batch"
        A_i =  r_i - mean(r_group)                              scale=False or "none" (Dr. GRPO)

    ``std`` is the sample standard deviation (Bessel's correction, divide by n - 1), as in TRL's
    ``nanstd``; the 1e-4 is added to the std, not to the variance. With "batch" the baseline is
    still the group mean; only the scale is shared by the whole batch.

    Returns a tensor shaped like ``rewards`` (``B`` values, groups of ``group_size`` contiguous).
    """
    grouped = _grouped(rewards, group_size)
    centered = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    scale = {True: "group", False: "none"}.get(scale, scale)
    if scale == "none":
        return centered
    if scale == "group":
        std = grouped.std(dim=1, keepdim=True).expand_as(grouped).reshape(-1)
    elif scale == "batch":
        std = grouped.std()
    else:
        raise ValueError(f"scale must be True, False, 'group', 'batch' or 'none', got {scale!r}")
    return centered / (std + ADVANTAGE_EPS)


def rloo_advantages(rewards: torch.Tensor | Sequence[float], group_size: int) -> torch.Tensor:
    """RLOO's advantages: each reward minus the mean reward of the *other* k - 1 samples of its prompt.

    ::

        A_i = r_i - (sum_j r_j - r_i) / (k - 1)  =  k / (k - 1) * (r_i - mean(r_group))

    Leaving the sample out makes the baseline independent of the sample it judges, so the
    policy-gradient estimate stays unbiased; there is no division by the std.
    Returns a tensor shaped like ``rewards``.
    """
    grouped = _grouped(rewards, group_size)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - baseline).view(-1)


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor | None,
    ref_logps: torch.Tensor | None,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    loss_type: str = "dapo",
    max_completion_length: int | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
    use_bias_correction_kl: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's clipped surrogate loss with an optional KL penalty, as TRL's ``GRPOTrainer`` computes it.

    Per completion token ``t`` of sequence ``i`` (all tensors ``(B, T)`` except ``advantages``, ``(B,)``)::

        ratio      = exp(logp - old_logp)
        surrogate  = min(ratio * A_i, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A_i)
        k3         = exp(ref_logp - logp) - (ref_logp - logp) - 1          (>= 0, 0 when equal)
        kl         = ratio * k3     (use_bias_correction_kl=True, TRL's default)  or  k3
        loss_t     = -surrogate + beta * kl

    then averaged over the real tokens (``completion_mask``) according to ``loss_type``:

    - ``"grpo"``: mean over each sequence's tokens, then mean over sequences (a token of a short
      completion weighs more than one of a long completion: the length bias Dr. GRPO points out).
    - ``"bnpo"``: sum over all tokens / number of tokens in this batch (every token weighs the same).
    - ``"dapo"`` (TRL's default): sum over all tokens / ``num_items_in_batch``, the token count of the
      whole generation batch (defaults to this batch's count, where it equals ``"bnpo"``; TRL passes
      the full count so micro-batches of an accumulated step weigh every token the same).
    - ``"dr_grpo"``: sum over all tokens / (B * ``max_completion_length``), a constant
      (defaults to ``T``; TRL uses the config's ``max_completion_length``).

    k3 estimates KL(pi || pi_ref) from tokens sampled by pi_old; multiplying by the (differentiable)
    ratio corrects for that, so the gradient is the reverse-KL gradient even on-policy, where the
    ratio's value is 1 and the loss value does not change (DeepSeek-V3.2; TRL 1.16's default).

    ``old_logps=None`` means on-policy (one update per generation batch, TRL's default): the ratio
    is exactly 1 but its gradient is still the policy gradient. ``ref_logps`` is needed when
    ``beta != 0``. ``epsilon_high=None`` means symmetric clipping (DAPO suggests 0.28).

    Returns ``(loss, metrics)``; ``metrics`` uses TRL's logged names: ``"kl"`` (the per-token kl
    above, averaged over real tokens; only when ``ref_logps`` is given), ``"clip_ratio/low_mean"``,
    ``"clip_ratio/high_mean"`` and ``"clip_ratio/region_mean"`` (fraction of real tokens whose
    ratio was clipped in a way that stops their gradient).
    """
    if loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {GRPO_LOSS_TYPES}, got {loss_type!r}")
    if beta != 0.0 and ref_logps is None:
        raise ValueError("beta != 0 needs ref_logps (the reference model's per-token log-probs)")
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    mask = completion_mask.to(logps.dtype)
    if old_logps is None:
        old_logps = logps.detach()
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # one advantage per sequence, shared by its tokens

    ratio = torch.exp(logps - old_logps)
    clipped_ratio = torch.clamp(ratio, 1 - epsilon, 1 + epsilon_high)
    # The min makes the objective pessimistic: moving the ratio past the clip range earns nothing more.
    per_token_loss = -torch.min(ratio * advantages, clipped_ratio * advantages)

    metrics = {}
    if ref_logps is not None:
        # k3 estimator of KL(pi || pi_ref): unbiased for tokens sampled from pi, and never negative.
        log_ref_ratio = ref_logps - logps
        per_token_kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1
        if use_bias_correction_kl:
            per_token_kl = per_token_kl * ratio
        metrics["kl"] = ((per_token_kl * mask).sum() / mask.sum().clamp(min=1.0)).item()
        if beta != 0.0:
            per_token_loss = per_token_loss + beta * per_token_kl

    masked_loss = per_token_loss * mask
    if loss_type == "grpo":
        loss = (masked_loss.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif loss_type == "bnpo":
        loss = masked_loss.sum() / mask.sum().clamp(min=1.0)
    elif loss_type == "dapo":
        n_tokens = mask.sum() if num_items_in_batch is None else torch.as_tensor(num_items_in_batch)
        loss = masked_loss.sum() / n_tokens.to(mask.dtype).clamp(min=1.0)
    else:  # dr_grpo
        length = logps.size(1) if max_completion_length is None else max_completion_length
        loss = masked_loss.sum() / (logps.size(0) * length)

    # A token is "clipped" only where the clip is the active side of the min, i.e. its gradient is zero.
    low = ((ratio < 1 - epsilon) & (advantages < 0)).to(mask.dtype)
    high = ((ratio > 1 + epsilon_high) & (advantages > 0)).to(mask.dtype)
    n_real = mask.sum().clamp(min=1.0)
    metrics["clip_ratio/low_mean"] = ((low * mask).sum() / n_real).item()
    metrics["clip_ratio/high_mean"] = ((high * mask).sum() / n_real).item()
    metrics["clip_ratio/region_mean"] = (((low + high) * mask).sum() / n_real).item()
    return loss, metrics


def dpo_loss(
    policy_chosen_logps: torch.Tensor | Sequence[float],
    policy_rejected_logps: torch.Tensor | Sequence[float],
    ref_chosen_logps: torch.Tensor | Sequence[float],
    ref_rejected_logps: torch.Tensor | Sequence[float],
    beta: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO's sigmoid loss (TRL's ``loss_type=["sigmoid"]``) from sequence log-probabilities.

    Each input holds one summed log-probability per pair (``sequence_logprobs(...).sum(-1)``)::

        chosen_reward   = beta * (policy_chosen_logp   - ref_chosen_logp)
        rejected_reward = beta * (policy_rejected_logp - ref_rejected_logp)
        loss            = -log sigmoid(chosen_reward - rejected_reward)

    The "rewards" are the implicit rewards DPO's policy defines; at the start (policy = reference)
    both are 0 and the loss is log 2.

    Returns ``(losses, chosen_rewards, rejected_rewards)``, each with one value per pair.
    ``losses.mean()`` is the training loss; the rewards are detached (they are for logging:
    TRL logs their means as ``rewards/chosen`` and ``rewards/rejected``).
    """
    chosen_logratios = _as_float_tensor(policy_chosen_logps) - _as_float_tensor(ref_chosen_logps)
    rejected_logratios = _as_float_tensor(policy_rejected_logps) - _as_float_tensor(ref_rejected_logps)
    losses = -F.logsigmoid(beta * (chosen_logratios - rejected_logratios))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


# ---------------------------------------------------------------------------------------------
# A from-scratch GRPO step: the whole algorithm on one prompt, built from the pieces above
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_group(model, tokenizer, prompt: list[dict], group_size: int, max_new_tokens: int,
                 temperature: float = 1.0) -> dict:
    """Sample ``group_size`` completions of one conversational prompt.

    Returns ``input_ids``/``attention_mask`` of prompt + completion (right-padded), ``labels``
    (the completion tokens up to and including the end-of-turn token, -100 elsewhere) and the
    decoded ``completions``.
    """
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(next(model.parameters()).device)
    stop_ids = end_of_turn_ids(tokenizer)
    with sampler(model) as decoder:  # a merged copy (bf16 where native); the loss uses ``model`` itself
        completion = decode(decoder, encoded["input_ids"], encoded["attention_mask"], max_new_tokens, stop_ids,
                            tokenizer.pad_token_id, do_sample=True, temperature=temperature, copies=group_size)
    prompt_length = encoded["input_ids"].shape[1]
    output = torch.cat([encoded["input_ids"].expand(group_size, -1), completion], dim=1)
    # Keep tokens up to and including the first end-of-turn token; decode pads the rest.
    is_stop = torch.isin(completion, torch.tensor(stop_ids, device=completion.device))
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0
    completion_mask = ~after_stop
    labels = torch.full_like(output, -100)
    labels[:, prompt_length:] = torch.where(completion_mask, completion, torch.full_like(completion, -100))
    attention_mask = torch.cat([torch.ones_like(output[:, :prompt_length]), completion_mask.long()], dim=1)
    completions = tokenizer.batch_decode(torch.where(completion_mask, completion, tokenizer.pad_token_id),
                                         skip_special_tokens=True)
    return {"input_ids": output, "attention_mask": attention_mask, "labels": labels, "completions": completions}


def grpo_step(model, tokenizer, optimizer, prompt: list[dict], reward_fn, group_size: int, max_new_tokens: int,
              temperature: float = 1.0, beta: float = 0.0, ref_model=None) -> dict:
    """One on-policy GRPO update on one prompt: sample a group, score it, compute advantages and
    the loss, take an optimizer step.

    ``reward_fn(completions: list[str]) -> list[float]``. With ``beta > 0``, ``ref_model`` gives
    the reference log-probs of the KL penalty. Returns the step's numbers for a table.
    """
    group = sample_group(model, tokenizer, prompt, group_size, max_new_tokens, temperature)
    rewards = torch.tensor(reward_fn(group["completions"]), dtype=torch.float32)
    advantages = group_advantages(rewards, group_size)
    model.train()
    logps = sequence_logprobs(model, group["input_ids"], group["attention_mask"], group["labels"], temperature)
    completion_mask = (group["labels"][:, 1:] != -100).float()
    ref_logps = None
    if beta:
        if ref_model is None:
            raise ValueError("beta > 0 needs a ref_model for the KL penalty")
        with torch.no_grad():
            ref_logps = sequence_logprobs(ref_model, group["input_ids"], group["attention_mask"], group["labels"],
                                          temperature)
    loss, metrics = grpo_loss(logps, None, ref_logps, advantages, completion_mask, beta=beta)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.eval()
    return {
        "loss": loss.item(),
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item(),
        # max == min, not std == 0: the std of eight equal 0.2 rewards is 1.6e-8 in float32, not 0
        "zero_std_group": bool(rewards.max() == rewards.min()),
        "mean_completion_tokens": completion_mask.sum(1).mean().item(),
        **({"kl": metrics["kl"]} if "kl" in metrics else {}),
    }
