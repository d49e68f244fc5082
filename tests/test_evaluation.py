"""Generation and scoring: pass@k against a direct computation, scoring per task, missing checkpoints."""

import itertools
import json
from math import comb

import pandas as pd
import pytest
import torch

from helpers.config import get_profile
from helpers.evaluation import evaluate, generate, pass_at_k, score_completion, score_generations, summarize
from helpers.models import load_model, load_tokenizer


def pass_at_k_by_enumeration(n, c, k):
    """Directly: the share of all k-subsets of the n samples that contain a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n, c, k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 1, 6), (8, 3, 4), (10, 0, 5), (7, 7, 2)])
def test_pass_at_k_matches_enumeration(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(pass_at_k_by_enumeration(n, c, k))
    assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k))


def test_pass_at_1_is_the_share_correct_and_large_n_is_stable():
    assert pass_at_k(20, 5, 1) == pytest.approx(0.25)
    assert 0.0 < pass_at_k(2000, 1, 10) < 0.01 and pass_at_k(2000, 1990, 10) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_scoring_per_task():
    good = "<think>\nStep 1: 3*5=15.\nStep 2: 15+7=22.\n</think>\n<answer>3*5+7</answer>"
    assert score_completion(good, {"nums": [3, 5, 7], "target": 22})["correct"]
    assert not score_completion(good.replace("3*5+7", "3*5"), {"nums": [3, 5, 7], "target": 22})["correct"]
    math = score_completion("<think>2+2=4</think>\n<answer>4</answer>", {"prompt": "2+2?", "answer": "4"})
    assert math["correct"] and math["format_ok"]
    rule = {"prompt": "Describe tea.", "constraints": {"lowercase": True}}
    assert score_completion("green tea is calm.", rule)["correct"]
    assert not score_completion("Green tea is calm.", rule)["correct"]


def test_score_generations_groups_samples_by_prompt():
    rows = [{"prompt": "1+1?", "answer": "2"}, {"prompt": "2+2?", "answer": "4"}]
    completions = ["<answer>2</answer>", "<answer>3</answer>", "<answer>5</answer>", "<answer>4</answer>"]
    scored = score_generations(completions, rows)
    assert scored["prompt_index"].tolist() == [0, 0, 1, 1]
    assert scored["correct"].tolist() == [True, False, False, True]
    assert summarize(scored)["accuracy"] == 0.5 and summarize(scored)["prompts"] == 2
    with pytest.raises(ValueError, match="divide evenly"):
        score_generations(completions[:3], rows)


@pytest.mark.slow
def test_generate_stops_at_end_of_turn_and_returns_one_text_per_sample():
    model, tokenizer = load_model("tiny"), load_tokenizer("tiny")
    prompts = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "a much longer prompt here"}]]
    greedy = generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=2, progress=False)
    assert len(greedy) == 2 and tokenizer.padding_side == "right"  # restored after left-padded generation
    sampled = generate(model, tokenizer, prompts, max_new_tokens=4, do_sample=True, num_return_sequences=3, progress=False)
    assert len(sampled) == 6
    assert all("<|im_end|>" not in text for text in greedy + sampled)


def test_evaluate_saves_completions_and_reports_missing_checkpoints(tmp_path):
    profile = get_profile("tiny")
    rows = [{"prompt": "1+1?", "answer": "2"}, {"prompt": "2+3?", "answer": "5"}]
    row = evaluate("tiny", rows, "math", profile, label="initial", n_samples=2, k_values=(1, 2), max_new_tokens=3)
    assert row["status"] == "ok" and row["prompts"] == 2
    assert 0.0 <= row["pass@1"] <= row["pass@2"] <= 1.0
    saved = (profile.data_dir("processed") / "eval_initial_math.jsonl").read_text().splitlines()
    assert len(saved) == 2 + 2 * 2 and {"completion", "correct", "decoding"} <= set(json.loads(saved[0]))
    missing = evaluate(tmp_path / "no-such-model", rows, "math", profile, label="dpo")
    assert missing == {"model": "dpo", "task": "math", "status": "missing"}


@pytest.mark.slow
def test_weights_fingerprint_follows_the_weights_not_the_object(tmp_path):
    from helpers.generation import weights_fingerprint
    from helpers.models import save_model

    model, tokenizer = load_model("tiny"), load_tokenizer("tiny")
    save_model(model, tmp_path / "copy", tokenizer)
    reloaded = load_model(tmp_path / "copy")
    assert weights_fingerprint(reloaded) == weights_fingerprint(model)
    with torch.no_grad():
        next(reloaded.parameters()).view(-1)[0] += 1e-3
    assert weights_fingerprint(reloaded) != weights_fingerprint(model)


@pytest.mark.slow
def test_cached_evaluation_matches_a_fresh_one_and_generates_only_what_is_new(tmp_path, monkeypatch):
    import helpers.generation as generation
    from helpers.evaluation import evaluate_model

    model, tokenizer = load_model("tiny"), load_tokenizer("tiny")
    rows = [{"prompt": f"{a}+{a}?", "answer": str(2 * a)} for a in range(5)]
    # fresh runs in the batches the cached runs below will generate (padding depends on the batch)
    fresh = [evaluate_model(model, tokenizer, part, max_new_tokens=6, batch_size=5)[1]["completion"].tolist()
             for part in (rows[:3], rows[3:])]
    generated = []
    real_generate = generation.generate

    def counting_generate(model, tokenizer, prompts, **kwargs):
        generated.extend(prompts)
        return real_generate(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(generation, "generate", counting_generate)
    _, first = evaluate_model(model, tokenizer, rows[:3], max_new_tokens=6, batch_size=5, cache_dir=tmp_path)
    assert len(generated) == 3 and first["completion"].tolist() == fresh[0]
    generated.clear()
    summary, cached = evaluate_model(model, tokenizer, rows + rows[:1], max_new_tokens=6, batch_size=5,
                                     cache_dir=tmp_path)
    assert len(generated) == 2  # rows 3 and 4; rows 0-2 and the repeated row 0 come from the cache
    assert cached["completion"].tolist() == fresh[0] + fresh[1] + fresh[0][:1]
    assert summary["prompts"] == 6
    generated.clear()
    evaluate_model(model, tokenizer, rows, max_new_tokens=7, batch_size=5, cache_dir=tmp_path)
    assert len(generated) == 5  # another token budget is another key


@pytest.mark.slow
def test_cached_sampling_equals_the_same_seeded_call_and_keys_on_every_setting(tmp_path, monkeypatch):
    import helpers.generation as generation
    from helpers.evaluation import pass_at_k_curve

    model, tokenizer = load_model("tiny"), load_tokenizer("tiny")
    rows = [{"prompt": f"{a}+{a}?", "answer": str(2 * a)} for a in range(3)]
    settings = dict(n_samples=2, k_values=(1, 2), max_new_tokens=5, temperature=1.0, batch_size=3)
    _, fresh = pass_at_k_curve(model, tokenizer, rows, seed=7, progress=False, **settings)
    _, fresh_again = pass_at_k_curve(model, tokenizer, rows, seed=7, progress=False, **settings)
    assert fresh["completion"].tolist() == fresh_again["completion"].tolist()  # a seed fixes the samples
    calls = []
    real_generate = generation.generate

    def counting_generate(*args, **kwargs):
        calls.append(kwargs.get("num_return_sequences"))
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(generation, "generate", counting_generate)
    curve, first = pass_at_k_curve(model, tokenizer, rows, seed=7, cache_dir=tmp_path, progress=False, **settings)
    curve_again, cached = pass_at_k_curve(model, tokenizer, rows, seed=7, cache_dir=tmp_path, progress=False,
                                          **settings)
    assert calls == [2]  # the second call came from the cache
    assert first["completion"].tolist() == fresh["completion"].tolist() == cached["completion"].tolist()
    assert curve == curve_again
    for changed in ({"seed": 8}, {"temperature": 0.5}, {"max_new_tokens": 6}, {"batch_size": 2}):
        pass_at_k_curve(model, tokenizer, rows, cache_dir=tmp_path, progress=False,
                        **{**settings, "seed": 7, **changed})
    assert calls == [2] * 5  # each setting is a key of its own
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    pass_at_k_curve(model, tokenizer, rows, seed=7, cache_dir=tmp_path, progress=False, **settings)
    assert len(calls) == 6  # other weights: generated again


def test_pass_rate_filter_keeps_only_mixed_problems(tmp_path, monkeypatch):
    import dataclasses

    import helpers.generation as generation
    from helpers.evaluation import pass_rate_filter

    profile = dataclasses.replace(get_profile("tiny"), rl_pass_rate_samples=2)
    monkeypatch.setattr(type(profile), "generation_cache_dir", property(lambda self: tmp_path))
    rows = [{"prompt": "always", "answer": "1"}, {"prompt": "never", "answer": "1"}, {"prompt": "half", "answer": "1"}]
    answers = {"always": ["1", "1"], "never": ["2", "3"], "half": ["1", "2"]}

    def fake_generate(model, tokenizer, prompts, **kwargs):
        def answers_to(prompt):
            return next(group for word, group in answers.items() if word in prompt[-1]["content"])

        return [f"<think>x</think>\n<answer>{a}</answer>" for p in prompts for a in answers_to(p)]

    monkeypatch.setattr(generation, "generate", fake_generate)
    monkeypatch.setattr(generation, "weights_fingerprint", lambda model: "fake")
    pass_rate, kept = pass_rate_filter(None, load_tokenizer("tiny"), rows, profile)
    assert pass_rate.tolist() == [1.0, 0.0, 0.5]
    assert kept == [rows[2]]


def test_generation_cache_skips_a_line_cut_short(tmp_path):
    from helpers.generation import GenerationCache

    cache = GenerationCache(tmp_path)
    cache.add("abc", {"k1": "one", "k2": "two"})
    with (tmp_path / "abc.jsonl").open("a") as handle:
        handle.write('{"key": "k3", "compl')  # an interrupted write
    assert cache.load("abc") == {"k1": "one", "k2": "two"}
    assert cache.load("unknown") == {}
    cache.add("abc", {"k4": "four"})  # the next run appends after the broken line, not onto it
    assert cache.load("abc") == {"k1": "one", "k2": "two", "k4": "four"}


# --------------------------------------------------------------------------------------------
# paired_comparison: counts and the bootstrap interval
# --------------------------------------------------------------------------------------------
from helpers.evaluation import change_verdict, describe_change, paired_comparison, save_stage_result  # noqa: E402


def test_paired_comparison_by_hand():
    """Two prompts, one fixed: a resample of the differences [1, 0] has mean 0 (both picks the 0, p = 1/4),
    0.5 (p = 1/2) or 1 (p = 1/4), so the 2.5% and 97.5% quantiles are 0 and 1."""
    result = paired_comparison([0, 1], [1, 1])
    assert result == {"n": 2, "before": 0.5, "after": 1.0, "fixed": 1, "broken": 0, "ci_low": 0.0, "ci_high": 1.0}


def test_paired_comparison_counts_and_a_certain_change():
    result = paired_comparison([0, 0, 1, 1], [1, 1, 1, 1])  # every difference is >= 0, two are 1
    assert (result["fixed"], result["broken"]) == (2, 0)
    assert result["ci_low"] >= 0.0 and result["ci_high"] == 1.0
    same = paired_comparison([0, 1, 0, 1], [0, 1, 0, 1])
    assert same["ci_low"] == same["ci_high"] == 0.0 and same["fixed"] == same["broken"] == 0


def test_paired_comparison_matches_the_normal_approximation():
    """200 prompts, 30 fixed, 10 broken: mean difference 0.1, sd of the differences sqrt(0.2 - 0.01), so the
    normal interval is 0.1 +- 1.96 * 0.4359 / sqrt(200) = [0.0396, 0.1604]; the bootstrap lands close."""
    before = [0] * 30 + [1] * 10 + [0] * 80 + [1] * 80
    after = [1] * 30 + [0] * 10 + [0] * 80 + [1] * 80
    result = paired_comparison(before, after)
    assert result["after"] - result["before"] == pytest.approx(0.1)
    assert result["ci_low"] == pytest.approx(0.0396, abs=0.01) and result["ci_high"] == pytest.approx(0.1604, abs=0.01)
    assert paired_comparison(before, after) == result  # seeded


def test_paired_comparison_on_sampled_rates_and_bad_input():
    result = paired_comparison([0.25, 0.5, 0.0], [0.75, 0.5, 0.25])
    assert (result["fixed"], result["broken"]) == (2, 0) and result["after"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        paired_comparison([0, 1], [1])
    with pytest.raises(ValueError):
        paired_comparison([], [])


def test_describe_change_calls_a_gain_only_outside_zero():
    assert describe_change({"before": 0.3, "after": 0.4, "ci_low": 0.02, "ci_high": 0.18}).endswith("a gain")
    assert describe_change({"before": 0.3, "after": 0.32, "ci_low": -0.02, "ci_high": 0.06}).endswith(
        "no measurable change")
    assert describe_change({"before": 0.3, "after": 0.2, "ci_low": -0.15, "ci_high": -0.05}).endswith("a loss")


def test_change_verdict_at_the_interval_edges():
    """An interval that touches 0 is not a gain or a loss: only one that excludes it."""
    assert change_verdict({"ci_low": 0.0, "ci_high": 0.1}) == "no measurable change"
    assert change_verdict({"ci_low": -0.1, "ci_high": 0.0}) == "no measurable change"
    assert change_verdict({"ci_low": 0.005, "ci_high": 0.1}) == "a gain"
    assert change_verdict({"ci_low": -0.1, "ci_high": -0.005}) == "a loss"


def test_save_stage_result_replaces_its_own_row(tmp_path, monkeypatch):
    import helpers.config as config

    monkeypatch.setattr(config, "DATA_DIR", tmp_path)
    profile = get_profile("tiny")
    first = paired_comparison([0, 1], [1, 1])
    save_stage_result(profile, "grpo", "math", "greedy", first, 1.0)
    save_stage_result(profile, "grpo", "math", "sampled", first, 1.0)
    table = save_stage_result(profile, "grpo", "math", "greedy", paired_comparison([1, 1], [0, 1]), 2.0)
    assert len(table) == 2
    greedy = table[table["metric"] == "greedy"].iloc[0]
    assert (greedy["broken"], greedy["minutes"]) == (1, 2.0)
    assert list(table.columns) == ["stage", "task", "metric", "n", "before", "after", "fixed", "broken", "ci_low",
                                   "ci_high", "minutes"]
    table = save_stage_result(profile, "sft", "math", "greedy", first, 1.0)  # written last, listed first
    assert list(table["stage"]) == ["sft", "grpo", "grpo"]
    assert list(table["metric"]) == ["greedy", "greedy", "sampled"]


@pytest.mark.parametrize("name", ["stage-results", "leaderboard", "grpo-step-cost", "grpo-step-cost-fp32", "grpo-sweep",
                                  "bf16-sampling-gap"])
def test_readme_results_come_from_the_committed_result_files(name):
    """Each README result block is what ``helpers.readme`` renders from the committed file, so it cannot go stale."""
    from helpers.readme import BLOCKS, README, RESULTS_DIR, block

    readme = README.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->\n", f"<!-- {name}:end -->"
    assert (RESULTS_DIR / BLOCKS[name][0]).exists(), f"{BLOCKS[name][0]} is not committed"
    assert start in readme and end in readme
    assert readme.split(start, 1)[1].split(end, 1)[0].strip() == block(name)


def test_readme_blocks_are_replaced_in_place(tmp_path):
    from helpers.readme import render_readme

    (tmp_path / "stage_results.csv").write_text(
        "stage,task,metric,n,before,after,fixed,broken,ci_low,ci_high,minutes\n"
        "sft,math,greedy,2,0.0,0.5,1,0,0.0,1.0,1.0\n")
    text = "intro\n<!-- stage-results:start -->\nold\n<!-- stage-results:end -->\nrest\n<!-- grpo-sweep:start -->\nx\n<!-- grpo-sweep:end -->\n"
    rendered = render_readme(text, tmp_path)
    assert rendered.startswith("intro\n<!-- stage-results:start -->\n| stage |") and "old" not in rendered
    assert "+50.0 points" in rendered and rendered.count("rest") == 1
    assert "(no `grpo_sweep.csv` committed yet)" in rendered
    assert render_readme(rendered, tmp_path) == rendered  # rendering twice changes nothing


def test_stage_results_markdown(tmp_path):
    from helpers.evaluation import stage_results_markdown

    path = tmp_path / "stage_results.csv"
    import pandas as pd

    pd.DataFrame([{"stage": "grpo", "task": "math", "metric": "sampled", "n": 200, "before": 0.2, "after": 0.35,
                   "fixed": 60, "broken": 10, "ci_low": 0.1, "ci_high": 0.2, "minutes": 19.04}]).to_csv(path, index=False)
    text = stage_results_markdown(path)
    assert "| grpo | math | sampled | 200 | 20.0% | 35.0% | 60 / 10 | +15.0 points (95% CI +10.0 to +20.0): a gain | 19.0 |" in text


@pytest.mark.slow
def test_several_samples_per_prompt_read_the_prompt_once_and_change_nothing():
    """generate(num_return_sequences=k) reads each prompt once and copies its cache; greedy copies must then
    equal k greedy runs of the prompt alone, on prompts of different lengths (left padding)."""
    model, tokenizer = load_model("tiny"), load_tokenizer("tiny")
    prompts = [[{"role": "user", "content": "Count"}], [{"role": "user", "content": "Count to five, slowly, please"}]]
    single = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=2, progress=False)
    copied = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=2, num_return_sequences=3, progress=False)
    assert copied == [single[0]] * 3 + [single[1]] * 3
    torch.manual_seed(0)
    sampled = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=2, do_sample=True,
                       num_return_sequences=4, progress=False)
    assert len(sampled) == 8 and all(isinstance(text, str) for text in sampled)
    assert len(set(sampled)) > 2  # sampling still samples: the copies of a prompt are not all alike


@pytest.mark.slow
def test_decoding_ignores_the_checkpoints_sampling_defaults():
    """Qwen2.5-Instruct ships top_k 20, top_p 0.8, temperature 0.7 and a repetition penalty in its
    generation_config.json; greedy must still be the argmax and sampling the model's own distribution."""
    import warnings

    from helpers.config import seed_everything
    from helpers.rl import sample_group

    tokenizer, clean, qwen_like = load_tokenizer("tiny"), load_model("tiny"), load_model("tiny")
    qwen_like.generation_config.update(do_sample=True, top_k=1, top_p=0.5, temperature=0.1, repetition_penalty=50.0)
    prompts = [[{"role": "user", "content": f"Count to {n}"}] for n in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "do_sample is False but temperature is set" noise either
        assert generate(qwen_like, tokenizer, prompts, max_new_tokens=8, progress=False) == \
            generate(clean, tokenizer, prompts, max_new_tokens=8, progress=False)
    sampled = []
    for model in (qwen_like, clean):
        seed_everything(3)
        sampled.append(generate(model, tokenizer, prompts, max_new_tokens=8, do_sample=True, temperature=1.0,
                                num_return_sequences=2, progress=False))
        seed_everything(3)
        sampled.append(sample_group(model, tokenizer, prompts[0], 3, 8)["completions"])
    assert sampled[0] == sampled[2] and sampled[1] == sampled[3]
    # and no flag transformers would log as unused ("generation flags are not valid") in either mode
    from transformers import GenerationConfig

    from helpers.generation import decoding_kwargs

    GenerationConfig(**decoding_kwargs(False)).validate(strict=True)
    GenerationConfig(**decoding_kwargs(True, temperature=0.9)).validate(strict=True)


def test_majority_vote_counts_equal_answers_together_and_breaks_ties_by_order():
    from helpers.evaluation import majority_vote_correct, majority_vote_curve

    scored = pd.DataFrame({
        "prompt_index": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],
        "completion": ["<answer>3/4</answer>", "<answer>5</answer>", "<answer>0.75</answer>", "<answer>5</answer>",
                       "<answer>8</answer>", "<answer>7</answer>", "<answer>7</answer>", "<answer>8</answer>",
                       "no answer here", "<answer>9</answer>", "", "<answer>2</answer>"],
        "correct": [True, False, True, False, False, True, True, False, False, False, False, True],
    })
    curve = majority_vote_curve(scored, (1, 2, 4))
    # k=1: only each first sample votes: problem 0 right, 1 wrong, 2 wrong ("no answer here": its last line is its answer)
    assert curve[1] == pytest.approx(1 / 3)
    # k=2: 0 ties 3/4 against 5 -> 3/4 (first) right; 1 ties 8 against 7 -> 8 wrong; 2 ties -> wrong
    assert curve[2] == pytest.approx(1 / 3)
    # k=4: 0.75 joins 3/4 (2 votes against 5's 2, first wins: right); 1: 7 and 8 tie 2-2, 8 first: wrong;
    # 2: "no answer here", 9 and 2 one vote each, the first wins: wrong
    assert curve[4] == pytest.approx(1 / 3)
    assert majority_vote_correct(scored, 4).tolist() == [1.0, 0.0, 0.0]
    flipped = scored.copy()
    flipped.loc[7, ["completion", "correct"]] = ["<answer>7</answer>", True]
    assert majority_vote_curve(flipped, (4,))[4] == pytest.approx(2 / 3)  # 7 now has 3 votes on problem 1


def test_bootstrap_interval_of_an_accuracy_matches_the_normal_approximation():
    from helpers.evaluation import bootstrap_interval, paired_comparison

    correct = [1.0] * 60 + [0.0] * 140  # 30% of 200
    low, high = bootstrap_interval(correct)
    half_width = 1.96 * (0.3 * 0.7 / 200) ** 0.5  # 0.0635
    assert low == pytest.approx(0.3 - half_width, abs=0.01) and high == pytest.approx(0.3 + half_width, abs=0.01)
    before = [0.0] * 100 + [1.0] * 100
    after = correct
    result = paired_comparison(before, after)
    assert (result["ci_low"], result["ci_high"]) == bootstrap_interval([a - b for a, b in zip(after, before)])
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_changed_answers_shows_only_the_problems_whose_correctness_moved():
    import pandas as pd

    from helpers.evaluation import changed_answers

    rows = [{"prompt": f"question {i}", "answer": str(i)} for i in range(5)]
    before = pd.DataFrame({"correct": [True, False, True, False, True], "completion": [f"b{i}" for i in range(5)]})
    after = pd.DataFrame({"correct": [True, True, False, False, True], "completion": ["a" * 300] + [f"a{i}" for i in range(1, 5)]})
    table = changed_answers(rows, before, after).frame
    assert list(table.index) == [1, 2]
    assert table.loc[1].tolist() == ["question 1", "1", "b1", "a1"]
    assert changed_answers(rows, before, after, n=1).frame.index.tolist() == [1]
    wide = changed_answers(rows, before.assign(correct=False), after, width=10).frame
    assert wide.loc[0, "after"] == "a" * 10


def test_evaluate_model_asks_instruction_rows_without_the_r1_system_prompt_and_checks_their_constraints(monkeypatch):
    import helpers.evaluation as evaluation
    from helpers.chat import R1_SYSTEM_PROMPT

    asked = []

    def fake_generate(model, tokenizer, prompts, max_new_tokens, batch_size):
        asked.extend(prompts)
        return ["all lowercase here", "Not Lowercase", "<think>2+2=4</think>\n<answer>4</answer>"]

    monkeypatch.setattr(evaluation, "generate", fake_generate)
    rows = [{"messages": [{"role": "user", "content": "Say it in lowercase."}], "constraints": {"lowercase": True}}] * 2
    rows.append({"prompt": "What is 2 + 2?", "solution": "2+2=4", "answer": "4", "difficulty": 1})
    _, scored = evaluation.evaluate_model(None, None, rows, max_new_tokens=8)
    assert scored["correct"].tolist() == [True, False, True]
    assert [p[0]["role"] for p in asked] == ["user", "user", "system"]
    assert asked[2][0]["content"] == R1_SYSTEM_PROMPT


@pytest.mark.parametrize("bf16", [False, True])
def test_sampler_hands_out_a_merged_copy_in_bf16_only_where_bf16_is_native(bf16, monkeypatch):
    """Sampling uses a copy with the LoRA adapter merged in, in eval mode, in bf16 where the CPU has native bf16;
    the float32 model that training updates is left as it was, and the generation cache keeps the bf16 copy's
    completions apart."""
    import helpers.generation as generation
    from helpers.training import lora_config

    monkeypatch.setattr(generation, "cpu_bf16_enabled", lambda: bf16)
    from peft import get_peft_model

    policy = get_peft_model(load_model("tiny"), lora_config(r=4, alpha=8))
    fingerprint = generation.cache_fingerprint(policy)
    assert fingerprint.endswith("-bf16") is bf16
    with generation.sampler(policy) as decoder:
        assert decoder is not policy and not decoder.training
        assert {p.dtype for p in decoder.parameters()} == {torch.bfloat16 if bf16 else torch.float32}
        assert not any("lora" in name for name, _ in decoder.named_parameters())  # merged: a plain network
    plain = load_model("tiny")
    with generation.sampler(plain) as decoder:
        assert (decoder is plain) is not bf16  # a plain float32 model samples as it is where bf16 is not native
    assert {p.dtype for p in policy.parameters()} == {torch.float32}
    assert any("lora" in name for name, _ in policy.named_parameters())
    texts = generation.generate(policy, load_tokenizer("tiny"), [[{"role": "user", "content": "1+1?"}]],
                                max_new_tokens=4, progress=False)
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_training_problems_are_the_kept_ones_unless_too_few_for_a_step():
    from helpers.evaluation import training_problems

    candidates = [{"prompt": str(i)} for i in range(6)]
    kept = candidates[1:4]
    assert training_problems(kept, candidates, at_least=3) is kept
    assert training_problems(kept, candidates, at_least=4) is candidates  # fewer than one step's prompts
    assert training_problems([], candidates, at_least=1) is candidates
