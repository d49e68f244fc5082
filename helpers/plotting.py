"""The course's figures: every plot is saved as PNG under ``figures/<profile>/``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from helpers.config import Profile


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
    import numpy as np
    from matplotlib.colors import ListedColormap

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
    import numpy as np

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
