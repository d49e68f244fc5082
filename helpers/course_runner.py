"""Execute the course's notebooks in order, in place, with a progress line each and a summary.

    python -m helpers.course_runner                 # every notebook in notebooks/, default profile
    python -m helpers.course_runner --profile tiny notebooks/03_lora_sft.ipynb

A notebook that runs through replaces the committed one (written to a temporary file, then renamed).
One that fails, times out or loses its kernel leaves the committed notebook as it was and is saved
beside it as ``<name>.failed.ipynb`` (git-ignored), with the error in the failing cell; an interrupted
run leaves it untouched too. The run stops at the first failure (later stages read earlier stages'
checkpoints), says which cell failed, and still prints the summary. Cells have no time limit by default
(GRPO on the ``gpu`` profile runs for hours in one cell); ``--cell-timeout`` sets one.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from PIL import Image

from helpers.config import REPO_ROOT, get_profile

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass
class NotebookRun:
    notebook: str
    status: str
    seconds: float
    error: str = ""


def failed_copy(path: Path) -> Path:
    return path.with_name(f"{path.stem}.failed.ipynb")


def drop_blank_streams(notebook):
    """Remove stdout/stderr outputs that hold only whitespace (a progress bar that cleared itself leaves one): an
    empty grey block in the committed notebook says nothing. Returns ``notebook``, changed in place."""
    for cell in notebook.cells:
        if cell.get("outputs"):
            cell.outputs = [out for out in cell.outputs if out.get("output_type") != "stream" or out.get("text", "").strip()]
    return notebook


def compact_png(data: bytes) -> bytes:
    """``data`` (a PNG) re-encoded with a 256-colour palette when that is smaller, else ``data`` unchanged.

    A matplotlib figure is flat colours plus anti-aliased edges, so a palette keeps it visibly the same at about a
    third of the bytes: the embedded figures were most of each large notebook (they are also saved full-colour
    under ``figures/``). Transparent pixels are laid on white first, as the notebook shows them."""
    image = Image.open(io.BytesIO(data))
    rgba = image.convert("RGBA")
    flat = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    buffer = io.BytesIO()
    flat.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
    return buffer.getvalue() if buffer.tell() < len(data) else data


def compact_images(notebook):
    """Re-encode every embedded PNG output with ``compact_png``. Returns ``notebook``, changed in place."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            encoded = output.get("data", {}).get("image/png")
            if encoded:
                output["data"]["image/png"] = base64.b64encode(compact_png(base64.b64decode(encoded))).decode("ascii")
    return notebook


def execute_notebook(path: Path, timeout_per_cell: int | None = None) -> None:
    """Run every cell of ``path`` in a fresh kernel (cwd = the notebook's folder); save it in place when every
    cell ran, else save what ran as ``failed_copy(path)`` and raise."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout_per_cell,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        coalesce_streams=True,  # a progress bar is saved as its last state, not as one output per update
        record_timing=False,  # no per-cell timestamps in the committed JSON (they change on every run)
    )
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError):
        nbformat.write(drop_blank_streams(notebook), failed_copy(path))  # the error is there; the committed one stays
        raise
    compact_images(drop_blank_streams(notebook))
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(notebook, tmp)
    os.replace(tmp, path)
    failed_copy(path).unlink(missing_ok=True)


def run_course(notebooks: list[Path], profile_name: str | None = None,
               timeout_per_cell: int | None = None) -> pd.DataFrame:
    """Execute ``notebooks`` in order under ``profile_name``; return one row per notebook."""
    profile = get_profile(profile_name)  # fails early on a wrong profile name
    os.environ["COURSE_PROFILE"] = profile.name
    runs: list[NotebookRun] = []
    print(f"Running {len(notebooks)} notebook(s) on the '{profile.name}' profile ({profile.description})", flush=True)
    for index, path in enumerate(notebooks, start=1):
        print(f"[{index}/{len(notebooks)}] {path.name} ...", flush=True)
        start = time.perf_counter()
        try:
            execute_notebook(path, timeout_per_cell)
        # a failing cell, a cell past --cell-timeout, or a kernel killed (out of memory)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
            seconds = time.perf_counter() - start
            first_line = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            runs.append(NotebookRun(path.name, "failed", seconds, first_line))
            print(f"[{index}/{len(notebooks)}] {path.name} FAILED after {seconds:.0f} s: {first_line} "
                  f"(what ran is in {failed_copy(path).name}; {path.name} is unchanged)", flush=True)
            break
        seconds = time.perf_counter() - start
        runs.append(NotebookRun(path.name, "ok", seconds))
        print(f"[{index}/{len(notebooks)}] {path.name} done in {seconds:.0f} s", flush=True)
    for path in notebooks[len(runs):]:
        runs.append(NotebookRun(path.name, "not run", 0.0))
    summary = pd.DataFrame([run.__dict__ for run in runs])
    summary["minutes"] = (summary["seconds"] / 60).round(1)
    out_dir = profile.data_dir("processed")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary.to_csv(out_dir / "course_run_times.csv", index=False)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: all of notebooks/, in order)")
    parser.add_argument("--profile", default=None, help="tiny, cpu or gpu (default: $COURSE_PROFILE, else by hardware)")
    parser.add_argument("--cell-timeout", type=int, default=None, help="seconds one cell may run (default: no limit)")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    missing = [str(p) for p in notebooks if not p.exists()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    try:
        summary = run_course(notebooks, args.profile, args.cell_timeout)
    except ValueError as err:  # a wrong profile name
        parser.error(str(err))
    total = summary["seconds"].sum()
    print("\nSummary")
    print(summary[["notebook", "status", "minutes"]].to_string(index=False))
    print(f"total: {total / 60:.1f} min ({(summary['status'] == 'ok').sum()}/{len(summary)} notebooks ran)")
    return 0 if (summary["status"] == "ok").all() else 1


if __name__ == "__main__":
    sys.exit(main())
