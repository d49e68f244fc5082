"""Scoring a group of completions with their shared prompt read once.

A GRPO or RLOO step scores each prompt's G completions under the policy, with gradients. TRL feeds the model G full
rows, prompt then completion: a math prompt of 130 tokens (system prompt and problem) is read G times next to
completions of 30 to 250. Here each prompt is read once; its keys and values, which carry their gradients, are
copied to its G completions, and the completions attend to them as to their own prefix. Rotary attention depends
on positions only through their differences, so the log-probabilities are TRL's up to float rounding, and so are the
gradients (``tests/test_prompt_once.py`` compares both).

``ReadsEachPromptOnce`` puts this in a TRL trainer; anything it does not cover (several processes, images, MoE
losses, rows that share no prompt) goes to TRL's own computation.
"""

import torch
from peft import PeftModel
from transformers import DynamicCache


def distinct_prompts(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     completion_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' distinct prompts (the first ``width - completion_length`` columns, ids and padding alike): the
    first row holding each, and each row's prompt as an index into them. TRL shuffles a step's rows before the loss,
    so a prompt's completions need not be next to each other."""
    prompt_length = input_ids.shape[1] - completion_length
    prompts = torch.cat([input_ids[:, :prompt_length], attention_mask[:, :prompt_length]], dim=1)
    distinct, prompt_of_row = torch.unique(prompts, dim=0, return_inverse=True)
    rows = torch.arange(len(prompts), device=prompts.device)
    first_rows = torch.full((len(distinct),), len(prompts), device=prompts.device).scatter_reduce(
        0, prompt_of_row, rows, reduce="amin")
    return first_rows, prompt_of_row


def completion_logps_reading_prompts_once(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                          completion_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities and entropies of the last ``completion_length`` tokens of each row (0 at padding), as TRL's
    ``_get_per_token_logps_and_entropies`` computes them, for rows of left-padded prompts, some of them shared.

    ``model`` carries TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``, which also divides by the
    sampling temperature). Two passes: the distinct prompts but their last token, keeping the key/value cache; then
    every row's last prompt token and completion, attending to its own prompt's copy of that cache."""
    prompt_length = input_ids.shape[1] - completion_length
    first_rows, prompt_of_row = distinct_prompts(input_ids, attention_mask, completion_length)
    causal_lm = model.get_base_model() if isinstance(model, PeftModel) else model
    cache = DynamicCache(config=causal_lm.config)
    causal_lm.base_model(input_ids=input_ids[first_rows, :prompt_length - 1],
                         attention_mask=attention_mask[first_rows, :prompt_length - 1], past_key_values=cache,
                         use_cache=True)
    cache.batch_select_indices(prompt_of_row)  # differentiable: each row's gradient flows back to its prompt
    tail = input_ids[:, prompt_length - 1:]  # the token that predicts the first completion token, then the rest
    labels = tail.masked_fill(attention_mask[:, prompt_length - 1:] == 0, -100)
    labels[:, 0] = -100
    outputs = model(input_ids=tail, attention_mask=attention_mask, past_key_values=cache, labels=labels,
                    fused_lm_head=True)
    return outputs.log_probs, outputs.entropy


class ReadsEachPromptOnce:
    """For TRL's GRPO and RLOO trainers: score completions with ``completion_logps_reading_prompts_once``."""

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **other_inputs):
        batch_size = batch_size or len(input_ids)
        shared = len(distinct_prompts(input_ids, attention_mask, logits_to_keep)[0]) < len(input_ids)
        covered = (shared and input_ids.shape[1] - logits_to_keep > 1 and not compute_aux_loss
                   and self.accelerator.num_processes == 1 and all(value is None for value in other_inputs.values()))
        if not covered:
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size=batch_size,
                compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **other_inputs)
        logps, entropies = [], []
        for start in range(0, len(input_ids), batch_size):  # TRL's chunks (a memory bound), each read as above
            rows = slice(start, start + batch_size)
            with self.accelerator.autocast():
                chunk_logps, chunk_entropies = completion_logps_reading_prompts_once(
                    model, input_ids[rows], attention_mask[rows], logits_to_keep)
            logps.append(chunk_logps)
            entropies.append(chunk_entropies)
        return torch.cat(logps), torch.cat(entropies) if compute_entropy else None, None
