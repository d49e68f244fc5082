"""Reward functions: a program scores each completion. One module per kind of reward, as in TRL's ``trl/rewards/``.

Rewards and their ranges (each a TRL ``reward_funcs`` entry that also works on a plain string):

- ``math_accuracy_reward`` (``accuracy``): the final answer equals ``answer``. {0.0, 1.0}
- ``format_reward`` (``format``): ``<think>..</think>`` then ``<answer>..</answer>``. {0.0, 1.0}
- ``tag_count_reward`` (``format``): 0.25 per tag that appears exactly once. {0, 0.25, 0.5, 0.75, 1.0}
- ``reasoning_steps_reward`` (``format``): steps and an equation shown. [0.0, 1.0]
- ``cosine_length_reward`` (``length``): correctness scaled by length on a cosine. [-1.0, 1.0] by default
- ``repetition_penalty_reward`` (``repetition``): repeated word n-grams. [-1.0, 0.0] by default
- ``countdown_reward_func`` (``countdown``): 0.0 no equation, 0.1 well-formed but wrong, 1.0 correct.
- ``instruction_constraints_reward`` (``instructions``): share of the row's constraints satisfied. [0.0, 1.0]

Where the pieces are: ``calling`` (how TRL calls a reward), ``extraction`` (where the final answer is),
``answers`` (is it the same answer), ``math_verify_guard`` (math-verify within safe bounds), ``limits``
(every bound on what a reward reads). Dependencies run one way:
``limits, calling <- extraction <- answers <- math_verify_guard <- accuracy <- length``.
"""

from collections.abc import Callable

from .accuracy import is_math_correct, math_accuracy_reward
from .answers import answers_match, normalize_answer, numeric_answer
from .calling import completion_text
from .countdown import countdown_reward, countdown_reward_func, equation_numbers, evaluate_equation
from .extraction import extract_answer, extraction_candidates
from .format import count_steps, format_reward, has_equation, has_valid_format, reasoning_steps_reward, tag_count_reward
from .instructions import CONSTRAINT_KEYS, check_instruction_constraints, instruction_constraints_reward
from .length import cosine_length_reward, cosine_length_scale
from .math_verify_guard import math_verify_match
from .repetition import repetition_penalty_reward

__all__ = [
    "extract_answer",
    "extraction_candidates",
    "normalize_answer",
    "answers_match",
    "math_verify_match",
    "is_math_correct",
    "numeric_answer",
    "evaluate_equation",
    "equation_numbers",
    "countdown_reward",
    "has_valid_format",
    "check_instruction_constraints",
    "cosine_length_scale",
    "math_accuracy_reward",
    "format_reward",
    "tag_count_reward",
    "reasoning_steps_reward",
    "cosine_length_reward",
    "repetition_penalty_reward",
    "countdown_reward_func",
    "instruction_constraints_reward",
    "completion_text",
    "count_steps",
    "has_equation",
    "REWARD_FUNCS",
    "CONSTRAINT_KEYS",
]

#: every TRL-style reward of this package, by name (for tables and for picking rewards in configs)
REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "math_accuracy_reward": math_accuracy_reward,
    "format_reward": format_reward,
    "tag_count_reward": tag_count_reward,
    "reasoning_steps_reward": reasoning_steps_reward,
    "cosine_length_reward": cosine_length_reward,
    "repetition_penalty_reward": repetition_penalty_reward,
    "countdown_reward_func": countdown_reward_func,
    "instruction_constraints_reward": instruction_constraints_reward,
}
