"""A row's own worked solution, written the way the course's models answer (``<think>`` then ``<answer>``).

The one rendering of a dataset row's gold trace: DPO's reference ``chosen`` answers (``helpers.preferences``)
and rejection sampling's fallback data (``helpers.distillation``) both use it. The warm-start traces of
``math_problems.math_trace`` are different on purpose: they teach SFT, slips and rechecks included.
"""

from __future__ import annotations

from .countdown import countdown_trace
from .schema import task_of


def reference_trace(row: dict) -> str:
    """A row's own worked solution in the R1 format: the math ``solution`` (its closing "The answer is"
    line moved into ``<answer>``), or the solver's search trace for a Countdown row."""
    if task_of(row) == "countdown":
        return countdown_trace(list(row["nums"]), int(row["target"]), give_up_share=0.0)
    lines = [line for line in str(row.get("solution", "")).strip().splitlines()
             if not line.strip().lower().startswith("the answer is")]
    think = "\n".join(lines).strip() or f"The answer is {row['answer']}."
    return f"<think>\n{think}\n</think>\n<answer>{row['answer']}</answer>"
