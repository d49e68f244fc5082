"""The course's figures: saved where the profile says, drawing what the data says."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

import helpers.config
from helpers.config import get_profile
from helpers.plotting import (
    MASKED_COLOR,
    PADDING_COLOR,
    TRAINED_COLOR,
    plot_batch_layout,
    plot_label_mask,
    plot_token_lengths,
    save_figure,
)


def test_save_figure_writes_a_png_under_the_profile_and_overwrites(tmp_path, monkeypatch):
    monkeypatch.setattr(helpers.config, "FIGURE_DIR", tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = save_figure(fig, "00_line", get_profile("tiny"))
    assert path == tmp_path / "tiny" / "00_line.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    save_figure(fig, "00_line", get_profile("tiny"))  # a re-run replaces the file, never adds a second one
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == ["00_line.png"]
    plt.close(fig)


def test_label_mask_colours_one_box_per_token_by_its_label():
    tokens = ["<|im_start|>", "user", "\n", "Hi", "<|im_end|>", "Hello", " there", "<|im_end|>"]
    labels = [-100, -100, -100, -100, -100, 9, 10, 2]
    fig = plot_label_mask(tokens, labels, title="demo")
    ax = fig.axes[0]
    colours = [to_hex(patch.get_facecolor()) for patch in ax.patches]
    assert colours == [MASKED_COLOR] * 5 + [TRAINED_COLOR] * 3
    texts = [text.get_text() for text in ax.texts]
    assert texts == ["<|im_start|>", "user", "\\n", "Hi", "<|im_end|>", "Hello", "␣there", "<|im_end|>"]
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["trained: label = token id (3)", "masked: label = -100 (5)"]
    plt.close(fig)


def test_label_mask_wraps_long_conversations_into_rows():
    fig = plot_label_mask(["word"] * 50, [-100] * 50, chars_per_row=20)
    rows = {round(patch.get_y(), 3) for patch in fig.axes[0].patches}
    assert len(rows) == 13  # 4 boxes of 4.8 characters fit in a row of 20
    plt.close(fig)


def test_label_mask_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 tokens but 2 labels"):
        plot_label_mask(["a", "b", "c"], [1, 2])


def test_batch_layout_tells_trained_masked_and_padding_apart():
    attention = [[1, 1, 1, 1], [1, 1, 0, 0]]
    labels = [[-100, -100, 5, 6], [-100, 7, -100, -100]]
    fig = plot_batch_layout(attention, labels)
    ax = fig.axes[0]
    image = ax.images[0].get_array()
    np.testing.assert_array_equal(image, [[1, 1, 2, 2], [1, 2, 0, 0]])
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["trained (3)", "masked, label -100 (3)", "padding, attention 0 (2)"]
    assert [to_hex(c) for c in ax.images[0].get_cmap().colors] == [PADDING_COLOR, MASKED_COLOR, TRAINED_COLOR]
    assert [label.get_text() for label in ax.get_yticklabels()] == ["example 0", "example 1"]
    plt.close(fig)


def test_batch_layout_names_the_rows():
    fig = plot_batch_layout([[1, 0]], [[5, -100]], row_labels=["short"])
    assert [label.get_text() for label in fig.axes[0].get_yticklabels()] == ["short"]
    plt.close(fig)
    with pytest.raises(ValueError, match="2 row labels for a batch of 1"):
        plot_batch_layout([[1, 0]], [[5, -100]], row_labels=["a", "b"])


def test_batch_layout_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same 2-D shape"):
        plot_batch_layout([[1, 1]], [[1, 1, 1]])


def test_token_lengths_draws_one_panel_per_task_and_one_histogram_per_part():
    lengths = {
        "math": {"prompt": [10, 12, 12, 15], "completion": [30, 31, 40, 41]},
        "countdown": {"prompt": [20, 21, 22], "completion": []},  # RL task: nothing to imitate
        "empty": {"prompt": []},
    }
    fig = plot_token_lengths(lengths, limits={"budget": 35})
    assert [ax.get_title() for ax in fig.axes] == ["math (4 rows)", "countdown (3 rows)"]
    math_ax, countdown_ax = fig.axes
    math_counts = [int(sum(p.get_height() for p in c)) for c in math_ax.containers]
    assert math_counts == [4, 4]
    assert len(countdown_ax.containers) == 1
    # a part keeps its colour across panels, and the limit is drawn in each panel
    assert to_hex(math_ax.containers[0][0].get_facecolor()) == to_hex(countdown_ax.containers[0][0].get_facecolor())
    assert all([line.get_xdata()[0] for line in ax.lines] == [35] for ax in (math_ax, countdown_ax))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["prompt", "completion", "budget"]
    plt.close(fig)


def test_token_lengths_puts_the_legend_in_a_free_panel():
    lengths = {name: {"prompt": [1, 2], "completion": [3]} for name in "abcd"}  # 4 panels on a 3 x 2 grid
    fig = plot_token_lengths(lengths, limits={"budget": 4})
    assert len(fig.axes) == 5  # the sixth slot is removed, the fifth holds the legend
    assert [t.get_text() for t in fig.axes[4].get_legend().get_texts()] == ["prompt", "completion", "budget"]
    assert not fig.legends
    plt.close(fig)


def test_token_lengths_needs_something_to_plot():
    with pytest.raises(ValueError, match="no lengths"):
        plot_token_lengths({"math": {"prompt": []}})


def test_plot_curves_skips_missing_columns_and_rejects_none():
    import pandas as pd
    import pytest

    from helpers.plotting import plot_curves

    history = pd.DataFrame({"step": [1, 2, 3], "reward": [0.1, 0.2, 0.4], "kl": [None, None, None]})
    fig = plot_curves(history, {"reward": "mean reward", "kl": "KL", "absent": "absent"}, "GRPO")
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == ["mean reward"]
    with pytest.raises(ValueError, match="none of the columns"):
        plot_curves(history, {"absent": "absent"}, "GRPO")


def test_plot_curves_names_flat_columns_instead_of_drawing_them_and_uses_whole_steps():
    import pandas as pd

    from helpers.plotting import plot_curves

    history = pd.DataFrame({"step": [1, 2, 3], "reward": [0.1, 0.2, 0.4], "loss": [0.5, 0.3, 0.2],
                            "frac_reward_zero_std": [0.0, 0.0, 0.0]})
    fig = plot_curves(history, {"reward": "mean reward", "loss": "loss", "frac_reward_zero_std": "zero-variance share"},
                      "GRPO")
    assert [ax.get_title() for ax in fig.axes if ax.lines] == ["mean reward", "loss"]
    assert "constant, not drawn: zero-variance share = 0" in fig._suptitle.get_text()
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    # all flat: drawn anyway, an empty figure would say nothing
    flat = plot_curves(history, {"frac_reward_zero_std": "zero-variance share"}, "GRPO")
    assert [ax.get_title() for ax in flat.axes if ax.lines] == ["zero-variance share"]


def test_plot_curves_overlays_columns_runs_smoothing_and_a_reference_line():
    import pandas as pd

    from helpers.plotting import plot_curves

    dpo = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [0.69, 0.6, 0.5, 0.45],
                        "rewards/chosen": [0.0, 0.1, 0.2, 0.3], "rewards/rejected": [0.0, -0.1, -0.2, -0.2]})
    fig = plot_curves(dpo, {"loss": "DPO loss", ("rewards/chosen", "rewards/rejected"): "implicit rewards"}, "DPO",
                      reference={"loss": (0.6931, "log 2")})
    loss_ax, rewards_ax = fig.axes[:2]
    assert [line.get_label() for line in rewards_ax.lines] == ["rewards/chosen", "rewards/rejected"]
    assert loss_ax.get_legend() is not None and [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["log 2"]
    assert loss_ax.lines[-1].get_ydata()[0] == 0.6931

    # two runs on one panel, each smoothed: a faint per-step line and its running mean per run
    second = dpo.assign(loss=dpo["loss"] + 0.1)
    fig = plot_curves({"teacher": dpo, "student": second}, {"loss": "loss"}, "SFT", smooth=2)
    (ax,) = fig.axes
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["teacher, mean of 2 steps", "student, mean of 2 steps"]
    assert len(ax.lines) == 4
    assert list(ax.lines[1].get_ydata()) == [0.69, (0.69 + 0.6) / 2, (0.6 + 0.5) / 2, (0.5 + 0.45) / 2]
