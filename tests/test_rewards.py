"""The reward functions as a spec: worked cases, TRL call shapes, properties and hostile inputs."""

from __future__ import annotations

import functools
import inspect
import json
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import rewards as R
from helpers.rewards import (
    answers_match,
    check_instruction_constraints,
    completion_text,
    cosine_length_reward,
    cosine_length_scale,
    countdown_reward,
    countdown_reward_func,
    equation_numbers,
    evaluate_equation,
    extract_answer,
    format_reward,
    has_valid_format,
    instruction_constraints_reward,
    is_math_correct,
    math_accuracy_reward,
    math_verify_match,
    normalize_answer,
    numeric_answer,
    reasoning_steps_reward,
    repetition_penalty_reward,
    tag_count_reward,
)


def conv(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


# --------------------------------------------------------------------------------------------
# extract_answer
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>2+2=4</think>\n<answer>4</answer>", "4"),
        ("<answer>3</answer> then <answer>5</answer>", "5"),  # last block wins
        ("<answer>x = -5</answer>", "-5"),  # variable form inside the tags
        (r"<answer>The answer is \boxed{12}</answer>", "12"),
        (r"so \boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
        (r"\boxed{3} no wait \boxed{\boxed{5}}", "5"),  # nested \boxed, last wins
        (r"\boxed{\frac{\sqrt{3}}{2}}", r"\frac{\sqrt{3}}{2}"),
        (r"\fbox{7}", "7"),
        ("The answer is $\\frac{3}{4}$ cups.", r"\frac{3}{4}"),
        ("The answer is 42. Check: 6*7=42", "42"),
        ("**Answer:** -7", "-7"),
        ("The answer is 3.\nOn second thought, the answer is 4.", "4"),  # several places: last wins
        ("The answer is 7.\n" + "Answer:\n" * 30, "7"),  # empty phrases after it are skipped (up to 100 tried)
        ("Natalia sold 48/2 = 24 clips.\n#### 1,234", "1,234"),  # GSM8K
        ("The answer is 5\n#### 6", "6"),  # the later of the two phrase forms
        ("so we get v_{R}=4 m/s for the speed", "4"),  # variable form
        ("first x = 3, then y = -2.5 in the end", "-2.5"),
        ("x = 3 + 4\nSo she has 18 eggs.", "So she has 18 eggs"),  # last line
        ("3 + 4 = 7", "7"),  # last line, after the '='
        (r"<think>\boxed{3}</think> The answer is 5", "5"),  # only the part after </think> is searched
        (conv(r"\boxed{9}"), "9"),
        ("", None),
        ("   \n ", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_prose_phrase_is_skipped():
    # "my answer: <long prose>" is not an answer; an earlier explicit phrase with a number wins
    text = "The answer is 12.\nLet me double check my answer: first I add them and then I multiply everything"
    assert extract_answer(text) == "12"


def test_extract_answer_unbalanced_boxed_falls_back():
    assert extract_answer(r"\boxed{3} and \boxed{4") == "3"


def test_extraction_candidates_side_by_side():
    text = "x = 2\nThe answer is 3\n\\boxed{4}\n<answer>5</answer>\nthanks"
    assert R.extraction_candidates(text) == {
        "answer_tags": "5",
        "boxed": "4",
        "answer_phrase_or_####": "3",
        "variable": "2",
        "last_line": "thanks",
    }
    assert extract_answer(text) == "5"


# --------------------------------------------------------------------------------------------
# normalize_answer and answers_match
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("18", "18"),
        ("18.00", "18"),
        ("0.50", "0.5"),
        ("-0", "0"),
        ("2/4", "1/2"),
        (r"\frac{1}{2}", "1/2"),
        (r"\dfrac{3}{4}", "3/4"),
        (r"\tfrac12", "1/2"),
        (r"-\frac{1}{2}", "-1/2"),
        (r"\frac{-1}{2}", "-1/2"),
        (r"\$1,234.50", "1234.5"),
        ("$1,234$", "1234"),
        ("1,234,567", "1234567"),
        (r"1{,}000", "1000"),
        (r"18 \text{ eggs}", "18"),
        ("18 eggs", "18"),
        ("5 cm", "5"),
        (r"90^\circ", "90"),
        (r"50\%", "50"),
        (r"\boxed{7}", "7"),
        ("x = 3 or x = 5", "3, 5"),
        (r"\{3, 5\}", "3, 5"),
        ("3 and 5", "3, 5"),
        ("(1, 2)", "(1, 2)"),  # a tuple/interval keeps its brackets
        (r"\text{(B)}", "(b)"),
        ("5x", "5x"),  # a variable glued to a number is not a unit
        (r"\sqrt{2}", "sqrt(2)"),
        ("x^{2}+1", "x^2+1"),
        ("v_{R}=4", "4"),
        ("3-5", "3-5"),
        (None, ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        ("1,234", "1234"),
        ("0.5", r"\frac{1}{2}"),
        (r"\dfrac{1}{2}", "1/2"),
        ("5, 3", "3 and 5"),  # order-independent lists
        (r"\{-1, 2\}", "2, -1"),
        ("18 eggs", "18"),
        (r"\$18.00", "18"),
        ("1/3", "0.3333333"),  # within rel_tol
        (r"\text{B}", "b"),
        ("x^2 + 1", "x^2+1"),  # string fallback ignores spaces
    ],
)
def test_answers_match_true(pred, ref):
    assert answers_match(pred, ref)


@pytest.mark.parametrize(
    ("pred", "ref"),
    [
        ("-7", "7"),
        ("5x", "5"),
        ("3, 5", "3"),  # listing candidates is not answering
        ("3, 5, 7", "3, 5"),
        ("(2, 1)", "(1, 2)"),  # ordered pairs keep their order
        ("0.33", "1/3"),
        ("", ""),
        (None, "1"),
        ("1", None),
    ],
)
def test_answers_match_false(pred, ref):
    assert not answers_match(pred, ref)


def test_answers_match_tolerance_is_a_parameter():
    assert not answers_match("3.14", "3.14159")
    assert answers_match("3.14", "3.14159", rel_tol=1e-3)


# --------------------------------------------------------------------------------------------
# math-verify and math_accuracy_reward
# --------------------------------------------------------------------------------------------
def test_math_verify_match_verdicts():
    assert math_verify_match("0.5", r"\frac{1}{2}") is True
    assert math_verify_match("(x+1)^2", "x^2+2x+1") is True
    assert math_verify_match("<answer>7</answer>", "7") is True  # tags are stripped before parsing
    assert math_verify_match("8", "7") is False
    # kept away from sympy: math-verify cannot judge, the caller falls back
    assert math_verify_match(r"9^{9^{9}}", "5") is None
    assert math_verify_match("", "5") is None
    assert math_verify_match("x" * 500, "5") is None  # too long to hand to sympy


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        (r"<think>half</think><answer>\boxed{0.5}</answer>", r"\frac{1}{2}", 1.0),
        ("The answer is 3/4.", r"\dfrac{3}{4}", 1.0),
        ("#### 1,234", "1234", 1.0),
        ("She has 18 eggs.", "18", 1.0),
        (r"\boxed{x^2+2x+1}", "(x+1)^2", 1.0),
        (r"\boxed{5, 3}", "3,5", 1.0),
        (r"\boxed{\$18.00}", "18", 1.0),
        (r"\boxed{v_{R}=4}", "4", 1.0),
        (r"\boxed{50\%}", "50", 1.0),
        (r"\boxed{-7}", "7", 0.0),
        (r"\boxed{(2,1)}", "(1,2)", 0.0),
        (r"\boxed{3}\boxed{4}\boxed{72}", "4", 0.0),  # only the last box counts
        ("1 2 3 4 5 6 7 8 9 10", "7", 0.0),  # listing numbers earns nothing
        ("", "7", 0.0),
    ],
)
def test_math_accuracy_reward_cases(completion, gold, expected):
    assert math_accuracy_reward([completion], answer=[gold]) == [expected]
    assert math_accuracy_reward([conv(completion)], answer=[gold]) == [expected]


def test_math_accuracy_reward_columns():
    assert math_accuracy_reward(r"\boxed{72}", answer="72") == [1.0]  # a bare string is a batch of one
    assert math_accuracy_reward([r"\boxed{72}", r"\boxed{71}"], answer="72") == [1.0, 0.0]  # broadcast
    assert math_accuracy_reward(["the answer is 72"], solution=["48/2 = 24 clips in May.\n#### 72"]) == [1.0]
    assert math_accuracy_reward([r"\boxed{1}"], answer=[None]) == [0.0]
    assert math_accuracy_reward([None, 5], answer=["5", "5"]) == [0.0, 1.0]  # non-strings are read as str()
    with pytest.raises(ValueError, match="answer"):
        math_accuracy_reward([r"\boxed{1}"])


def test_math_accuracy_in_a_worker_thread():
    """TRL may call rewards off the main thread, where math-verify's signal.alarm would raise."""
    out: dict = {}

    def work():
        try:
            out["r"] = math_accuracy_reward([r"\boxed{\frac{1}{2}}", r"\boxed{2}"], answer=["0.5", "3"])
        except BaseException as exc:  # pragma: no cover - the failure we guard against
            out["r"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=30)
    assert out["r"] == [1.0, 0.0]


# --------------------------------------------------------------------------------------------
# The strict score: a numeric gold needs one number, not arithmetic still to do
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("completion", "gold"),
    [
        ("<think>x</think>\n<answer>12*10+20</answer>", "140"),  # the question's arithmetic echoed back
        ("<think>x</think>\n<answer>50-44</answer>", "6"),
        ("<answer>3 \\times 4</answer>", "12"),
        ("<answer>\\frac{12}{4}+1</answer>", "4"),
        ("<answer>(6+4)/2</answer>", "5"),
    ],
)
def test_echoed_arithmetic_scores_zero(completion, gold):
    assert math_accuracy_reward([completion], answer=[gold]) == [0.0]
    assert not is_math_correct(extract_answer(completion), gold)


@pytest.mark.parametrize(
    ("completion", "gold", "expected"),
    [
        # the five holes found against real benchmark answers
        ("The answer is 18. Wait, that is wrong. The answer is 20.", "18", 0.0),  # the last phrase wins
        ("The answer is 18. Wait, that is wrong. The answer is 20.", "20", 1.0),
        ("\\boxed{5!}", "5", 0.0),  # a factorial is not punctuation
        ("\\boxed{288}", "288 \\pi", 0.0),  # pi is not a unit
        ("\\boxed{288 \\pi}", "288 \\pi", 1.0),
        ("<answer>3 x</answer>", "3", 0.0),  # nor is a lone letter
        ("The answer is 1,450,001.", "1,450,000", 0.0),  # integers are compared exactly
        ("Let y = 3x.\nThen the total is 12.", "12", 1.0),  # 3 is a coefficient, not the value
        ("Let y = 3x.\nThen the total is 12.", "3", 0.0),
    ],
)
def test_closed_holes(completion, gold, expected):
    assert math_accuracy_reward([completion], answer=[gold]) == [expected]


def test_a_coefficient_is_not_extracted_as_the_value():
    assert extract_answer("Let y = 3x.\nThen the total is 12.") != "3"
    assert extract_answer("So x = 3.\nDone.") == "3"  # a plain assignment still counts when it is the value ...
    assert extract_answer("We get x = 3 apples.") == "3"  # ... and a unit after a space is no coefficient


@pytest.mark.parametrize(
    "completion",
    [
        "<think>t</think>\n<answer>1234</answer>",
        "\\boxed{1234}",
        "The answer is 1,234.",
        "<answer>$1,234.00</answer>",
        "<answer>\\$1,234</answer>",
        "<answer>1234 dollars</answer>",
        "<answer>x = 1234</answer>",
        "<answer>a total of 1,234 eggs</answer>",
        "<answer>1200 + 34 = 1234</answer>",  # the arithmetic done, the result last
        "#### 1234",
    ],
)
def test_every_form_of_a_correct_number_scores_one(completion):
    assert math_accuracy_reward([completion], answer=["1234"]) == [1.0]
    assert math_accuracy_reward([conv(completion)], answer=["1,234"]) == [1.0]


@pytest.mark.parametrize(
    ("pred", "gold"),
    [("3/4", "0.75"), ("0.75", "3/4"), ("\\frac{3}{4}", "0.75"), ("75%", "75"), ("-2.5", "-5/2"), ("0.5", "\\frac{1}{2}")],
)
def test_a_fraction_and_its_decimal_agree(pred, gold):
    assert is_math_correct(pred, gold)


@pytest.mark.parametrize(
    ("pred", "gold"),
    [("1234", "1235"), ("1234", "123.4"), ("0.75", "0.7"), ("3/4", "4/3"), ("12", "1.2"), ("100", "10"), ("-6", "6")],
)
def test_no_false_match_between_different_numbers(pred, gold):
    assert not is_math_correct(pred, gold)


def test_numeric_answer():
    assert numeric_answer("$1,234.00") == 1234
    assert numeric_answer("\\frac{3}{4}") == Fraction(3, 4)
    assert numeric_answer("18 eggs") == 18
    assert numeric_answer("12*10+20") is None
    assert numeric_answer("3, 5") is None
    assert numeric_answer("5x") is None
    assert numeric_answer("5!") is None
    assert numeric_answer(None) is None


def test_non_numeric_golds_still_go_to_math_verify():
    assert is_math_correct("(x+1)^2", "x^2+2x+1")
    assert is_math_correct("\\frac{\\pi}{2}", "\\pi/2")
    assert not is_math_correct("x^2", "x^2+2x+1")


def test_is_math_correct():
    assert is_math_correct("1,234", "1234")
    assert not is_math_correct("1", "")
    assert not is_math_correct(None, "1")


# --------------------------------------------------------------------------------------------
# format, tags, reasoning steps
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("<think>add them</think>\n<answer>7</answer>", True),
        ("  <think>a</think><answer>7</answer>\n", True),
        ("<think>a</think><answer>7</answer> extra", False),
        ("<think>a</think>chatter<answer>7</answer>", False),
        ("<answer>7</answer><think>a</think>", False),
        ("<think></think><answer>7</answer>", False),  # empty reasoning
        ("<think>a</think><answer> </answer>", False),  # empty answer
        ("<think>a<think>b</think><answer>7</answer>", False),  # a tag twice
        ("a</think><answer>7</answer>", False),
        ("", False),
    ],
)
def test_has_valid_format_and_format_reward(text, ok):
    assert has_valid_format(text) is ok
    assert format_reward([text]) == [1.0 if ok else 0.0]
    assert format_reward([conv(text)]) == [1.0 if ok else 0.0]


def test_format_reward_with_prefilled_think():
    completion = "add them</think><answer>7</answer>"
    assert format_reward([completion]) == [0.0]
    assert format_reward([completion], prompts=["Question ...\nAssistant: <think>"]) == [1.0]
    assert format_reward([conv(completion)], prompts=[[{"role": "user", "content": "Q <think>"}]]) == [1.0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>a</think><answer>1</answer>", 1.0),
        ("<think>a</think>", 0.5),
        ("<think>a", 0.25),
        ("<think><think>a</think>", 0.25),  # a doubled tag earns nothing
        ("<answer>1</answer>" * 5, 0.0),  # spamming tags earns nothing
        ("no tags", 0.0),
    ],
)
def test_tag_count_reward(text, expected):
    assert tag_count_reward([text]) == [expected]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 1: 2+3=5\nStep 2: double it\nStep 3: 5*2 = 10", 1.0),
        ("First, we add. Then, we multiply. Finally, we are done.", 0.5),  # 3 steps, no equation
        ("3*4 = 12", 0.5),  # an equation, no steps
        ("1. read\n2. add 2+2 = 4", 0.5 * 2 / 3 + 0.5),
        ("just the answer", 0.0),
        ("<think>Step 1: x\nStep 2: y\nStep 3: 1+1=2</think><answer>2</answer>", 1.0),
        ("<think>nothing here</think>Step 1: 1+1=2\nStep 2: a\nStep 3: b", 0.0),  # only <think> counts
    ],
)
def test_reasoning_steps_reward(text, expected):
    assert reasoning_steps_reward([text]) == [pytest.approx(expected)]


# --------------------------------------------------------------------------------------------
# cosine length and repetition
# --------------------------------------------------------------------------------------------
def test_cosine_length_scale_endpoints_and_midpoint():
    assert cosine_length_scale(0, True, max_len=100) == pytest.approx(1.0)
    assert cosine_length_scale(100, True, max_len=100) == pytest.approx(0.5)
    assert cosine_length_scale(50, True, max_len=100) == pytest.approx(0.75)
    assert cosine_length_scale(0, False, max_len=100) == pytest.approx(-1.0)
    assert cosine_length_scale(100, False, max_len=100) == pytest.approx(-0.5)
    assert cosine_length_scale(50, False, max_len=100) == pytest.approx(-0.75)
    assert cosine_length_scale(10_000, True, max_len=100) == pytest.approx(0.5)  # clipped
    lengths = range(0, 101, 10)
    correct = [cosine_length_scale(n, True, max_len=100) for n in lengths]
    wrong = [cosine_length_scale(n, False, max_len=100) for n in lengths]
    assert correct == sorted(correct, reverse=True)  # shorter correct answers earn more
    assert wrong == sorted(wrong)  # longer wrong answers lose less


def test_cosine_length_reward_matches_trl_example():
    # TRL's get_cosine_scaled_reward docstring: 50 of 100 tokens -> [0.75, -0.75]
    completions = [conv(r"\boxed{\frac{1}{3}}"), conv(r"\boxed{\frac{1}{2}}")]
    out = cosine_length_reward(completions, answer=[r"\frac{1}{3}"] * 2, completion_ids=[[1] * 50] * 2, max_len=100)
    assert out == [pytest.approx(0.75), pytest.approx(-0.75)]


def test_cosine_length_reward_counts_words_without_ids_and_binds_with_partial():
    short, long = r"\boxed{5}", "word " * 100 + r"\boxed{5}"
    out = cosine_length_reward([short, long], answer=["5", "5"], max_len=100)
    assert out[0] > out[1] and out[1] == pytest.approx(0.5)
    bound = functools.partial(cosine_length_reward, max_len=10)
    assert bound([short], answer=["5"]) == [pytest.approx(cosine_length_scale(1, True, max_len=10))]
    assert cosine_length_reward(r"\boxed{5}", answer="5", completion_ids=[7] * 512) == [pytest.approx(0.5)]
    with pytest.raises(ValueError, match="answer"):
        cosine_length_reward([short])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the cat sat on the mat", 0.0),
        ("a b c a b c a b c a b c", -0.7),  # 10 trigrams, 3 unique
        ("go go go go go", -(1 - 1 / 3)),
        ("too short", 0.0),
        ("", 0.0),
    ],
)
def test_repetition_penalty_reward(text, expected):
    assert repetition_penalty_reward([text]) == [pytest.approx(expected)]


def test_repetition_penalty_parameters():
    assert repetition_penalty_reward(["a b a b"], ngram_size=2, max_penalty=-0.5) == [pytest.approx(-0.5 * (1 - 2 / 3))]
    with pytest.raises(ValueError):
        repetition_penalty_reward(["a"], max_penalty=0.5)


# --------------------------------------------------------------------------------------------
# Countdown
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("1 + 2 * 3", Fraction(7)),
        ("(1 + 2) * 3", Fraction(9)),
        ("6 / 4", Fraction(3, 2)),
        ("6 / (1 - 3 / 4)", Fraction(24)),  # a non-integer intermediate result
        ("-3 + 5", Fraction(2)),
        ("--3", Fraction(3)),
        ("((((7))))", Fraction(7)),
        ("3 × 4 ÷ 2 − 1", Fraction(5)),
        (r"3 \times 4", Fraction(12)),
        ("5 / (3 - 3)", None),  # division by zero
        ("2 ** 3", None),
        ("2 ^ 3", None),
        ("3.5 * 2", None),
        ("2(3)", None),
        ("(1 + 2", None),
        ("1 + 2)", None),
        ("", None),
        ("x + 1", None),
        ("__import__('os').system('echo hacked')", None),
        ("1" * 10, None),  # literal past 9 digits
        ("(" * 21 + "1" + ")" * 21, None),  # deeper than 20
        ("+".join(["1"] * 200), None),  # longer than 256 characters
        ("99999999 * " * 4 + "99999999", None),  # |value| past 1e30
    ],
)
def test_evaluate_equation(expr, value):
    assert evaluate_equation(expr) == value


def test_equation_numbers():
    assert equation_numbers("(25 - 5) * 6 / 4") == [25, 5, 6, 4]
    assert equation_numbers("5 / (3 - 3)") == [5, 3, 3]  # well-formed though valueless
    assert equation_numbers("2 ** 3") == []
    assert equation_numbers("eval('1')") == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("(3 + 5) * 6 / 4", 1.0),
        ("(3 + 5) * 6 / 4 = 12", 1.0),
        (r"\((3 + 5) \times 6 \div 4\)", 1.0),
        ("(3 + 5) * 6 / 4 = 13", 0.1),  # claims a result its left side does not have
        ("3 + 5 + 6 + 4", 0.1),  # wrong value
        ("(3 + 5) * 6", 0.1),  # leaves a number out
        ("(3 + 3) * 2", 0.1),  # reuses a number
        ("(3 + 5) * 6 / 4 * 1", 0.1),  # brings in a number it was not given
        ("6 / (5 - 5) + 3 + 4", 0.1),  # division by zero
        ("12", 0.1),  # writing the target is not an equation over the numbers
        ("2 ** 3", 0.0),
        ("twelve", 0.0),
        ("", 0.0),
        ("1+2 = 3 = 3", 0.0),
        ("__import__('os').system('echo hacked')", 0.0),
    ],
)
def test_countdown_reward(answer, expected):
    completion = f"<think>try things</think>\n<answer>{answer}</answer>"
    assert countdown_reward(completion, 12, [3, 5, 6, 4]) == expected


def test_countdown_reward_edge_cases():
    nums = [1, 3, 4, 6]
    assert countdown_reward("<answer>6 / (1 - 3 / 4)</answer>", 24, nums) == 1.0  # 3/4 on the way
    assert countdown_reward("no tags: 6 / (1 - 3 / 4)", 24, nums) == 0.0
    assert countdown_reward("<answer>6 / (1 - 3 / 4)", 24, nums) == 0.0  # unclosed tag
    assert countdown_reward("<answer>1+2</answer> <answer>6 / (1 - 3 / 4)</answer>", 24, nums) == 1.0  # last wins
    assert countdown_reward(conv("<answer>6 / (1 - 3 / 4)</answer>"), "24", "[1, 3, 4, 6]") == 1.0  # string columns
    assert countdown_reward("<answer>1+3+4+6</answer>", 14, [1, 3, 4, 6, 6]) == 0.1  # a number left out


def test_countdown_reward_func_columns():
    completions = ["<answer>(3+5)*6/4</answer>", "<answer>1+2</answer>"]
    assert countdown_reward_func(completions, target=[12, 3], nums=[[3, 5, 6, 4], [1, 2]]) == [1.0, 1.0]
    assert countdown_reward_func(completions[0], target=12, nums=[3, 5, 6, 4]) == [1.0]
    # a flat list of numbers is one row's nums, broadcast to the batch (even when its length equals the batch's)
    assert countdown_reward_func([completions[0]] * 4, target=12, nums=[3, 5, 6, 4]) == [1.0] * 4
    with pytest.raises(ValueError, match="nums"):
        countdown_reward_func(completions, target=[12, 3])


# --------------------------------------------------------------------------------------------
# instruction constraints
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "constraints", "expected"),
    [
        ("one two three", {"max_words": 3}, 1.0),
        ("one two three four", {"max_words": 3}, 0.0),
        ("one two three", {"min_words": 4}, 0.0),
        ("- a\n- b\n* c", {"num_bullets": 3}, 1.0),
        ("- a\n- b", {"num_bullets": 3}, 0.0),
        ("para one\n\npara two", {"num_paragraphs": 2}, 1.0),
        ("all lower here", {"lowercase": True}, 1.0),
        ("Not lower", {"lowercase": True}, 0.0),
        ("Not lower", {"lowercase": False}, 1.0),  # False means no check
        ("SHOUT", {"uppercase": True}, 1.0),
        ('{"name": "x", "age": 3}', {"json_keys": ["name", "age"]}, 1.0),
        ('```json\n{"name": "x"}\n```', {"json_keys": ["name"]}, 1.0),
        ('{"name": "x"}', {"json_keys": ["name", "age"]}, 0.0),
        ("[1, 2]", {"json_keys": ["name"]}, 0.0),
        ("Paris is the capital", {"must_include": ["paris", "capital"]}, 1.0),
        ("Paris", {"must_include": "paris"}, 1.0),
        ("I think Paris", {"must_not_include": ["i think"]}, 0.0),
        ("Thanks for asking.", {"end_with": "asking."}, 1.0),
        ("- a\n- b\n- c", {"num_bullets": 3, "lowercase": True, "max_words": 2}, 2 / 3),
        ("<think>Plan Here</think>\nall lower", {"lowercase": True}, 1.0),  # reasoning is not checked
        ("", {"max_words": 3}, 0.0),  # an empty reply satisfies nothing
        ("hi", {}, 1.0),
        ("hi", '{"max_words": 1}', 1.0),  # a JSON string
        ("hi", "not json", 0.0),
        ("hi", {"max_words": "ten"}, 0.0),  # malformed value counts as unsatisfied
    ],
)
def test_check_instruction_constraints(text, constraints, expected):
    assert check_instruction_constraints(text, constraints) == pytest.approx(expected)


def test_instruction_constraints_reward_columns_and_unknown_keys():
    rows = [{"num_bullets": 2}, json.dumps({"lowercase": True})]
    assert instruction_constraints_reward(["- a\n- b", conv("Upper")], constraints=rows) == [1.0, 0.0]
    with pytest.warns(UserWarning, match="unknown instruction constraint"):
        assert instruction_constraints_reward(["hi"], constraints=[{"max_word": 1, "max_words": 1}]) == [1.0]
    with pytest.raises(ValueError, match="constraints"):
        instruction_constraints_reward(["hi"])
    assert set(R.CONSTRAINT_KEYS) >= {"max_words", "min_words", "num_bullets", "lowercase", "json_keys", "must_include"}


# --------------------------------------------------------------------------------------------
# TRL call shapes
# --------------------------------------------------------------------------------------------
COLUMNS = {
    "answer": ["7", "7"],
    "solution": ["3 + 4 = 7\n#### 7", "#### 7"],
    "target": [7, 7],
    "nums": [[3, 4], [3, 4]],
    "constraints": [{"max_words": 5}, {"max_words": 5}],
}


@pytest.mark.parametrize("name", sorted(R.REWARD_FUNCS))
@pytest.mark.parametrize("conversational", [False, True])
def test_trl_call_shape(name, conversational):
    """TRL calls f(prompts=, completions=, completion_ids=, trainer_state=, log_extra=, log_metric=, **columns)."""
    func = R.REWARD_FUNCS[name]
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(func).parameters.values())
    texts = ["<think>3 + 4 = 7</think>\n<answer>3 + 4</answer>", "no idea"]
    prompts = ["What is 3 + 4?"] * 2
    if conversational:
        texts = [conv(t) for t in texts]
        prompts = [[{"role": "user", "content": p}] for p in prompts]
    out = func(
        prompts=prompts,
        completions=texts,
        completion_ids=[[1, 2, 3], [4]],
        trainer_state=None,
        log_extra=lambda *a: None,
        log_metric=lambda *a: None,
        **COLUMNS,
    )
    assert isinstance(out, list) and len(out) == 2
    assert all(type(r) is float for r in out)


def test_trl_names_the_rewards():
    from trl.trainer.utils import get_callable_name

    assert get_callable_name(functools.partial(cosine_length_reward, max_len=64)) == "cosine_length_reward"
    assert get_callable_name(R.REWARD_FUNCS["countdown_reward_func"]) == "countdown_reward_func"


def test_completion_text():
    assert completion_text("x") == "x"
    assert completion_text(conv("x")) == "x"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]) == "x"
    assert completion_text(None) == ""


# --------------------------------------------------------------------------------------------
# Properties: no reward raises on any string, each stays in its documented range
# --------------------------------------------------------------------------------------------
FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", r"\boxed{", "{", "}", "(", ")", "[", "]", "^", "!", "=",
    "#### ", "The answer is ", "Answer: ", "Step 1: ", "\n", " ", "$", r"\frac{", r"\dfrac", r"\text{", "-", "+",
    "*", "/", ",", ".", "x", "v_{R}", "7", "12", "-3", "1,234", "0.5", "9^{9^{9}}", "100000!", r"\sqrt{", "```json",
]
hostile_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=40).map("".join),
)
RANGES = {
    "math_accuracy_reward": (0.0, 1.0),
    "format_reward": (0.0, 1.0),
    "tag_count_reward": (0.0, 1.0),
    "reasoning_steps_reward": (0.0, 1.0),
    "cosine_length_reward": (-1.0, 1.0),
    "repetition_penalty_reward": (-1.0, 0.0),
    "countdown_reward_func": (0.0, 1.0),
    "instruction_constraints_reward": (0.0, 1.0),
}
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(RANGES))
def test_rewards_never_raise_and_stay_in_range(name):
    lo, hi = RANGES[name]
    func = R.REWARD_FUNCS[name]

    @PROPERTY_SETTINGS
    @given(text=hostile_text, gold=hostile_text)
    def check(text, gold):
        columns = {
            "answer": [gold],
            "target": [24],
            "nums": [[1, 2, 3, 4]],
            "constraints": [{"max_words": 5, "json_keys": ["a"], "lowercase": True, "must_include": [gold]}],
        }
        for completions in ([text], [conv(text)]):
            out = func(prompts=[gold], completions=completions, **columns)
            assert len(out) == 1 and type(out[0]) is float and lo <= out[0] <= hi

    check()


@PROPERTY_SETTINGS
@given(text=hostile_text, other=hostile_text)
def test_helpers_never_raise(text, other):
    answer = extract_answer(text)
    assert answer is None or (isinstance(answer, str) and answer)
    assert isinstance(normalize_answer(text), str)
    assert isinstance(answers_match(text, other), bool)
    assert isinstance(has_valid_format(text), bool)
    assert countdown_reward(text, other, [1, 2]) in (0.0, 0.1, 1.0)
    value = evaluate_equation(text)
    assert value is None or isinstance(value, Fraction)
    assert all(isinstance(n, int) for n in equation_numbers(text))
    assert 0.0 <= check_instruction_constraints(text, other) <= 1.0


@st.composite
def arithmetic(draw, depth=0):
    """(expression text, exact value or None on division by zero)."""
    if depth >= 3 or draw(st.booleans()):
        n = draw(st.integers(min_value=0, max_value=100))
        return str(n), Fraction(n)
    left, lv = draw(arithmetic(depth=depth + 1))
    right, rv = draw(arithmetic(depth=depth + 1))
    op = draw(st.sampled_from("+-*/"))
    if lv is None or rv is None:
        value = None
    elif op == "/":
        value = None if rv == 0 else lv / rv
    else:
        value = {"+": lv + rv, "-": lv - rv, "*": lv * rv}[op]
    return f"({left} {op} {right})", value


@settings(max_examples=150, deadline=None)
@given(arithmetic())
def test_evaluate_equation_is_exact_arithmetic(case):
    text, value = case
    assert evaluate_equation(text) == value
    literals = text.replace("(", " ").replace(")", " ").split()
    assert equation_numbers(text) == [int(tok) for tok in literals if tok.isdigit()]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=1, max_value=1000))
def test_numbers_normalize_to_one_form(n, d):
    assert normalize_answer(f"{n:,}") == str(n)
    assert answers_match(f"{n:,}", str(n))
    assert answers_match(rf"\frac{{{n}}}{{{d}}}", f"{n}/{d}")
    assert answers_match(f"{n}.000", f"${n}$")


# --------------------------------------------------------------------------------------------
# Hostile completions: every function returns within one second
# --------------------------------------------------------------------------------------------
HOSTILE = {
    "1M chars": "a" * 1_000_000,
    "1M newlines": "\n" * 1_000_000,
    "500k numbers": "1 " * 500_000,
    "200k <think>": "<think>" * 200_000,
    "200k open boxed": "\\boxed{" * 200_000,
    "100k answer phrases": "The answer is " * 100_000,
    "100k Answer lines": "Answer:\n" * 100_000,
    "200k assignments": "x=1 " * 200_000,
    "100k step lines": "Step 1: 1+1=2\n" * 100_000,
    "60k answer blocks": "<answer>1</answer>" * 60_000,
    "100k nested parens": "(" * 100_000 + "1" + ")" * 100_000,
    "nested parens in answer": "<answer>" + "(" * 100_000 + "1" + ")" * 100_000 + "</answer>",
    "power tower": r"\boxed{9^{9^{9}}}",
    "power tower 10": r"\boxed{10^{10^{10}}}",
    "flat tower": r"\boxed{9^9^9}",
    "huge exponent": r"\boxed{2^{100000000}}",
    "huge base and exponent": r"\boxed{99999999999^{99999999}}",
    "factorial": r"\boxed{100000!}",
    "python power": "<answer>9**9**9</answer>",
    "sum to 1e9": r"\boxed{\sum_{i=1}^{10^{9}} i}",
    "binomial": r"\boxed{\binom{1000000}{500000}}",
    "nested trig": r"\boxed{\tan(\tan(\tan(\tan(7))))}",
    "nested frac 5000": r"\boxed{" + r"\frac{" * 5000 + "1" + "}{2}" * 5000 + "}",
    "nested sqrt 1000": r"\boxed{" + r"\sqrt{" * 1000 + "2" + "}" * 1000 + "}",
    "nested braces 500": r"\boxed{" + "{" * 500 + "5" + "}" * 500 + "}",
    "left-right 1000": r"\boxed{" + r"\left(" * 1000 + "1" + r"\right)" * 1000 + "}",
    "100k dollars": "$" * 100_001,
    "10k text": r"\text{" * 10_000,
    "5000 digits": r"\boxed{" + "9" * 5000 + "}",
    "1M digits": "9" * 1_000_000,
    "1+1+... 100k": "<answer>" + "1+" * 100_000 + "1</answer>",
    "code injection": "<answer>__import__('os').system('echo hacked')</answer>",
    "deep JSON": "[" * 100_000,
}
SLOW_LIMIT_S = 1.0  # CPU seconds of this thread: another job on the machine does not count against a reward


def _timed_calls(text: str) -> dict:
    return {
        "extract_answer": lambda: extract_answer(text),
        "normalize_answer": lambda: normalize_answer(text),
        "answers_match": lambda: answers_match(text, text),
        "math_accuracy_reward": lambda: math_accuracy_reward([text], answer=["5"]),
        "math_accuracy_reward(gold)": lambda: math_accuracy_reward([r"\boxed{5}"], answer=[text]),
        "format_reward": lambda: format_reward([text]),
        "tag_count_reward": lambda: tag_count_reward([text]),
        "reasoning_steps_reward": lambda: reasoning_steps_reward([text]),
        "cosine_length_reward": lambda: cosine_length_reward([text], answer=["5"]),
        "repetition_penalty_reward": lambda: repetition_penalty_reward([text]),
        "countdown_reward_func": lambda: countdown_reward_func([text], target=[24], nums=[[1, 2, 3, 4]]),
        "evaluate_equation": lambda: evaluate_equation(text),
        "equation_numbers": lambda: equation_numbers(text),
        "check_instruction_constraints": lambda: check_instruction_constraints(
            text, {"max_words": 5, "json_keys": ["a"], "num_bullets": 2, "num_paragraphs": 2, "must_include": ["x"]}
        ),
    }


@pytest.fixture(scope="module")
def warm_math_verify():
    # a gold that is not a number goes to math-verify; the first such call loads sympy and the LaTeX parser
    assert math_accuracy_reward([r"\boxed{x+1}"], answer=["1+x"]) == [1.0]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_completion_costs_under_a_cpu_second(name, warm_math_verify):
    text = HOSTILE[name]
    slow = {}
    for call, run in _timed_calls(text).items():
        start = time.thread_time()
        run()
        elapsed = time.thread_time() - start
        if elapsed >= SLOW_LIMIT_S:
            slow[call] = round(elapsed, 3)
    assert not slow, f"{name}: {slow}"



@pytest.mark.parametrize("pad", range(8150, 8210, 3))
def test_an_answer_phrase_is_found_wherever_a_long_line_is_cut(pad):
    # a single long line is read from its end in pieces of 8192 characters; the phrase must be found whole
    # wherever a piece boundary falls, in it or next to it
    text = "First, 4 + 3. The answer is 7. " + "z" * pad
    assert extract_answer(text) == "7"
