"""Error analysis (format / arithmetic / reasoning), pass@k curves and the leaderboard files."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import helpers.config
from helpers.config import get_profile
from helpers.evaluation import (
    FAILURE_TYPES,
    arithmetic_checks,
    classify_failure,
    failure_table,
    label_failures,
    leaderboard_wide,
    markdown_table,
    pass_at_k,
    pass_at_k_curve,
    reasoning_text,
    save_leaderboard,
)
from helpers.models import load_model, load_tokenizer

MATH_ROW = {"prompt": "Tom has 7 bags of 8 apples. How many apples?", "answer": "56"}
COUNTDOWN_ROW = {"nums": [3, 5, 7], "target": 22}

# ---------------------------------------------------------------------------------------------
# Checking the arithmetic inside a trace
# ---------------------------------------------------------------------------------------------


def summary(text):
    return [(check["equation"], check["ok"]) for check in arithmetic_checks(text)]


def test_arithmetic_checks_the_course_traces():
    math_trace = "Cost: 5*5=25.\nChange: 50-25=25.\nCheck: 25+25=50. Correct."
    assert summary(math_trace) == [("5*5=25", True), ("50-25=25", True), ("25+25=50", True)]
    countdown_trace = "Try 45+46=91, 91*78=7098, not 78. Back up.\nTry 46-45=1. Check: 78*(46-45) = 78, each number used once."
    assert [ok for _, ok in summary(countdown_trace)] == [True] * 4
    assert summary("Share: 9/2=9/2. Part: (3/4)*12=9.") == [("9/2=9/2", True), ("(3/4)*12=9", True)]


def test_arithmetic_checks_find_wrong_equations():
    assert summary("Step 2: 7*8=54.") == [("7*8=54", False)]
    assert summary("1. 3+4=8") == [("3+4=8", False)]  # the list number is not part of the equation
    checks = arithmetic_checks("so 45 + 46 = 92 apples")
    assert checks == [{"equation": "45 + 46=92", "claimed": 92.0, "actual": 91.0, "ok": False}]


def test_arithmetic_checks_decimals_separators_and_chains():
    assert summary("10/3=3.33 and 2.5*4=10.0") == [("10/3=3.33", True), ("2.5*4=10.0", True)]
    assert summary("10/3=3.2") == [("10/3=3.2", False)]  # wrong beyond its own rounding
    assert summary("1,200+300=1500") == [("1200+300=1500", True)]
    assert summary("x = 3+4 = 7, and 2*5=5*2") == [("3+4=7", True), ("2*5=5*2", True)]


def test_arithmetic_checks_ignore_what_is_not_an_equation():
    assert summary("x = 5, so y=x+1 and a <= 3 and b == 4 and = 7") == []
    assert summary("the answer=42") == []  # one number: nothing to check
    assert summary("5/0=1") == []  # no value on the left
    assert summary("__import__('os')=1") == []
    assert arithmetic_checks("1" * 10_000 + "+1=2") == []  # bounded: long text is cut, long runs do not parse


def test_reasoning_text_is_the_think_block():
    assert reasoning_text("<think>a=1</think>\n<answer>2</answer>") == "a=1"
    assert reasoning_text("<think>unfinished 2+2=5") == "unfinished 2+2=5"
    assert reasoning_text("<think>no close<answer>4</answer>") == "no close"
    assert reasoning_text("plain 1+1=2 <answer>2</answer>") == "plain 1+1=2 "


# ---------------------------------------------------------------------------------------------
# Classifying failures
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("completion, row, expected", [
    ("<think>7*8=56</think>\n<answer>56</answer>", MATH_ROW, "correct"),
    ("<think>First, seven bags times", MATH_ROW, "format"),  # truncated before any answer
    ("Seven times eight is many.", MATH_ROW, "format"),
    ("<think>7*8</think>\n<answer>many</answer>", MATH_ROW, "format"),  # an answer block without a number
    ("<think>7*8=54</think>\n<answer>54</answer>", MATH_ROW, "arithmetic"),
    ("<think>7+8=15</think>\n<answer>15</answer>", MATH_ROW, "reasoning"),
    ("<think>3*5=15, 15+7=22</think>\n<answer>3*5+7</answer>", COUNTDOWN_ROW, "correct"),
    ("<think>3*5=15</think>\n<answer>three times five</answer>", COUNTDOWN_ROW, "format"),
    ("<think>3+5=9, 9+7=16</think>\n<answer>3+5+7</answer>", COUNTDOWN_ROW, "arithmetic"),
    ("<think>3+5=8, 8+7=15</think>\n<answer>3+5+7</answer>", COUNTDOWN_ROW, "reasoning"),
])
def test_classify_failure(completion, row, expected):
    assert classify_failure(completion, row) == expected


def test_classify_failure_trusts_a_given_correct_flag():
    assert classify_failure("<think>7*8=54</think><answer>54</answer>", MATH_ROW, correct=True) == "correct"
    assert classify_failure("<think>7*8=56</think><answer>56</answer>", MATH_ROW, correct=False) == "reasoning"
    assert classify_failure([{"role": "assistant", "content": "no answer"}], MATH_ROW) == "format"


def test_failure_table_shares_per_model():
    rows = [MATH_ROW, COUNTDOWN_ROW]
    good = pd.DataFrame({"prompt_index": [0, 1], "correct": [True, True],
                         "completion": ["<think>7*8=56</think><answer>56</answer>", "<think>x</think><answer>3*5+7</answer>"]})
    bad = pd.DataFrame({"prompt_index": [0, 0, 1, 1], "correct": [False] * 4,
                        "completion": ["", "<think>7*8=54</think><answer>54</answer>",
                                       "<think>3+5=8</think><answer>3+5+7</answer>", "<answer>oops</answer>"]})
    assert label_failures(bad, rows).tolist() == ["format", "arithmetic", "reasoning", "format"]
    shares = failure_table({"good": good, "bad": bad}, rows)
    assert list(shares.columns) == list(FAILURE_TYPES) and list(shares.index) == ["good", "bad"]
    assert shares.loc["good"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert shares.loc["bad"].tolist() == [0.0, 0.5, 0.25, 0.25]
    assert failure_table({"bad": bad}, rows, share=False).loc["bad"].tolist() == [0, 2, 1, 1]


# ---------------------------------------------------------------------------------------------
# pass@k curves
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pass_at_k_curve_averages_the_unbiased_estimator_over_prompts():
    model, tokenizer = load_model("tiny"), load_tokenizer("tiny")
    rows = [{"prompt": "1+1?", "answer": "2"}, {"prompt": "2+3?", "answer": "5"}]
    curve, scored = pass_at_k_curve(model, tokenizer, rows, n_samples=3, k_values=(1, 3), max_new_tokens=3,
                                    batch_size=2, progress=False)
    assert len(scored) == 6 and set(curve) == {1, 3}
    correct = scored.groupby("prompt_index")["correct"].sum()
    assert curve[1] == pytest.approx(sum(pass_at_k(3, int(c), 1) for c in correct) / 2)
    assert 0.0 <= curve[1] <= curve[3] <= 1.0
    with pytest.raises(ValueError):
        pass_at_k_curve(model, tokenizer, rows, n_samples=2, k_values=(4,), max_new_tokens=3)


# ---------------------------------------------------------------------------------------------
# The leaderboard: wide table, Markdown, files
# ---------------------------------------------------------------------------------------------


RESULTS = [
    {"model": "initial", "task": "math", "status": "ok", "accuracy": 0.1, "format_rate": 0.0},
    {"model": "initial", "task": "countdown", "status": "ok", "accuracy": 0.0, "format_rate": 0.25},
    {"model": "dpo", "task": "math", "status": "missing"},
    {"model": "dpo", "task": "countdown", "status": "missing"},
    {"model": "sft", "task": "math", "status": "ok", "accuracy": 0.5, "format_rate": 0.9},
]


def test_leaderboard_wide_keeps_missing_models_as_missing_not_zero():
    wide = leaderboard_wide(RESULTS)
    assert list(wide.index) == ["initial", "dpo", "sft"]
    assert list(wide.columns) == ["status", "math accuracy", "math format_rate", "countdown accuracy",
                                  "countdown format_rate"]
    assert wide["status"].tolist() == ["ok", "missing", "partial"]
    assert wide.loc["dpo", ["math accuracy", "countdown accuracy"]].isna().all()
    assert wide.loc["initial", "countdown format_rate"] == 0.25 and math.isnan(wide.loc["sft", "countdown accuracy"])


def test_markdown_table_formats_numbers_and_missing_cells():
    table = leaderboard_wide(RESULTS, metrics=("accuracy",))
    text = markdown_table(table)
    lines = text.splitlines()
    assert lines[0] == "| model | status | math accuracy | countdown accuracy |"
    assert lines[1] == "|---|---|---:|---:|"
    assert lines[2] == "| initial | ok | 0.100 | 0.000 |"
    assert lines[3] == "| dpo | missing | – | – |"
    assert len(lines) == 5 and text.endswith("\n")
    piped = pd.DataFrame({"text": ["a|b"], "n": [3]})
    assert markdown_table(piped, index=False).splitlines()[2] == "| a\\|b | 3 |"


def test_save_leaderboard_writes_csv_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setattr(helpers.config, "DATA_DIR", tmp_path)
    profile = get_profile("tiny")
    table = leaderboard_wide(RESULTS)
    csv_path, md_path = save_leaderboard(table, profile)
    assert csv_path == tmp_path / "processed" / "tiny" / "leaderboard.csv" and md_path.suffix == ".md"
    back = pd.read_csv(csv_path, index_col="model")
    assert back.loc["dpo", "status"] == "missing" and pd.isna(back.loc["dpo", "math accuracy"])
    assert md_path.read_text() == markdown_table(table)
    save_leaderboard(table.head(1), profile)  # overwrites, never appends
    assert len(md_path.read_text().splitlines()) == 3
