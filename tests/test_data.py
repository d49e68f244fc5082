"""Tests for helpers.data: the Countdown solver and generator, traces, math problems, instruction
constraints, validation, splits, the offline loaders and the Hub path (on local files of the Hub's shape)."""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import datasets
import pytest

from helpers import data
from helpers.config import get_profile
from helpers.data import math_problems
from helpers.rewards import (
    answers_match,
    check_instruction_constraints,
    countdown_reward,
    equation_numbers,
    evaluate_equation,
    extract_answer,
    has_valid_format,
)

THINK_TAG = re.compile(r"^<think>\n(.*)\n</think>\n<answer>(.*)</answer>$", re.S)


def _reachable(nums: list[int]) -> set[Fraction]:
    """Brute force: every value of every binary tree over every order of the numbers, with + - * /."""

    def values(seq: tuple[int, ...]) -> set[Fraction]:
        if len(seq) == 1:
            return {Fraction(seq[0])}
        out: set[Fraction] = set()
        for cut in range(1, len(seq)):
            for left in values(seq[:cut]):
                for right in values(seq[cut:]):
                    out |= {left + right, left - right, left * right}
                    if right:
                        out.add(left / right)
        return out

    return set().union(*(values(p) for p in set(itertools.permutations(nums))))


def _uses_each_number_once(equation: str, nums: list[int]) -> bool:
    return sorted(equation_numbers(equation)) == sorted(nums)


# ---------------------------------------------------------------- Countdown solver and generator


def test_solver_agrees_with_brute_force_on_random_problems():
    rng = random.Random(7)
    solved = unsolved = 0
    for _ in range(60):
        nums = [rng.randint(1, rng.choice((13, 99))) for _ in range(rng.choice((3, 4)))]
        reachable = _reachable(nums)
        integers = sorted(int(v) for v in reachable if v.denominator == 1 and 1 <= v <= 1000)
        target = rng.choice(integers) if rng.random() < 0.6 else rng.randint(1, 1000)
        equation = data.solve_countdown(nums, target)
        if Fraction(target) in reachable:
            assert equation is not None, (nums, target)
            assert evaluate_equation(equation) == target
            assert _uses_each_number_once(equation, nums)
            solved += 1
        else:
            assert equation is None, (nums, target, equation)
            unsolved += 1
    assert solved >= 20 and unsolved >= 10  # both branches were exercised


@pytest.mark.parametrize(
    ("nums", "target"),
    [([23, 67, 2], 88), ([1, 3, 4, 6], 24), ([5, 5, 5, 1], 24), ([7, 7], 1), ([10, 2, 5], 1)],
)
def test_solver_hand_cases(nums, target):
    equation = data.solve_countdown(nums, target)
    assert equation is not None
    assert evaluate_equation(equation) == target
    assert _uses_each_number_once(equation, nums)


def test_solver_needs_fractions_when_integers_fail():
    # 24 from 1, 3, 4, 6 only via 6/(1-3/4): the exact rational search must find it.
    equation = data.solve_countdown([1, 3, 4, 6], 24)
    assert evaluate_equation(equation) == 24


def test_solver_reports_impossible_and_rejects_bad_input():
    assert data.solve_countdown([1, 1, 1], 100) is None
    assert data.solve_countdown([2, 3], 7) is None
    with pytest.raises(ValueError):
        data.solve_countdown([], 3)


def test_make_countdown_is_seeded_distinct_and_always_solvable():
    rows = data.make_countdown(200, seed=3)
    assert rows == data.make_countdown(200, seed=3)
    assert rows != data.make_countdown(200, seed=4)
    assert data.make_countdown(50, seed=3) == rows[:50]  # a larger n extends, never reshuffles
    data.validate_rows(rows, "countdown")
    assert len({(tuple(sorted(r["nums"])), r["target"]) for r in rows}) == len(rows)
    assert {len(r["nums"]) for r in rows} == {3, 4}
    for row in rows:
        assert all(1 <= x <= data.MAX_NUMBER for x in row["nums"])
        assert 1 <= row["target"] <= data.MAX_TARGET
        equation = data.solve_countdown(row["nums"], row["target"])
        assert equation is not None and evaluate_equation(equation) == row["target"]
        assert _uses_each_number_once(equation, row["nums"])
    assert {len(r["nums"]) for r in data.make_countdown(20, seed=1, n_numbers=(3,))} == {3}


# ---------------------------------------------------------------- warm-start traces


def test_countdown_traces_search_and_end_in_a_verified_equation_or_a_committed_guess():
    rows = data.make_countdown(300, seed=11)
    backtracks = gave_up = 0
    for row in rows:
        trace = data.countdown_trace(row["nums"], row["target"])
        match = THINK_TAG.match(trace)
        assert match, trace
        think, answer = match.groups()
        assert len(think) <= data.THINK_CHAR_BUDGET
        assert trace == data.countdown_trace(row["nums"], row["target"])  # deterministic
        backtracks += "Back up." in think
        if "Out of tries" in think:
            # a budgeted search that found nothing: failed tries, then the last one is the answer
            gave_up += 1
            tries = think.splitlines()[:-1]
            assert 2 <= len(tries) <= data.GIVE_UP_TRIES and all(t.endswith("Back up.") for t in tries)
            assert think.splitlines()[-1] == f"Out of tries, no {row['target']} yet. Best guess: {answer}."
            assert evaluate_equation(answer) != row["target"]
            assert countdown_reward(trace, row["target"], row["nums"]) < 1.0
            continue
        assert answer == data.solve_countdown(row["nums"], row["target"])
        assert evaluate_equation(answer) == row["target"] and _uses_each_number_once(answer, row["nums"])
        assert countdown_reward(trace, row["target"], row["nums"]) == 1.0
        assert f"Check: {answer} = {row['target']}" in think
        assert think.count("Back up.") <= 2
    assert backtracks >= 0.9 * len(rows)
    assert 0.15 <= gave_up / len(rows) <= 0.35  # GIVE_UP_SHARE = 0.25


def test_countdown_traces_without_give_ups_always_solve():
    for row in data.make_countdown(100, seed=5):
        trace = data.countdown_trace(row["nums"], row["target"], give_up_share=0.0)
        assert countdown_reward(trace, row["target"], row["nums"]) == 1.0


def test_countdown_trace_example_shape():
    trace = data.countdown_trace([23, 67, 2], 88)
    assert trace.startswith("<think>\nTry ") and trace.endswith("</answer>")
    assert "Correct.\n</think>\n<answer>" in trace
    with pytest.raises(ValueError, match="no solution"):
        data.countdown_trace([1, 1, 1], 100)


def test_offline_warmstart_traces_all_check_out():
    profile = get_profile("tiny")
    math_answers = {data.math_prompt(r["prompt"]): r["answer"] for s in data.SPLITS for r in data.load_math(profile, s)}
    for split in data.SPLITS:
        rows = data.load_warmstart(profile, split)
        assert {r["task"] for r in rows} == {"countdown", "math"}
        for row in rows:
            user, assistant = row["messages"]
            assert (user["role"], assistant["role"]) == ("user", "assistant")
            think, answer = THINK_TAG.match(assistant["content"]).groups()
            assert len(think) <= data.THINK_CHAR_BUDGET
            if row["task"] == "countdown":
                nums = json.loads(re.search(r"numbers (\[[\d, ]+\])", user["content"]).group(1))
                target = int(re.search(r"equals (\d+)\.", user["content"]).group(1))
                solved = countdown_reward(assistant["content"], target, nums) == 1.0
                assert solved or "Out of tries" in think
            else:
                assert answer == math_answers[user["content"]]
                assert answers_match(extract_answer(assistant["content"]), answer)


# ---------------------------------------------------------------- math problems


def test_math_problems_are_graded_distinct_and_exact():
    rows = data.make_math_problems(400, seed=5)
    assert rows == data.make_math_problems(400, seed=5)
    data.validate_rows(rows, "math")
    assert len({r["prompt"] for r in rows}) == len(rows)
    assert {r["difficulty"] for r in rows} == {1, 2, 3}
    for row in rows:
        assert re.fullmatch(r"-?\d+(/\d+)?", row["answer"]), row
        assert row["solution"].endswith(f"The answer is {row['answer']}.")
        expression = re.fullmatch(r"(?:What is|Compute) (.*?)[?.]", row["prompt"])
        if expression:  # plain arithmetic: check the answer with the course's own safe parser
            assert evaluate_equation(expression.group(1)) == Fraction(row["answer"])


def test_difficulty_one_is_small_and_one_step():
    for row in data.make_math_problems(300, seed=2):
        if row["difficulty"] == 1:
            numbers = [int(x) for x in re.findall(r"\d+", row["prompt"])]
            assert len(numbers) == 2 and max(numbers) <= 40, row["prompt"]
            assert row["solution"].count("=") == 1


def test_math_traces_end_in_the_answer():
    for problem in math_problems.sample_math_problems(300, seed=9):
        trace = math_problems.math_trace(problem)
        think, answer = THINK_TAG.match(trace).groups()
        assert answer == problem.answer and len(think) <= data.THINK_CHAR_BUDGET
        assert think.endswith(f"{problem.steps[-1].label.capitalize()}: {problem.steps[-1].text()}.")
        assert "Check:" not in think


# ---------------------------------------------------------------- instruction following


def test_instruction_examples_chosen_satisfies_rejected_fails():
    examples = data.make_instruction_examples(400, seed=1)
    assert len({e["prompt"] for e in examples}) == len(examples)
    kinds = {"+".join(sorted(e["constraints"])) for e in examples}
    assert {"max_words", "min_words", "num_bullets", "lowercase", "json_keys", "must_include"} <= kinds
    for e in examples:
        assert check_instruction_constraints(e["chosen"], e["constraints"]) == 1.0, e
        assert check_instruction_constraints(e["rejected"], e["constraints"]) < 1.0, e


def test_offline_instructions_and_preferences_are_checkable_and_disjoint():
    profile = get_profile("tiny")
    prompts = {}
    for task in ("instructions", "preferences"):
        prompts[task] = []
        for split in data.SPLITS:
            for row in data.load_task(task, profile, split):
                if task == "instructions":
                    user, answer = row["messages"]
                    assert check_instruction_constraints(answer["content"], row["constraints"]) == 1.0
                else:
                    user = row["prompt"][0]
                    assert check_instruction_constraints(row["chosen"][0]["content"], row["constraints"]) == 1.0
                    assert check_instruction_constraints(row["rejected"][0]["content"], row["constraints"]) < 1.0
                prompts[task].append(user["content"])
    assert not set(prompts["instructions"]) & set(prompts["preferences"])


# ---------------------------------------------------------------- validation


def test_validate_rows_names_row_and_field():
    good = {"nums": [1, 2, 3], "target": 6}
    with pytest.raises(ValueError, match=r"countdown row 2: missing field 'target'"):
        data.validate_rows([good, good, {"nums": [1, 2]}], "countdown")
    with pytest.raises(ValueError, match=r"row 1: field 'target' should be int, got str '6'"):
        data.validate_rows([good, {"nums": [1, 2, 3], "target": "6"}], "countdown")
    with pytest.raises(ValueError, match=r"row 0: field 'nums' should be list\[int\]"):
        data.validate_rows([{"nums": [1, 2.5], "target": 3}], "countdown")
    with pytest.raises(ValueError, match=r"row 0: field 'target' should be int, got bool"):
        data.validate_rows([{"nums": [1], "target": True}], "countdown")
    with pytest.raises(ValueError, match=r"row 0: field 'messages' should be list\["):
        data.validate_rows([{"messages": [{"role": "user"}], "task": "x"}], "warmstart")
    with pytest.raises(ValueError, match=r"my file row 0: expected a mapping"):
        data.validate_rows([["not", "a", "dict"]], {"prompt": str}, source="my file")
    data.validate_rows([good], data.SCHEMAS["countdown"])


# ---------------------------------------------------------------- splits


def test_train_validation_split_is_seeded_and_disjoint():
    ds = datasets.Dataset.from_dict({"i": list(range(50))})
    parts = data.train_validation_split(ds, seed=1)
    assert (len(parts["train"]), len(parts["validation"])) == (45, 5)
    train, validation = list(parts["train"]["i"]), list(parts["validation"]["i"])
    assert sorted(train + validation) == list(range(50))
    assert validation == list(data.train_validation_split(ds, seed=1)["validation"]["i"])
    assert validation != list(data.train_validation_split(ds, seed=2)["validation"]["i"])
    with pytest.raises(ValueError):
        data.train_validation_split(ds, fraction=1.0)


# ---------------------------------------------------------------- offline loaders


def _prompt_key(task: str, row: dict):
    return {
        "math": lambda r: r["prompt"],
        "countdown": lambda r: (tuple(sorted(r["nums"])), r["target"]),
        "warmstart": lambda r: r["messages"][0]["content"],
        "instructions": lambda r: r["messages"][0]["content"],
        "preferences": lambda r: r["prompt"][0]["content"],
    }[task](row)


@pytest.mark.parametrize("task", data.TASKS)
def test_offline_loader_schema_sizes_distinct_and_jsonl(task):
    profile = get_profile("tiny")
    splits = {split: data.load_task(task, "tiny", split) for split in data.SPLITS}
    for ds in splits.values():
        assert ds.features == data.FEATURES[task]
        data.validate_rows(ds, task)
    n = {"math": profile.n_math, "countdown": profile.n_countdown, "warmstart": profile.n_math + profile.n_countdown,
         "instructions": profile.n_instructions, "preferences": profile.n_preferences}[task]
    assert len(splits["train"]) + len(splits["validation"]) == n
    assert len(splits["validation"]) == round(0.1 * n)
    keys = [_prompt_key(task, r) for ds in splits.values() for r in ds]
    assert len(keys) == len(set(keys))  # no duplicates, and validation/test never appear in train
    path = profile.data_dir("generated") / f"{task}.jsonl"
    lines = path.read_text().splitlines()
    data.load_task(task, "tiny", "train")  # a second load overwrites, never appends
    assert path.read_text().splitlines() == lines
    assert len(lines) == sum(len(ds) for ds in splits.values())
    assert [json.loads(line)["split"] for line in lines[:1]] == ["train"]
    assert splits["train"].to_list() == data.load_task(task, "tiny", "train").to_list()


def test_load_task_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown task"):
        data.load_task("poetry", "tiny")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_task("math", "tiny", split="dev")
    with pytest.raises(ValueError, match="unknown Hub source"):
        data.load_task("math", "gpu", source="someone/else")


# ---------------------------------------------------------------- Hub normalizers


def test_normalize_gsm8k_row():
    row = {"question": "  Natalia sold 48 clips... ", "answer": "She sold 48/2 = <<48/2=24>>24 in May.\n#### 1,024"}
    out = data.normalize_gsm8k_row(row)
    assert out == {"prompt": "Natalia sold 48 clips...", "solution": "She sold 48/2 = 24 in May.\nThe answer is 1024.",
                   "answer": "1024", "difficulty": 0}
    with pytest.raises(ValueError, match="'answer'.*####"):
        data.normalize_gsm8k_row({"question": "q", "answer": "no final line"})
    with pytest.raises(ValueError, match="missing field 'question'"):
        data.normalize_gsm8k_row({"answer": "#### 3"})


def test_normalize_numina_openr1_math500_rows():
    numina = data.normalize_numina_row({"problem": "p", "solution": r"so \boxed{2} then \boxed{\frac{3}{4}}."})
    assert numina["answer"] == r"\frac{3}{4}"
    with pytest.raises(ValueError, match="boxed"):
        data.normalize_numina_row({"problem": "p", "solution": "no box"})
    assert data.normalize_openr1_row({"problem": "p", "solution": "s", "answer": " 7 "})["answer"] == "7"
    assert data.normalize_math500_row({"problem": "p", "solution": "s", "answer": "7", "level": 4})["difficulty"] == 4
    with pytest.raises(ValueError, match="boxed"):  # an unbalanced box is no answer
        data.normalize_numina_row({"problem": "p", "solution": r"so \boxed{1"})


def test_normalize_countdown_and_trace_rows():
    assert data.normalize_countdown_row({"nums": [1, 2, 3], "target": 6}) == {"nums": [1, 2, 3], "target": 6}
    with pytest.raises(ValueError, match="'target' should be int"):
        data.normalize_countdown_row({"nums": [1, 2, 3], "target": "6"})
    query = ("A conversation between User and Assistant.\nUser: Using the numbers [1, 2, 3], create an equation that "
             "equals 6. You can use basic arithmetic operations (+, -, *, /) and each number can only be used once.\n"
             "Assistant: Let me solve this step by step.\n<think>")
    out = data.normalize_cog_behav_row({"query": query, "completion": " 1+2+3=6 </think>\n<answer>1+2+3</answer>"})
    # the course's own wording of the same task, the prompt GRPO and notebook 01's leak check use
    assert out["messages"][0] == {"role": "user", "content": data.countdown_prompt([1, 2, 3], 6)}
    assistant = out["messages"][1]["content"]
    assert assistant.startswith("<think> 1+2+3=6")  # TinyZero's "Let me solve this step by step." is dropped
    assert has_valid_format(assistant)  # what SFT teaches, the format reward accepts
    with pytest.raises(ValueError, match="'query' has no Countdown task"):
        data.normalize_cog_behav_row({"query": "User: Using the numbers [1, 2, 3], make 6.\nAssistant: <think>",
                                      "completion": "</think>"})
    stratos = {"system": "sys", "conversations": [
        {"from": "user", "value": "What is 1+1?"},
        {"from": "assistant", "value": "<|begin_of_thought|>\nadd\n<|end_of_thought|>\n<|begin_of_solution|>\n2\n<|end_of_solution|>"}]}
    messages = data.normalize_bespoke_row(stratos)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == "<think>\nadd\n</think>\n<answer>\n2\n</answer>"


def test_normalize_chat_rows():
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert data.normalize_smoltalk_row({"messages": chat, "source": "x"}) == {"messages": chat[1:], "constraints": {}}
    out = data.normalize_ultrafeedback_row({"prompt": "hi", "chosen": chat[1:], "rejected": [chat[1], {"role": "assistant", "content": "no"}]})
    assert out == {"prompt": [chat[1]], "chosen": [chat[2]], "rejected": [{"role": "assistant", "content": "no"}], "constraints": {}}
    with pytest.raises(ValueError, match="'chosen' must end with an assistant message"):
        data.normalize_ultrafeedback_row({"prompt": "hi", "chosen": chat[:2], "rejected": chat})
    with pytest.raises(ValueError, match="'messages' has a message without a text 'role' and 'content'"):
        data.normalize_smoltalk_row({"messages": [{"role": "user"}]})
    with pytest.raises(ValueError, match="'conversations' has a turn"):
        data.normalize_bespoke_row({"conversations": ["just text"]})


# ---------------------------------------------------------------- the Hub path, on local files of the Hub's shape


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    """Write JSONL files shaped like a Hub dataset's splits; return a HubSource reading them."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")

    def make(source_id: str, splits: dict[str, list[dict]]) -> data.HubSource:
        files = {}
        for split, rows in splits.items():
            files[split] = str(tmp_path / f"{source_id.replace('/', '_')}_{split}.jsonl")
            with open(files[split], "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        return replace(data.HUB_SOURCES[source_id], path="json", name=None, data_files=files)

    return make


def _gsm8k_rows(n: int, start: int = 0) -> list[dict]:
    return [{"question": f"Q{i}: what is {i} + 1000?", "answer": f"{i} + 1000 = <<{i}+1000={i + 1000}>>{i + 1000}\n#### {i + 1000:,}"}
            for i in range(start, start + n)]


def test_hub_path_gsm8k_shape(local_hub):
    profile = get_profile("gpu")
    source = local_hub("openai/gsm8k", {"train": _gsm8k_rows(30), "test": _gsm8k_rows(12, start=100)})
    train = data.load_task("math", "gpu", "train", source=source)
    validation = data.load_math(profile, "validation", source=source)
    test = data.load_math(profile, "test", source=source)
    assert (len(train), len(validation), len(test)) == (27, 3, 12)
    assert train.features == data.FEATURES["math"]
    assert not set(list(train["prompt"])) & set(list(validation["prompt"]))
    row = next(r for r in train if r["prompt"].startswith("Q5:"))
    assert row["answer"] == "1005" and "<<" not in row["solution"]
    assert set(list(test["answer"])) == {str(1100 + i) for i in range(12)}


def test_hub_path_uses_a_validation_split_when_the_source_has_one(local_hub):
    source = local_hub("openai/gsm8k", {"train": _gsm8k_rows(20), "validation": _gsm8k_rows(5, start=50)})
    source = replace(source, splits={"train": "train", "validation": "validation"})
    assert len(data.load_math("gpu", "train", source=source)) == 20
    assert sorted(data.load_math("gpu", "validation", source=source)["answer"]) == [str(1050 + i) for i in range(5)]


def test_hub_path_carves_validation_and_test_when_missing(local_hub):
    rows = [{"nums": [i, i + 1, 2], "target": 2 * i + 3} for i in range(1, 41)]
    source = local_hub("Jiayi-Pan/Countdown-Tasks-3to4", {"train": rows})
    train, validation, test = (data.load_countdown("gpu", split, source=source).to_list() for split in data.SPLITS)
    assert (len(train), len(validation), len(test)) == (32, 4, 4)
    keys = [{str(r) for r in part} for part in (train, validation, test)]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])  # no row in two splits
    assert sorted(map(str, train + validation + test)) == sorted(map(str, rows))


def test_hub_path_ultrafeedback_split_names(local_hub):
    def pair(i):
        user = {"role": "user", "content": f"prompt {i}"}
        return {"prompt": f"prompt {i}", "chosen": [user, {"role": "assistant", "content": "good"}],
                "rejected": [user, {"role": "assistant", "content": "bad"}], "score_chosen": 8.0, "score_rejected": 2.0}

    source = local_hub("HuggingFaceH4/ultrafeedback_binarized",
                       {"train_prefs": [pair(i) for i in range(20)], "test_prefs": [pair(i) for i in range(20, 25)]})
    test = data.load_preferences("gpu", "test", source=source)
    assert len(test) == 5 and test[0]["chosen"] == [{"role": "assistant", "content": "good"}]
    assert test.features == data.FEATURES["preferences"]


def test_hub_path_malformed_row_names_row_and_field(local_hub):
    rows = _gsm8k_rows(10)
    rows[6] = {"question": "Q6 without an answer"}
    source = local_hub("openai/gsm8k", {"train": rows, "test": _gsm8k_rows(2)})
    with pytest.raises(ValueError, match=r"row 6: missing field 'answer'"):
        data.load_math("gpu", "train", source=source)
    # a Hub column has one type, so a wrong type shows up in whichever row comes first
    countdown = local_hub("Jiayi-Pan/Countdown-Tasks-3to4", {"train": [{"nums": [1, 2], "target": "3"}] * 4})
    with pytest.raises(ValueError, match=r"row \d: field 'target' should be int, got str"):
        data.load_countdown("gpu", "train", source=countdown)


def test_hub_path_rejects_missing_train_split_and_wrong_task(local_hub):
    math500 = local_hub("HuggingFaceH4/MATH-500", {"test": [{"problem": "p", "solution": "s", "answer": "1", "level": 1}]})
    assert data.load_math("gpu", "test", source=math500)[0]["difficulty"] == 1
    with pytest.raises(ValueError, match="no train split"):
        data.load_math("gpu", "train", source=math500)
    with pytest.raises(ValueError, match="holds math rows, not countdown rows"):
        data.load_countdown("gpu", "train", source=math500)


def test_hub_path_names_the_row_whose_query_has_no_countdown_task(local_hub):
    good = {"query": "User: Using the numbers [1, 2, 3], create an equation that equals 6.\nAssistant: <think>",
            "completion": " 1+2+3 </think>\n<answer>1+2+3</answer>"}
    rows = [good] * 6 + [{"query": "User: Write a poem.\nAssistant: <think>", "completion": "</think>"}] + [good] * 3
    source = local_hub("Asap7772/cog_behav_all_strategies", {"train": rows, "test": [good] * 2})
    with pytest.raises(ValueError, match=r"\[train\] row 6: field 'query' has no Countdown task"):
        data.load_warmstart("gpu", "train", source=source)


# ---------------------------------------------------------------- each Hub source, on a committed fixture of its layout

# tests/fixtures/hub/<owner>__<name>/: a README whose `configs` and `dataset_info` carry the dataset card's config,
# split and column names (and where each fact comes from), and a few JSONL rows per split
FIXTURES = Path(__file__).parent / "fixtures" / "hub"


@pytest.fixture
def hub_fixture(tmp_path, monkeypatch):
    """The gpu profile's own HubSource with only ``path`` swapped for the committed fixture: same config name,
    same split names, same ``datasets.load_dataset`` call."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")

    def source(source_id: str) -> data.HubSource:
        return replace(data.HUB_SOURCES[source_id], path=str(FIXTURES / source_id.replace("/", "__")))

    return source


def _splits(task: str, source: data.HubSource) -> dict[str, list[dict]]:
    return {split: data.load_task(task, "gpu", split, source=source).to_list() for split in data.SPLITS}


@pytest.mark.parametrize("source_id", sorted(data.HUB_SOURCES))
def test_every_hub_source_asks_for_a_config_and_splits_its_fixture_has(source_id, hub_fixture):
    source = hub_fixture(source_id)
    assert source.name in datasets.get_dataset_config_names(source.path) or source.name is None
    assert set(source.splits.values()) <= set(datasets.get_dataset_split_names(source.path, source.name))


def test_hub_fixture_gsm8k(hub_fixture):
    parts = _splits("math", hub_fixture("openai/gsm8k"))
    assert [len(parts[s]) for s in data.SPLITS] == [3, 1, 2]  # train carved 90/10 (one row at least), test as shipped
    row = next(r for r in parts["train"] + parts["validation"] if r["prompt"].startswith("A baker"))
    assert row == {"prompt": row["prompt"], "answer": "54", "difficulty": 0,
                   "solution": "In the afternoon he makes 36/2 = 18 muffins.\nIn total he makes 36+18 = 54 muffins.\n"
                               "The answer is 54."}
    assert sorted(r["answer"] for r in parts["test"]) == ["26", "85"]


def test_hub_fixture_numina_tir(hub_fixture):
    parts = _splits("math", hub_fixture("AI-MO/NuminaMath-TIR"))
    answers = {r["prompt"][:20]: r["answer"] for r in parts["train"] + parts["validation"]}
    assert answers["What is the coeffici"] == r"\frac{63}{400}" and answers["Solve for $x$: $2x +"] == "12"
    assert sorted(r["answer"] for r in parts["test"]) == ["120", "2"]
    assert all("```python" in r["solution"] for r in parts["test"])  # the tool-integrated solution is kept whole


def test_hub_fixture_openr1_has_only_a_train_split_to_carve(hub_fixture):
    parts = _splits("math", hub_fixture("open-r1/OpenR1-Math-220k"))
    assert [len(parts[s]) for s in data.SPLITS] == [8, 1, 1]
    answers = sorted((r["answer"] for rows in parts.values() for r in rows), key=int)
    assert answers == ["3", "3", "5", "10", "21", "24", "30", "35", "50", "60"]  # every row in exactly one split
    assert all("<think>" not in r["solution"] for rows in parts.values() for r in rows)  # the gold text, not a trace


def test_hub_fixture_math500_is_test_only(hub_fixture):
    source = hub_fixture("HuggingFaceH4/MATH-500")
    test = data.load_math("gpu", "test", source=source).to_list()
    assert sorted((r["difficulty"], r["answer"]) for r in test) == [
        (1, "26000"), (2, r"\left( 3, \frac{\pi}{2} \right)"), (3, "9")]
    with pytest.raises(ValueError, match="no train split"):
        data.load_math("gpu", "train", source=source)


def test_hub_fixture_countdown(hub_fixture):
    parts = _splits("countdown", hub_fixture("Jiayi-Pan/Countdown-Tasks-3to4"))
    assert [len(parts[s]) for s in data.SPLITS] == [8, 1, 1]
    assert {"nums": [44, 19, 35], "target": 98} in [r for rows in parts.values() for r in rows]
    assert {len(r["nums"]) for rows in parts.values() for r in rows} == {3, 4}


def test_hub_fixture_cog_behav_speaks_the_course_wording_and_starts_at_think(hub_fixture, monkeypatch):
    monkeypatch.setitem(data.HUB_SOURCES, "openai/gsm8k", hub_fixture("openai/gsm8k"))
    parts = _splits("warmstart", hub_fixture("Asap7772/cog_behav_all_strategies"))
    countdown = [r for rows in parts.values() for r in rows if r["task"] == "countdown"]
    assert len(countdown) == 6  # 3 + 1 carved from train, 2 in test
    for row in countdown:
        user, assistant = (m["content"] for m in row["messages"])
        nums = json.loads(re.search(r"numbers (\[[\d, ]+\])", user).group(1))
        assert user == data.countdown_prompt(nums, int(re.search(r"equals (\d+)\.", user).group(1)))
        assert assistant.startswith("<think> ") and has_valid_format(assistant)
    assert data.countdown_prompt([48, 28, 42, 2], 11) in {r["messages"][0]["content"] for r in parts["test"]}


def test_hub_warmstart_adds_math_traces_of_the_same_split(hub_fixture, monkeypatch):
    gsm8k = hub_fixture("openai/gsm8k")
    monkeypatch.setitem(data.HUB_SOURCES, "openai/gsm8k", gsm8k)
    monkeypatch.setitem(data.HUB_SOURCES, "Asap7772/cog_behav_all_strategies",
                        hub_fixture("Asap7772/cog_behav_all_strategies"))
    for split in data.SPLITS:
        rows = data.load_warmstart("gpu", split)  # the default sources, as the gpu profile loads them
        math = data.load_math("gpu", split, source=gsm8k).to_list()
        assert rows.features == data.FEATURES["warmstart"]
        tasks = list(rows["task"])
        assert tasks[:2] == ["countdown", "math"] and tasks.count("math") == len(math)  # interleaved, as offline
        traces = [r["messages"] for r in rows if r["task"] == "math"]
        assert traces == [[{"role": "user", "content": data.math_prompt(m["prompt"])},
                           {"role": "assistant", "content": data.reference_trace(m)}] for m in math]
        assert all(has_valid_format(t[1]["content"]) and extract_answer(t[1]["content"]) == m["answer"]
                   for t, m in zip(traces, math))


def test_hub_fixture_stratos_is_left_as_it_is(hub_fixture):
    parts = _splits("warmstart", hub_fixture("bespokelabs/Bespoke-Stratos-17k"))
    assert [len(parts[s]) for s in data.SPLITS] == [8, 1, 1]
    rows = [r for rows in parts.values() for r in rows]
    assert {r["task"] for r in rows} == {"stratos"}  # no math traces added: Stratos brings its own
    user, assistant = (m["content"] for m in rows[0]["messages"])
    assert user.startswith("Return your final response within \\boxed{}.")
    assert assistant.startswith("<think>\n\nOkay") and assistant.endswith("</answer>")


def test_hub_fixture_smoltalk_drops_system_turns(hub_fixture):
    parts = _splits("instructions", hub_fixture("HuggingFaceTB/smol-smoltalk"))
    rows = [r for rows in parts.values() for r in rows]
    assert [len(parts[s]) for s in data.SPLITS] == [2, 1, 2] and all(r["constraints"] == {} for r in rows)
    assert all(m["role"] != "system" for r in rows for m in r["messages"])
    assert max(len(r["messages"]) for r in rows) == 4  # a multi-turn conversation stays whole


def test_hub_fixture_ultrafeedback_reads_the_prefs_splits(hub_fixture):
    parts = _splits("preferences", hub_fixture("HuggingFaceH4/ultrafeedback_binarized"))
    assert [len(parts[s]) for s in data.SPLITS] == [2, 1, 2]  # train_prefs carved 90/10; test_prefs as shipped
    test = next(r for r in parts["test"] if r["prompt"] == [{"role": "user", "content": "How many legs does a spider have?"}])
    assert (test["chosen"], test["rejected"]) == ([{"role": "assistant", "content": "A spider has eight legs."}],
                                                  [{"role": "assistant", "content": "Spiders have six legs, like insects."}])


def test_hub_source_asking_for_a_missing_config_or_split_names_what_exists(hub_fixture):
    gsm8k = replace(hub_fixture("openai/gsm8k"), name="default")
    with pytest.raises(ValueError, match=r"has no config 'default'; its configs are \['main', 'socratic'\]"):
        data.load_math("gpu", "test", source=gsm8k)
    # UltraFeedback has no plain train/test: asking for them names its six splits
    ultrafeedback = replace(hub_fixture("HuggingFaceH4/ultrafeedback_binarized"), splits={"train": "train", "test": "test"})
    with pytest.raises(ValueError, match=r"no split 'train'; its splits are \['train_prefs', 'train_sft', 'test_prefs'"):
        data.load_preferences("gpu", "train", source=ultrafeedback)
