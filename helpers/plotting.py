"""The course's figures: every plot is saved as PNG under ``figures/<profile>/``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

from helpers.config import Profile

# Figures shown in a notebook are embedded in it as PNG: at 72 dots per inch (matplotlib's default is 100) they
# cost half the bytes and still fill a notebook's width; the copy saved under figures/ keeps 110.
plt.rcParams["figure.dpi"] = 72


def save_figure(fig: plt.Figure, name: str, profile: Profile) -> Path:
    """Save ``fig`` as ``figures/<profile>/<name>.png`` (overwriting, so re-runs never pile up) and return the path."""
    out_dir = profile.figure_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


IGNORE_INDEX = -100  # the label that removes a token from the loss (as in helpers.chat)
TRAINED_COLOR = "#7fd18b"
MASKED_COLOR = "#dddddd"
PADDING_COLOR = "#ffffff"


def _show_token(token: str) -> str:
    """A token as it reads in a figure: newlines as ``\\n``, tabs as ``\\t``, spaces as ``␣``."""
    return token.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "␣") or "∅"


def plot_label_mask(tokens: list[str], labels: list[int], title: str | None = None, chars_per_row: int = 72) -> plt.Figure:
    """One tokenized conversation as a strip of token boxes: trained tokens green, masked (label -100) grey.

    ``tokens`` are the decoded tokens (one string each) and ``labels`` their labels, as returned by
    ``helpers.chat.tokenize_conversation``. Rows wrap after about ``chars_per_row`` characters.
    """
    if len(tokens) != len(labels):
        raise ValueError(f"got {len(tokens)} tokens but {len(labels)} labels")
    boxes = []  # (row, x, width, text, trained)
    row, x = 0, 0.0
    for token, label in zip(tokens, labels):
        text = _show_token(token)
        width = len(text) + 0.8
        if x > 0 and x + width > chars_per_row:
            row, x = row + 1, 0.0
        boxes.append((row, x, width, text, label != IGNORE_INDEX))
        x += width
    n_rows = row + 1
    fig, ax = plt.subplots(figsize=(chars_per_row * 0.105, 0.34 * n_rows + 0.7))
    for row, x, width, text, trained in boxes:
        ax.add_patch(plt.Rectangle((x, -row - 0.9), width - 0.2, 0.8, color=TRAINED_COLOR if trained else MASKED_COLOR))
        ax.text(x + (width - 0.2) / 2, -row - 0.5, text, ha="center", va="center", fontsize=8,
                family="DejaVu Sans Mono", parse_math=False)
    ax.set_xlim(0, chars_per_row)
    ax.set_ylim(-n_rows - 0.1, 0)
    ax.axis("off")
    n_trained = sum(trained for *_, trained in boxes)
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=TRAINED_COLOR), plt.Rectangle((0, 0), 1, 1, color=MASKED_COLOR)],
              labels=[f"trained: label = token id ({n_trained})", f"masked: label = -100 ({len(boxes) - n_trained})"],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False, fontsize=9)
    if title:
        ax.set_title(title, pad=24, fontsize=10)
    return fig


def plot_batch_layout(attention_mask, labels, title: str | None = None, row_labels: list[str] | None = None) -> plt.Figure:
    """A padded batch as a grid (one row per example, one column per position): trained, masked, padding.

    ``attention_mask`` and ``labels`` are the collator's ``(batch, length)`` tensors or nested lists;
    ``row_labels`` names the examples (default ``example 0``, ``example 1``, ...).
    """
    attention = np.asarray(attention_mask)
    targets = np.asarray(labels)
    if attention.shape != targets.shape or attention.ndim != 2:
        raise ValueError(f"attention_mask {attention.shape} and labels {targets.shape} must be the same 2-D shape")
    kind = np.where(attention == 0, 0, np.where(targets == IGNORE_INDEX, 1, 2))  # 0 pad, 1 masked, 2 trained
    batch, length = kind.shape
    fig, ax = plt.subplots(figsize=(min(12, 1.5 + 0.09 * length), 0.8 + 0.35 * batch))
    ax.imshow(kind, cmap=ListedColormap([PADDING_COLOR, MASKED_COLOR, TRAINED_COLOR]), vmin=0, vmax=2,
              aspect="auto", interpolation="nearest")
    if length <= 64:  # a grid line per position while the cells are wide enough to see
        ax.set_xticks(np.arange(-0.5, length, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, batch, 1), minor=True)
    ax.grid(which="minor", color="#999999", linewidth=0.3)
    ax.tick_params(which="minor", length=0)
    ax.set_yticks(range(batch))
    if row_labels is not None and len(row_labels) != batch:
        raise ValueError(f"got {len(row_labels)} row labels for a batch of {batch}")
    ax.set_yticklabels(row_labels or [f"example {i}" for i in range(batch)])
    ax.set_xlabel("position")
    counts = [int((kind == k).sum()) for k in (2, 1, 0)]
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="#999999")
                       for c in (TRAINED_COLOR, MASKED_COLOR, PADDING_COLOR)],
              labels=[f"trained ({counts[0]})", f"masked, label -100 ({counts[1]})", f"padding, attention 0 ({counts[2]})"],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=9)
    if title:
        ax.set_title(title, pad=24, fontsize=10)
    return fig


def plot_token_lengths(lengths: dict[str, dict[str, list[int]]], limits: dict[str, int] | None = None,
                       ncols: int = 3) -> plt.Figure:
    """Token-length histograms, one panel per task and one histogram per part of a row.

    ``lengths`` maps a task to ``{part: [tokens per row]}`` (e.g. ``{"math": {"prompt": [...],
    "completion": [...]}}``); a part keeps its colour in every panel. ``limits`` (``{label: tokens}``)
    draws a dashed line in every panel, e.g. the generation budget a completion has to fit.
    """
    tasks = [task for task, parts in lengths.items() if any(len(v) for v in parts.values())]
    if not tasks:
        raise ValueError("no lengths to plot")
    part_names = list(dict.fromkeys(part for task in tasks for part, values in lengths[task].items() if len(values)))
    colours = {part: f"C{i}" for i, part in enumerate(part_names)}
    ncols = min(ncols, len(tasks))
    nrows = -(-len(tasks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        parts = {part: np.asarray(values) for part, values in lengths[task].items() if len(values)}
        low = min(int(v.min()) for v in parts.values())
        high = max(int(v.max()) for v in parts.values())
        bins = np.linspace(low, high + 1, min(30, high - low + 2))
        for part, values in parts.items():
            ax.hist(values, bins=bins, alpha=0.6, color=colours[part], label=part)
        for i, (label, value) in enumerate((limits or {}).items()):
            ax.axvline(value, color="k", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=label)
        n_rows = max(len(v) for v in parts.values())
        ax.set_title(f"{task} ({n_rows} rows)", fontsize=10)
        ax.set_xlabel("tokens")
        ax.set_ylabel("rows")
    handles = {}
    for ax in axes.flat[: len(tasks)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    order = [label for label in handles if label in colours] + [label for label in handles if label not in colours]
    spare = list(axes.flat)[len(tasks):]
    for ax in spare[1:]:
        ax.remove()
    if spare:  # the legend fills the first empty panel
        spare[0].axis("off")
        spare[0].legend([handles[label] for label in order], order, loc="center", frameon=False)
    else:
        fig.legend([handles[label] for label in order], order, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                   ncol=min(6, len(order)), frameon=False)
    fig.tight_layout()
    return fig


def plot_curves(history, panels: dict, title: str, x: str = "step", ncols: int = 3, smooth: int | None = None,
                reference: Mapping[str, tuple[float, str]] | None = None) -> plt.Figure:
    """One small panel per logged metric: ``panels`` maps a history column to its panel title.

    Columns the trainer did not log are skipped, so the same call works across profiles and configs; a column
    that never changes is not drawn (a flat line carries no reading) but named with its value in the title.

    For comparisons: a panel's key may be a tuple of columns drawn together (DPO's chosen and rejected rewards);
    ``history`` may map run names to histories, each drawn on every panel (two SFT runs' losses). ``smooth=n``
    draws the per-step points faint under their mean over ``n`` steps; ``reference`` maps a column to a
    ``(value, label)`` line (DPO's log 2).
    """
    runs = dict(history) if isinstance(history, Mapping) else {"": history}

    def series(key) -> list[tuple[str, str, pd.DataFrame]]:
        """(run, column, rows) for each run that logged each of the key's columns."""
        columns = key if isinstance(key, tuple) else (key,)
        return [(run, column, frame.dropna(subset=[column])) for run, frame in runs.items() for column in columns
                if column in frame and frame[column].notna().any()]

    present = {key: label for key, label in panels.items() if series(key)}
    if not present:
        raise ValueError(f"none of the columns {list(panels)} is in the history")
    varying = {key: label for key, label in present.items()
               if any(rows[column].nunique() > 1 for _, column, rows in series(key))}
    constant = [f"{label} = {series(key)[0][2][series(key)[0][1]].iloc[0]:.3g}" for key, label in present.items()
                if key not in varying] if varying else []
    shown = varying or present
    ncols = min(ncols, len(shown))
    nrows = -(-len(shown) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, shown.items()):
        drawn = series(key)
        for run, column, rows in drawn:
            name = " ".join(part for part in (run, column if isinstance(key, tuple) else "") if part)
            if smooth:
                points = ax.plot(rows[x], rows[column], marker=".", linewidth=1, alpha=0.35)[0]
                ax.plot(rows[x], rows[column].rolling(smooth, min_periods=1).mean(), linewidth=2,
                        color=points.get_color(), label=f"{name}, mean of {smooth} steps".lstrip(", "))
            else:
                ax.plot(rows[x], rows[column], marker=".", linewidth=1, label=name or None)
        if reference and key in reference:
            value, text = reference[key]
            ax.axhline(value, color="k", linestyle=":", linewidth=1, label=text)
        ax.set(title=label, xlabel=x)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.grid(alpha=0.3)
        if len(drawn) > 1 or smooth or (reference and key in reference):
            ax.legend(frameon=False, fontsize="small")
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle(title + (f"\nconstant, not drawn: {'; '.join(constant)}" if constant else ""))
    fig.tight_layout()
    return fig


FAILURE_COLORS = {"correct": "#4c9f50", "format": "#9e9e9e", "arithmetic": "#e8a33d", "reasoning": "#d0553f"}


def plot_metric_bars(table, metrics: dict[str, str], status_column: str = "status", ncols: int = 3,
                     title: str | None = None, intervals: dict | None = None) -> plt.Figure:
    """One bar chart per metric, one bar per model (the rows of ``table``, in order).

    ``metrics`` maps a column of ``table`` to its panel title. A model whose value is missing (a
    checkpoint that does not exist, ``status`` not ``ok``) gets no bar but the word *missing* at its
    place, so it never reads as a zero. ``intervals`` maps a column to a table indexed by model with
    ``low`` and ``high`` columns (e.g. ``helpers.evaluation.bootstrap_interval``), drawn as error bars. The y
    axis ends just above the tallest bar or interval, so differences between models stay visible.
    """
    present = {column: label for column, label in metrics.items() if column in table}
    if not present:
        raise ValueError(f"none of the columns {list(metrics)} is in the table")
    intervals = intervals or {}
    models = [str(m) for m in table.index]
    ncols = min(ncols, len(present))
    nrows = -(-len(present) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.2, 0.55 * len(models) + 1.2) * ncols, 3.2 * nrows),
                             squeeze=False)
    for ax, (column, label) in zip(axes.flat, present.items()):
        values = table[column].astype(float)
        missing = values.isna()  # a missing checkpoint has no value at all: no bar, never a zero
        if status_column in table:
            missing |= table[status_column].astype(str).eq("missing")
        heights = values.fillna(0.0).to_numpy()
        ax.bar(range(len(models)), np.where(missing, 0.0, heights), color=[f"C{i}" for i in range(len(models))])
        top = float(np.nanmax(values.to_numpy())) if values.notna().any() else 1.0
        tops = heights.copy()
        if column in intervals:
            bounds = intervals[column].reindex(table.index)
            shown = (~missing).to_numpy() & bounds["high"].notna().to_numpy()
            x = np.arange(len(models))[shown]
            ax.errorbar(x, heights[shown], yerr=[heights[shown] - bounds["low"].to_numpy()[shown],
                                                 bounds["high"].to_numpy()[shown] - heights[shown]],
                        fmt="none", ecolor="#333333", elinewidth=1, capsize=3)
            tops = np.where(shown, np.fmax(heights, bounds["high"].to_numpy()), heights)
            top = max(top, float(np.nanmax(tops)))
        top = top if top > 0 else 1.0
        for i, is_missing in enumerate(missing):
            if is_missing:
                ax.text(i, 0.02 * top, "missing", ha="center", va="bottom", rotation=90, fontsize=8, color="#777777")
            else:
                ax.text(i, tops[i] + 0.01 * top, f"{heights[i]:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=35, ha="right", fontsize=8)
        ax.set_ylim(0, top * 1.15)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(present):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = ("-", "--", "-.", ":")


def plot_inference_scaling(tables: dict, title: str = "greedy, majority vote and best-of-k") -> plt.Figure:
    """One panel per model: accuracy against k, the samples per problem, for each column of its table (index k;
    e.g. ``greedy``, ``majority vote``, ``best-of-k (verifier)``), on one shared y range."""
    if not tables:
        raise ValueError("no model to plot")
    fig, axes = plt.subplots(1, len(tables), figsize=(4.4 * len(tables), 3.3), squeeze=False, sharey=True)
    for ax, (model, table) in zip(axes[0], tables.items()):
        for i, column in enumerate(table.columns):
            ax.plot(table.index, table[column], color=f"C{i}", marker=_MARKERS[i % len(_MARKERS)],
                    linestyle=_LINESTYLES[i % len(_LINESTYLES)], label=column)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(table.index))
        ax.set_xticklabels([str(k) for k in table.index])
        ax.set(xlabel="k (samples per problem)", title=model)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_pass_at_k(curves: dict[str, dict[int, float]], title: str = "pass@k on held-out math") -> plt.Figure:
    """pass@k against k, one line per model: ``curves`` maps a model to ``{k: pass@k}`` (models without a
    curve, e.g. missing checkpoints, are simply left out)."""
    curves = {model: curve for model, curve in curves.items() if curve}
    if not curves:
        raise ValueError("no pass@k curve to plot")
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ks = sorted({k for curve in curves.values() for k in curve})
    for i, (model, curve) in enumerate(curves.items()):
        points = sorted(curve.items())
        # models often share a curve: distinct markers, dashes and shrinking sizes keep every line visible
        ax.plot([k for k, _ in points], [v for _, v in points], color=f"C{i}", label=model, alpha=0.85,
                marker=_MARKERS[i % len(_MARKERS)], linestyle=_LINESTYLES[i % len(_LINESTYLES)],
                markersize=max(3.0, 9.0 - 0.8 * i))
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set(xlabel="k (samples drawn)", ylabel="pass@k", title=title, ylim=(-0.02, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def plot_failure_breakdown(table, title: str = "What went wrong (greedy completions)") -> plt.Figure:
    """Stacked horizontal bars, one per model: the share of completions that are correct or fail on format,
    arithmetic or reasoning (the columns of ``helpers.evaluation.failure_table``)."""
    columns = [c for c in FAILURE_COLORS if c in table]
    if not columns or table.empty:
        raise ValueError("the table needs rows and at least one of the columns " + ", ".join(FAILURE_COLORS))
    shares = table[columns].astype(float).fillna(0.0)
    models = [str(m) for m in shares.index]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(models) + 1.4))
    left = np.zeros(len(models))
    for column in columns:
        values = shares[column].to_numpy()
        ax.barh(range(len(models)), values, left=left, color=FAILURE_COLORS[column], label=column)
        for i, (start, width) in enumerate(zip(left, values)):
            if width >= 0.08:
                ax.text(start + width / 2, i, f"{width:.0%}", ha="center", va="center", fontsize=7, color="white")
        left += values
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels(models)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(left.max())))
    ax.set_xlabel("share of completions")
    ax.set_title(title, fontsize=10)
    ax.legend(ncol=len(columns), loc="lower center", bbox_to_anchor=(0.5, 1.06), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def plot_rejection_sampling(scored, kept, n_samples: int) -> plt.Figure:
    """Two panels for a rejection-sampling run: how many prompts got 0..k verified samples (only prompts
    with at least one can be harvested), and the lengths of all verified samples against the kept ones
    (shortest first). ``scored``: ``helpers.distillation.sample_scored``; ``kept``: ``select_verified``."""
    verified = scored[scored["correct"].astype(bool) & scored["format_ok"].astype(bool)]
    per_prompt = verified.groupby("prompt_index").size().reindex(scored["prompt_index"].unique(), fill_value=0)
    counts = per_prompt.value_counts().reindex(range(n_samples + 1), fill_value=0)
    fig, (ax_count, ax_len) = plt.subplots(1, 2, figsize=(10, 3.4))
    ax_count.bar(counts.index, counts.to_numpy(), color=["#bbbbbb"] + ["#4c9f50"] * n_samples)
    ax_count.set(xlabel=f"verified samples out of {n_samples}", ylabel="prompts",
                 title=f"{int((per_prompt > 0).sum())} of {len(per_prompt)} prompts have one to keep")
    ax_count.set_xticks(range(n_samples + 1))
    if len(verified):
        bins = np.linspace(verified["length_chars"].min(), verified["length_chars"].max() + 1, 20)
        ax_len.hist(verified["length_chars"], bins=bins, alpha=0.5, color="#999999", label=f"all verified ({len(verified)})")
        ax_len.hist(kept["length_chars"], bins=bins, alpha=0.8, color="#4c9f50", label=f"kept, shortest per prompt ({len(kept)})")
        ax_len.legend(fontsize=8, frameon=False)
    else:
        ax_len.text(0.5, 0.5, "no verified sample", ha="center", va="center", transform=ax_len.transAxes, color="#777777")
    ax_len.set(xlabel="completion length (characters)", ylabel="samples", title="verified samples and the kept ones")
    fig.tight_layout()
    return fig
