"""The wording of each task's user prompt (the chat module adds the system prompt)."""

from __future__ import annotations


def countdown_prompt(nums: list[int], target: int) -> str:
    """The user turn of a Countdown task."""
    return (
        f"Using the numbers {list(nums)}, create an equation that equals {target}. "
        "Use each number exactly once with + - * /. "
        "Show your reasoning in <think> </think> and give the equation in <answer> </answer>."
    )


def math_prompt(question: str) -> str:
    """The user turn of a math problem."""
    return f"{question.strip()}\nShow your reasoning in <think> </think> and give the final answer as a number in <answer> </answer>."
