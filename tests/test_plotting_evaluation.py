"""The evaluation figures: metric bars (missing is not zero), pass@k curves, failure breakdown."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers.plotting import (
    FAILURE_COLORS,
    plot_failure_breakdown,
    plot_inference_scaling,
    plot_metric_bars,
    plot_pass_at_k,
)

TABLE = pd.DataFrame(
    {"status": ["ok", "missing", "ok"], "math accuracy": [0.2, np.nan, 0.6], "math format_rate": [0.5, np.nan, 1.0]},
    index=pd.Index(["initial", "dpo", "grpo"], name="model"),
)


def test_metric_bars_mark_missing_models_instead_of_drawing_zero():
    fig = plot_metric_bars(TABLE, {"math accuracy": "math accuracy", "math format_rate": "format", "absent": "x"})
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == 2  # the absent column is skipped
    ax = axes[0]
    assert [round(p.get_height(), 3) for p in ax.patches] == [0.2, 0.0, 0.6]
    texts = [t.get_text() for t in ax.texts]
    assert "missing" in texts and "0.60" in texts and "0.00" not in texts
    assert [t.get_text() for t in ax.get_xticklabels()] == ["initial", "dpo", "grpo"]
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_metric_bars(TABLE, {"nope": "nope"})


def test_metric_bars_draw_intervals_and_a_y_range_that_shows_the_differences():
    bounds = pd.DataFrame({"low": [0.15, np.nan, 0.5], "high": [0.27, np.nan, 0.7]}, index=TABLE.index)
    fig = plot_metric_bars(TABLE, {"math accuracy": "math accuracy"}, intervals={"math accuracy": bounds})
    ax = fig.axes[0]
    segments = ax.collections[0].get_segments()  # one vertical error bar per model that has a value
    assert [tuple(np.round(seg[:, 1], 2)) for seg in segments] == [(0.15, 0.27), (0.5, 0.7)]
    assert ax.get_ylim()[1] == pytest.approx(0.7 * 1.15)  # not 0-1: 0.2 against 0.6 must be readable
    plt.close(fig)


def test_pass_at_k_draws_one_line_per_model_with_a_curve():
    fig = plot_pass_at_k({"sft": {1: 0.2, 2: 0.3, 4: 0.45}, "grpo": {1: 0.4, 2: 0.5, 4: 0.55}, "dpo": {}})
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["sft", "grpo"]
    assert list(ax.lines[0].get_xdata()) == [1, 2, 4] and list(ax.lines[1].get_ydata()) == [0.4, 0.5, 0.55]
    plt.close(fig)
    same = {f"model {i}": {1: 0.5, 2: 0.6} for i in range(6)}  # identical curves must not hide each other
    lines = plot_pass_at_k(same).axes[0].lines
    assert len({(line.get_marker(), line.get_linestyle(), line.get_markersize()) for line in lines}) == 6
    with pytest.raises(ValueError):
        plot_pass_at_k({"dpo": {}})


def test_failure_breakdown_stacks_shares_per_model():
    shares = pd.DataFrame({"correct": [0.5, 0.0], "format": [0.25, 1.0], "arithmetic": [0.25, 0.0], "reasoning": [0.0, 0.0]},
                          index=["sft", "initial"])
    fig = plot_failure_breakdown(shares)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 4
    assert [t.get_text() for t in ax.get_yticklabels()] == ["sft", "initial"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(FAILURE_COLORS)
    widths = [round(p.get_width(), 2) for p in ax.patches]
    assert widths == [0.5, 0.0, 0.25, 1.0, 0.25, 0.0, 0.0, 0.0]
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_failure_breakdown(pd.DataFrame({"other": [1.0]}))


def test_rejection_sampling_figure_counts_prompts_by_verified_samples():
    from helpers.plotting import plot_rejection_sampling

    scored = pd.DataFrame({"prompt_index": [0, 0, 1, 1, 2, 2], "correct": [True, True, True, False, False, False],
                           "format_ok": [True, True, True, True, True, False], "length_chars": [30, 20, 40, 5, 5, 5]})
    kept = scored.iloc[[1, 2]]
    fig = plot_rejection_sampling(scored, kept, n_samples=2)
    ax_count, ax_len = fig.axes
    assert [p.get_height() for p in ax_count.patches] == [1, 1, 1]  # one prompt each with 0, 1 and 2 verified
    assert "2 of 3 prompts" in ax_count.get_title()
    assert [t.get_text() for t in ax_len.get_legend().get_texts()] == ["all verified (3)", "kept, shortest per prompt (2)"]
    plt.close(fig)
    empty = plot_rejection_sampling(scored.assign(correct=False), kept.iloc[:0], n_samples=2)
    assert "no verified sample" in [t.get_text() for t in empty.axes[1].texts]
    plt.close(empty)


def test_inference_scaling_draws_a_panel_per_model_with_each_method():
    table = pd.DataFrame({"greedy": [0.3, 0.3, 0.3], "majority vote": [0.2, 0.25, 0.35],
                          "best-of-k (verifier)": [0.2, 0.4, 0.6]}, index=pd.Index([1, 2, 4], name="k"))
    fig = plot_inference_scaling({"sft": table, "grpo": table * 1.1})
    axes = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in axes] == ["sft", "grpo"]
    assert [line.get_label() for line in axes[0].lines] == list(table.columns)
    assert list(axes[1].lines[2].get_ydata()) == pytest.approx([0.22, 0.44, 0.66])
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["1", "2", "4"]
    plt.close(fig)
    with pytest.raises(ValueError):
        plot_inference_scaling({})
