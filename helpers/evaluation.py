"""Evaluation: score completions (format rate, accuracy, length), compare before and after, pass@k, leaderboard.

Completions come from ``helpers.generation`` (batched, cached per model fingerprint); scores come from
``helpers.rewards``, the same functions the RL notebooks train on. ``paired_comparison`` is the one statistic
every before/after table uses: counts fixed and broken and a seeded bootstrap 95% interval over prompts.
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import PreTrainedTokenizerBase

from helpers import rewards
from helpers.chat import R1_SYSTEM_PROMPT, row_prompt, task_prompt
from helpers.data import task_of
from helpers.generation import GenerationCache, generate, generate_greedy_cached, sample_completions
from helpers.models import CheckpointNotFoundError, load_model, load_tokenizer, resolve_model_name
from helpers.tables import TextTable, text_table


def score_completion(completion: str, row: dict) -> dict:
    """Format, correctness, reasoning quality and length of one completion.

    Correct means: the exact Countdown check for ``nums``/``target`` rows, every constraint met for
    instruction rows (``constraints``), math-verify against ``answer`` otherwise.
    """
    task = task_of(row)
    if task == "countdown":
        correct = rewards.countdown_reward(completion, row["target"], row["nums"]) == 1.0
    elif task == "instructions":
        correct = rewards.check_instruction_constraints(completion, row["constraints"]) == 1.0
    else:
        correct = rewards.math_accuracy_reward([completion], answer=[row["answer"]])[0] == 1.0
    return {
        "format_ok": rewards.has_valid_format(completion),
        "correct": bool(correct),
        "reasoning_quality": rewards.reasoning_steps_reward([completion])[0],
        "length_chars": len(completion),
    }


def score_generations(completions: list[str], rows: list[dict]) -> pd.DataFrame:
    """One row per completion: the prompt's task fields, the completion and its scores."""
    if len(completions) % len(rows):
        raise ValueError(f"{len(completions)} completions do not divide evenly over {len(rows)} rows")
    per_row = len(completions) // len(rows)
    records = []
    for index, completion in enumerate(completions):
        row = rows[index // per_row]
        records.append({"prompt_index": index // per_row, **score_completion(completion, row), "completion": completion})
    return pd.DataFrame(records)


def summarize(scored: pd.DataFrame) -> dict:
    """Format rate, accuracy and mean completion length of a scored table."""
    return {
        "prompts": scored["prompt_index"].nunique(),
        "format_rate": float(scored["format_ok"].mean()),
        "accuracy": float(scored["correct"].mean()),
        "mean_length_chars": float(scored["length_chars"].mean()),
    }


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al., 2021): with ``n`` samples of which ``c`` are correct,
    the probability that at least one of ``k`` samples drawn without replacement is correct,
    ``1 - C(n - c, k) / C(n, k)``, computed as a product so large ``n`` does not overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss_all = 1.0
    for i in range(n - c + 1, n + 1):
        miss_all *= 1.0 - k / i
    return 1.0 - miss_all


# ---------------------------------------------------------------------------------------------
# Before/after on the same prompts: counts fixed and broken, a paired bootstrap interval
# ---------------------------------------------------------------------------------------------
STAGE_RESULT_COLUMNS = ["stage", "task", "metric", "n", "before", "after", "fixed", "broken", "ci_low", "ci_high",
                        "minutes"]
STAGE_RESULTS_FILE = "stage_results.csv"
STAGE_ORDER = ["sft", "grpo", "rloo", "dpo", "rs_sft", "distilled"]  # the course's order: the table reads top down


def bootstrap_interval(scores, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-prompt ``scores``: resample prompts with replacement
    (seeded), take each resample's mean, keep the middle ``confidence`` share. For one model's accuracy (error
    bars); ``paired_comparison`` applies it to the paired differences."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be non-empty and 1-D, got shape {scores.shape}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, 1_000):  # in blocks: 10,000 x 800 indices at once is 64 MB
        block = rng.integers(0, scores.size, size=(min(1_000, n_resamples - start), scores.size))
        means[start:start + len(block)] = scores[block].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def paired_comparison(before, after, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Compare two models on the same prompts: per-prompt scores ``before[i]`` and ``after[i]`` (0/1 for greedy
    correctness, a per-prompt pass rate for sampled accuracy).

    ``fixed`` / ``broken`` count the prompts whose score went up / down. The interval is a percentile bootstrap
    of the mean paired difference: resample prompts with replacement (seeded), take the mean of
    ``after - before`` on each resample, keep the middle ``confidence`` share. Pairing matters: the same
    prompt's two scores move together, so the interval of the difference is much narrower than two separate
    intervals would suggest. A change is a gain only when ``ci_low > 0``.
    """
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.shape != after.shape or before.ndim != 1 or before.size == 0:
        raise ValueError(f"before and after must be equal-length, non-empty 1-D scores, got {before.shape} and "
                         f"{after.shape}")
    diff = after - before
    low, high = bootstrap_interval(diff, n_resamples, confidence, seed)
    return {"n": int(diff.size), "before": float(before.mean()), "after": float(after.mean()),
            "fixed": int((diff > 0).sum()), "broken": int((diff < 0).sum()),
            "ci_low": float(low), "ci_high": float(high)}


def change_verdict(result: dict) -> str:
    """``'a gain'`` or ``'a loss'`` only when a ``paired_comparison`` result's interval excludes 0, else
    ``'no measurable change'``: the course's one rule for calling a change."""
    if result["ci_low"] > 0:
        return "a gain"
    if result["ci_high"] < 0:
        return "a loss"
    return "no measurable change"


def describe_change(result: dict, unit: str = "points") -> str:
    """One sentence for a ``paired_comparison`` result with its ``change_verdict``, e.g.
    ``'+12.5 points (95% CI +8.0 to +17.0): a gain'``."""
    delta = 100 * (result["after"] - result["before"])
    interval = f"95% CI {100 * result['ci_low']:+.1f} to {100 * result['ci_high']:+.1f}"
    return f"{delta:+.1f} {unit} ({interval}): {change_verdict(result)}"


def changed_answers(rows: list[dict], before: pd.DataFrame, after: pd.DataFrame, n: int = 4,
                    width: int = 250) -> TextTable:
    """The first ``n`` problems whose correctness differs between two scored runs on the same ``rows`` (frames
    with ``correct`` and ``completion``, one row per problem, as ``evaluate_model`` returns), question and both
    answers side by side: what a paired comparison's fixed and broken counts are made of."""
    changed = after.index[after["correct"] != before["correct"]][:n]
    return text_table(pd.DataFrame({"question": [rows[i]["prompt"][:120] for i in changed],
                                    "gold": [rows[i]["answer"] for i in changed],
                                    "before": before.loc[changed, "completion"].str.slice(0, width),
                                    "after": after.loc[changed, "completion"].str.slice(0, width)}))


def save_stage_result(profile, stage: str, task: str, metric: str, comparison: dict, minutes: float | None) -> pd.DataFrame:
    """Write one row of ``data/processed/<profile>/stage_results.csv`` (replacing the row of the same stage, task
    and metric, so re-running a notebook never appends twice) and return the whole table."""
    path = profile.data_dir("processed") / STAGE_RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=STAGE_RESULT_COLUMNS)
    keep = ~((table["stage"] == stage) & (table["task"] == task) & (table["metric"] == metric))
    row = {"stage": stage, "task": task, "metric": metric, **{k: comparison[k] for k in STAGE_RESULT_COLUMNS[3:10]},
           "minutes": None if minutes is None else round(minutes, 1)}
    table = pd.concat([table[keep], pd.DataFrame([row])], ignore_index=True)[STAGE_RESULT_COLUMNS]
    rank = table["stage"].map({name: i for i, name in enumerate(STAGE_ORDER)}).fillna(len(STAGE_ORDER))
    table = table.assign(_rank=rank).sort_values(["_rank", "task", "metric"], kind="stable").drop(columns="_rank")
    table = table.reset_index(drop=True)
    table.to_csv(path, index=False)
    return table


def stage_results_markdown(path: str | Path) -> str:
    """The committed stage results (``stage_results.csv``) as the README's Markdown table: rates in percent, the
    change with its paired 95% interval, and the verdict of ``describe_change``."""
    table = pd.read_csv(path)
    rows = []
    for _, r in table.iterrows():
        rows.append({"stage": r["stage"], "task": r["task"], "metric": r["metric"], "held-out problems": int(r["n"]),
                     "before": f"{100 * r['before']:.1f}%", "after": f"{100 * r['after']:.1f}%",
                     "fixed / broken": f"{int(r['fixed'])} / {int(r['broken'])}",
                     "change, 95% CI": describe_change(r.to_dict()),
                     "minutes": "–" if pd.isna(r["minutes"]) else f"{r['minutes']:.1f}"})
    return markdown_table(pd.DataFrame(rows), index=False)


def evaluate_model(model, tokenizer: PreTrainedTokenizerBase, rows: list[dict], max_new_tokens: int,
                   batch_size: int = 16, system_prompt: str | None = None,
                   cache_dir: str | Path | None = None) -> tuple[dict, pd.DataFrame]:
    """Greedy completions for ``rows`` (math, Countdown or instructions), scored: returns the summary and the per-row table.

    With ``cache_dir`` (notebooks pass ``profile.generation_cache_dir``), completions these exact weights
    already produced for these prompts are reused (``GenerationCache``). Instruction rows are asked without the
    R1 system prompt, as they are trained."""
    prompts = [row_prompt(row, system_prompt or R1_SYSTEM_PROMPT) for row in rows]
    if cache_dir is None:
        completions = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    else:
        completions = generate_greedy_cached(model, tokenizer, prompts, max_new_tokens, batch_size,
                                             GenerationCache(cache_dir))
    scored = score_generations(completions, rows)
    return summarize(scored), scored


def evaluate(name, rows: list[dict], task: str, profile, label: str | None = None, n_samples: int = 0,
             k_values: tuple[int, ...] = (1,), temperature: float = 0.8, max_new_tokens: int | None = None) -> dict:
    """Evaluate checkpoint ``name`` (profile name, folder or Hub id) on ``rows`` of ``task``: one metrics row.

    Greedy decoding gives accuracy, format rate, reasoning quality and length; ``n_samples`` sampled
    completions per prompt give pass@k for each ``k`` in ``k_values`` (k <= n_samples). Every completion
    is saved with its scores to ``data/processed/<profile>/eval_<label>_<task>.jsonl`` (overwritten). Greedy
    completions go through the profile's generation cache: weights evaluated before cost nothing.
    A missing checkpoint gives a row with ``status="missing"`` and no metrics, never zeros.
    """
    label = label or Path(str(name)).name
    try:
        resolve_model_name(name)
    except CheckpointNotFoundError:
        return {"model": label, "task": task, "status": "missing"}
    model, tokenizer = load_model(name), load_tokenizer(name)
    max_new_tokens = max_new_tokens or profile.max_new_tokens
    summary, scored = evaluate_model(model, tokenizer, rows, max_new_tokens, profile.eval_batch_size,
                                     cache_dir=profile.generation_cache_dir)
    scored["decoding"] = "greedy"
    row = {"model": label, "task": task, "status": "ok", **summary,
           "reasoning_quality": float(scored["reasoning_quality"].mean())}
    if n_samples:
        curve, sampled = pass_at_k_curve(model, tokenizer, rows, n_samples, k_values, max_new_tokens,
                                         temperature=temperature, batch_size=profile.eval_batch_size)
        row.update({f"pass@{k}": value for k, value in curve.items()})
        scored = pd.concat([scored, sampled.assign(decoding=f"sampled T={temperature}")], ignore_index=True)
    out_dir = profile.data_dir("processed")
    out_dir.mkdir(parents=True, exist_ok=True)
    scored.to_json(out_dir / f"eval_{label}_{task}.jsonl", orient="records", lines=True)
    return row


# ---------------------------------------------------------------------------------------------
# pass@k curves, the leaderboard as CSV and Markdown
# ---------------------------------------------------------------------------------------------


def majority_vote_correct(scored: pd.DataFrame, k: int) -> pd.Series:
    """Self-consistency (Wang et al., 2022), per problem: is the answer most of its first ``k`` samples give right?

    Answers are compared with ``answers_match`` (``0.75`` and ``3/4`` vote together); a sample with no answer does
    not vote; a tie goes to the answer given first; the problem counts as solved when the first sample giving the
    winning answer is correct. ``scored``: ``pass_at_k_curve``'s table (``prompt_index``, ``completion``,
    ``correct``), samples in the order drawn. Unlike best-of-k (pass@k), it needs no verifier."""
    solved = {}
    for index, group in scored.groupby("prompt_index", sort=True):
        votes: list[list] = []  # [answer, votes, whether its first sample is correct]
        for completion, correct in zip(group["completion"].head(k), group["correct"].head(k)):
            answer = rewards.extract_answer(completion)
            if answer is None:
                continue
            for vote in votes:
                if rewards.answers_match(answer, vote[0]):
                    vote[1] += 1
                    break
            else:
                votes.append([answer, 1, bool(correct)])
        winner = max(votes, key=lambda vote: vote[1]) if votes else None  # max keeps the first of equals
        solved[index] = float(bool(winner and winner[2]))
    return pd.Series(solved, name=f"majority of {k}")


def majority_vote_curve(scored: pd.DataFrame, k_values: tuple[int, ...]) -> dict[int, float]:
    """``majority_vote_correct``'s accuracy for each ``k``."""
    return {k: float(majority_vote_correct(scored, k).mean()) for k in k_values}


def pass_at_k_curve(model, tokenizer: PreTrainedTokenizerBase, rows: list[dict], n_samples: int,
                    k_values: tuple[int, ...], max_new_tokens: int, temperature: float = 0.8,
                    batch_size: int = 16, progress: bool = True, cache_dir: str | Path | None = None,
                    seed: int | None = None) -> tuple[dict, pd.DataFrame]:
    """``{k: pass@k}`` from ``n_samples`` sampled completions per row (the unbiased estimator, averaged
    over prompts), and the scored samples. ``batch_size`` counts prompts (each brings ``n_samples``).

    ``seed`` and ``cache_dir`` as in ``helpers.generation.sample_completions``."""
    if any(not 1 <= k <= n_samples for k in k_values):
        raise ValueError(f"every k must be between 1 and n_samples={n_samples}, got {k_values}")
    groups = sample_completions(model, tokenizer, [task_prompt(row) for row in rows], n_samples, max_new_tokens,
                                temperature=temperature, batch_size=batch_size, progress=progress,
                                cache_dir=cache_dir, seed=seed)
    scored = score_generations([text for group in groups for text in group], rows)
    correct = scored.groupby("prompt_index")["correct"].sum()
    curve = {k: float(correct.map(lambda c, k=k: pass_at_k(n_samples, int(c), k)).mean()) for k in k_values}
    return curve, scored


def math_scores(model, tokenizer: PreTrainedTokenizerBase, rows: list[dict], profile) -> dict:
    """What the RL notebooks compare before and after, per held-out problem: greedy correctness (0/1) and
    sampled accuracy (the share of ``profile.eval_samples`` samples at the training temperature and
    completion cap that are correct, the quantity RL optimizes), plus pass@k and the greedy summary.
    Both go through the profile's generation cache, so a model measured once is free the next time."""
    k_values = tuple(k for k in (1, 2, 4, 8, 16) if k <= profile.eval_samples)
    greedy, greedy_scored = evaluate_model(model, tokenizer, rows, profile.max_new_tokens, profile.eval_batch_size,
                                           cache_dir=profile.generation_cache_dir)
    curve, sampled_scored = pass_at_k_curve(model, tokenizer, rows, profile.eval_samples, k_values,
                                            profile.max_completion_length, temperature=profile.rl_temperature,
                                            batch_size=profile.eval_batch_size, cache_dir=profile.generation_cache_dir)
    return {"greedy": greedy, "greedy_correct": greedy_scored["correct"].astype(float), "greedy_scored": greedy_scored,
            "sampled_rate": sampled_scored.groupby("prompt_index")["correct"].mean(), "sampled_scored": sampled_scored,
            "pass@k": curve}


def pass_rate_filter(model, tokenizer: PreTrainedTokenizerBase, candidates: list[dict], profile) -> tuple[pd.Series, list[dict]]:
    """Choose RL training problems by the start model's measured pass rate (DAPO's dynamic sampling, done
    once and offline): ``profile.rl_pass_rate_samples`` samples per candidate at the training temperature and
    completion cap; a problem is kept when its pass rate is strictly between 0 and 1, the only problems whose
    groups carry a gradient. Returns the pass rate per candidate and the kept rows. Cached like ``math_scores``,
    so notebook 5, ``helpers.train grpo`` and ``scripts/grpo_sweep.py`` select from the same measurement."""
    _, scored = pass_at_k_curve(model, tokenizer, candidates, profile.rl_pass_rate_samples, (1,),
                                profile.max_completion_length, temperature=profile.rl_temperature,
                                batch_size=profile.eval_batch_size, cache_dir=profile.generation_cache_dir)
    pass_rate = scored.groupby("prompt_index")["correct"].mean().rename("pass rate")
    kept = [row for row, rate in zip(candidates, pass_rate) if 0 < rate < 1]
    return pass_rate, kept


def training_problems(kept: list[dict], candidates: list[dict], at_least: int) -> list[dict]:
    """The problems RL trains on: those ``pass_rate_filter`` kept, or every candidate when fewer than ``at_least``
    (one step's prompts) were kept, as with ``tiny``'s random model, which solves nothing: training on every
    candidate beats training on nothing."""
    return kept if len(kept) >= at_least else candidates


def leaderboard_wide(results: list[dict], metrics: tuple[str, ...] = ("accuracy", "format_rate")) -> pd.DataFrame:
    """One row per model (in the order first seen) with ``status`` and a ``<task> <metric>`` column per task
    and metric. ``status`` is ``ok`` (evaluated on every task), ``missing`` (on none: no checkpoint) or
    ``partial``; metrics that were not measured stay empty (NaN), never zero."""
    table = pd.DataFrame(results)
    models = list(dict.fromkeys(table["model"]))
    tasks = list(dict.fromkeys(table["task"]))
    wide = pd.DataFrame(index=pd.Index(models, name="model"))
    ok_tasks = table[table["status"] == "ok"].groupby("model")["task"].nunique().reindex(models).fillna(0)
    wide["status"] = ["ok" if n == len(tasks) else ("missing" if n == 0 else "partial") for n in ok_tasks]
    for task in tasks:
        part = table[table["task"] == task].set_index("model")
        for metric in metrics:
            values = part[metric] if metric in part else pd.Series(dtype=float)
            wide[f"{task} {metric}"] = pd.to_numeric(values.reindex(models), errors="coerce")
    return wide


def markdown_table(table: pd.DataFrame, float_format: str = "{:.3f}", missing: str = "–", index: bool = True) -> str:
    """A GitHub Markdown table (pandas' ``to_markdown`` needs ``tabulate``, which the course does not install).

    Floats use ``float_format``, empty cells (NaN/None) show ``missing``, ``|`` in text is escaped."""
    def cell(value) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return missing
        if isinstance(value, float):
            return float_format.format(value)
        return str(value).replace("|", "\\|").replace("\n", " ")

    names = ([table.index.name or ""] if index else []) + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(cell(n) for n in names) + " |",
             "|" + "|".join(["---"] * (len(names) - len(table.columns)) +
                            ["---:" if pd.api.types.is_numeric_dtype(table[c]) else "---" for c in table.columns]) + "|"]
    for label, row in table.iterrows():
        cells = ([cell(label)] if index else []) + [cell(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_leaderboard(table: pd.DataFrame, profile, name: str = "leaderboard") -> tuple[Path, Path]:
    """Write ``table`` to ``data/processed/<profile>/<name>.csv`` and ``.md`` (overwriting); return both paths."""
    out_dir = profile.data_dir("processed")
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    table.to_csv(csv_path)
    md_path.write_text(markdown_table(table), encoding="utf-8")
    return csv_path, md_path


# ---------------------------------------------------------------------------------------------
# Error analysis: format, arithmetic or reasoning
# ---------------------------------------------------------------------------------------------


FAILURE_TYPES = ("correct", "format", "arithmetic", "reasoning")
_MAX_CHECKED_CHARS = 5_000  # reasoning text looked at per completion
_MAX_CHECKED_EQUATIONS = 200
_EXPRESSION_CHARS = set("0123456789+-*/(). ")
_THOUSANDS_SEP_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_DECIMAL_RE = re.compile(r"(\d+)\.(\d+)")


def _exact(expression: str):
    """The exact value of an arithmetic expression (decimals allowed), or None; via ``rewards.evaluate_equation``."""
    expression = expression.strip()
    if not expression or expression[-1] == ".":
        return None
    integral = _DECIMAL_RE.sub(lambda m: f"({m.group(1)}{m.group(2)}/1{'0' * len(m.group(2))})", expression)
    return rewards.evaluate_equation(integral)


def _operands(expression: str) -> int:
    return len(rewards.equation_numbers(_DECIMAL_RE.sub(r"\1", expression)))


def reasoning_text(completion: str) -> str:
    """The reasoning of a completion: inside ``<think>`` (up to ``</think>`` or ``<answer>``), else the text
    before the last ``<answer>``, else all of it."""
    start = completion.find("<think>")
    if start >= 0:
        rest = completion[start + len("<think>"):]
        ends = [i for i in (rest.find("</think>"), rest.find("<answer>")) if i >= 0]
        return rest[: min(ends)] if ends else rest
    answer = completion.rfind("<answer>")
    return completion[:answer] if answer >= 0 else completion


def arithmetic_checks(text: str) -> list[dict]:
    """Every ``expression = number`` in ``text`` with at least two numbers on the left, checked exactly:
    ``[{"equation", "claimed", "actual", "ok"}, ...]``.

    The left side is the longest arithmetic run (digits, ``+ - * /``, parentheses, decimals) that parses,
    the right side the longest that parses; a claimed decimal is allowed its own rounding (``10/3=3.33``
    is fine). Thousands separators are dropped first. Nothing is ever ``eval``-ed: values come from
    ``helpers.rewards.evaluate_equation``.
    """
    text = _THOUSANDS_SEP_RE.sub("", str(text)[:_MAX_CHECKED_CHARS])
    for old, new in (("×", "*"), ("÷", "/"), ("−", "-"), ("\\times", "*"), ("\\cdot", "*"), ("\\div", "/")):
        text = text.replace(old, new)
    checks: list[dict] = []
    for position, char in enumerate(text):
        if char != "=" or len(checks) >= _MAX_CHECKED_EQUATIONS:
            continue
        if (position and text[position - 1] in "<>!=") or text[position + 1: position + 2] == "=":
            continue
        begin = position
        while begin > 0 and text[begin - 1] in _EXPRESSION_CHARS:
            begin -= 1
        end = position + 1
        while end < len(text) and text[end] in _EXPRESSION_CHARS:
            end += 1
        left_run, right_run = text[begin:position], text[position + 1:end]
        left = next((left_run[i:] for i in range(len(left_run))
                     if left_run[i] in "0123456789(-" and (i == 0 or not left_run[i - 1].isdigit())
                     and _exact(left_run[i:]) is not None and _operands(left_run[i:]) >= 2), None)
        if left is None:
            continue
        right = next((right_run[:j] for j in range(len(right_run), 0, -1)
                      if right_run[j - 1] in "0123456789)" and _exact(right_run[:j]) is not None), None)
        if right is None:
            continue
        actual, claimed = _exact(left), _exact(right)
        decimals = max((len(m.group(2)) for m in _DECIMAL_RE.finditer(right)), default=None)
        tolerance = Fraction(1, 2 * 10**decimals) if decimals is not None and "/" not in right and _operands(right) == 1 else 0
        checks.append({"equation": f"{left.strip()}={right.strip()}", "claimed": float(claimed), "actual": float(actual),
                       "ok": abs(actual - claimed) <= tolerance})
    return checks


def _has_parsable_answer(completion: str, row: dict) -> bool:
    if task_of(row) == "countdown":
        return rewards.countdown_reward(completion, row["target"], row["nums"]) > 0.0
    end = completion.rfind("</answer>")
    start = completion.rfind("<answer>", 0, end) if end >= 0 else -1
    return start >= 0 and any(c.isdigit() for c in completion[start + len("<answer>"):end])


def classify_failure(completion: str, row: dict, correct: bool | None = None) -> str:
    """One of ``FAILURE_TYPES`` for a math or Countdown completion:

    - ``correct``: the answer is right (``correct`` if given, else scored with ``score_completion``);
    - ``format``: no parsable answer: no ``<answer>`` block with a number in it (math), no well-formed
      equation in ``<answer>`` (Countdown); truncated completions land here too;
    - ``arithmetic``: an answer, but an equation inside the reasoning (``<think>``) is wrong, e.g. ``7*8=54``;
    - ``reasoning``: an answer, arithmetic that checks out, and still wrong: the plan was wrong.
    """
    completion = rewards.completion_text(completion)
    if correct is None:
        correct = score_completion(completion, row)["correct"]
    if correct:
        return "correct"
    if not _has_parsable_answer(completion, row):
        return "format"
    if any(not check["ok"] for check in arithmetic_checks(reasoning_text(completion))):
        return "arithmetic"
    return "reasoning"


def label_failures(scored: pd.DataFrame, rows: list[dict]) -> pd.Series:
    """``classify_failure`` for every completion of a scored table (``prompt_index`` points into ``rows``)."""
    return pd.Series([classify_failure(text, rows[int(i)], bool(ok)) for text, i, ok in
                      zip(scored["completion"], scored["prompt_index"], scored["correct"])],
                     index=scored.index, name="failure", dtype=object)


def failure_table(scored_by_model: dict[str, pd.DataFrame], rows: list[dict], share: bool = True) -> pd.DataFrame:
    """One row per model, one column per ``FAILURE_TYPES`` entry: the share (or count) of its completions."""
    counts = {model: label_failures(scored, rows).value_counts() for model, scored in scored_by_model.items()}
    table = pd.DataFrame(counts).T.reindex(columns=list(FAILURE_TYPES)).fillna(0).astype(int)
    table.index.name = "model"
    return table.div(table.sum(axis=1).where(lambda s: s > 0), axis=0) if share else table
