"""Scoring only the completions that carry a learning signal.

A GRPO group whose completions all earn the same reward has advantage 0 on every row: with no KL term (``beta=0``)
those rows add exactly 0 to the loss and to its gradient. Late in a run most groups are like that (notebook 5 logs
``frac_reward_zero_std`` rising from about half to three quarters), yet TRL still runs each of their rows forward
and backward. TRL's ``dapo`` loss divides by the number of completion tokens of the whole generation batch, counted
when the batch was sampled, so dropping those rows before the forward pass leaves the loss and the gradient as they
were (``tests/test_signal_rows.py`` compares both). What changes is what TRL logs from the scored rows: the entropy
and the clipping ratios describe the completions that carried a signal.

DAPO's dynamic sampling goes one step further: it samples more prompts until a batch is full of mixed groups. That
changes the update; this only skips work.
"""

import torch


def rows_with_signal(advantages: torch.Tensor) -> torch.Tensor:
    """The indices of the rows whose advantage is not 0; at least one row, so that a step whose groups all agree still
    runs the loss (its value and gradient 0) and TRL logs its metrics."""
    rows = torch.nonzero(advantages != 0).flatten()
    return rows if len(rows) else torch.zeros(1, dtype=torch.long, device=advantages.device)


class ScoresOnlyRowsWithSignal:
    """For TRL's GRPO trainer: drop the rows with advantage 0 from a step's inputs before the loss, where that leaves
    the loss unchanged (``dapo`` loss, no KL term, no entropy bonus or entropy mask, per-row advantages, text only)."""

    def _compute_loss(self, model, inputs):
        advantages = inputs["advantages"]
        unchanged_by_dropping = (self.loss_type == "dapo" and self.beta == 0.0 and advantages.dim() == 1
                                 and not self._entropy_bonus_enabled and self.top_entropy_quantile == 1.0
                                 and "pixel_values" not in inputs)
        if unchanged_by_dropping:
            rows = rows_with_signal(advantages)
            if len(rows) < len(advantages):
                inputs = {key: value[rows] if torch.is_tensor(value) and value.dim() and len(value) == len(advantages)
                          else value for key, value in inputs.items()}
        return super()._compute_loss(model, inputs)
