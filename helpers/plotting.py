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
