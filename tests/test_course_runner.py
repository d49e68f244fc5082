"""The course command: runs notebooks in order, in place, stops at the first failure, writes a summary."""

import base64
import io

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers import course_runner


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_runs_in_order_in_place_and_stops_at_failure(tmp_path, capsys):
    tmp = tmp_path
    times_csv = course_runner.get_profile("tiny").data_dir("processed") / "course_run_times.csv"
    times_csv.unlink(missing_ok=True)
    first = _notebook(tmp / "01_a.ipynb", "import os\nprint(os.environ['COURSE_PROFILE'])")
    second = _notebook(tmp / "02_b.ipynb", "raise ValueError('boom')")
    third = _notebook(tmp / "03_c.ipynb", "print('never')")
    summary = course_runner.run_course([first, second, third], "tiny")
    assert list(summary["status"]) == ["ok", "failed", "not run"]
    assert "boom" in summary.loc[1, "error"]
    assert nbformat.read(second, as_version=4).cells[0].outputs == []  # the committed notebook is left as it was
    failed = nbformat.read(course_runner.failed_copy(second), as_version=4)
    assert failed.cells[0].outputs[0]["ename"] == "ValueError"  # what ran, error included, beside it
    executed = nbformat.read(first, as_version=4)
    assert executed.cells[0].outputs[0]["text"].strip() == "tiny"  # in place, profile passed to the kernel
    assert "execution" not in executed.cells[0].metadata  # no timestamps to commit
    assert nbformat.read(third, as_version=4).cells[0].outputs == []
    assert list(pd.read_csv(times_csv)["status"]) == ["ok", "failed", "not run"]
    out = capsys.readouterr().out
    assert "[1/3] 01_a.ipynb done in" in out and "[2/3] 02_b.ipynb FAILED" in out


@pytest.mark.slow
def test_a_cell_past_the_time_limit_is_a_failure_with_a_summary(tmp_path):
    slow = _notebook(tmp_path / "01_slow.ipynb", "import time\ntime.sleep(30)")
    summary = course_runner.run_course([slow], "tiny", timeout_per_cell=2)
    assert list(summary["status"]) == ["failed"] and summary.loc[0, "seconds"] < 25
    assert nbformat.read(slow, as_version=4).cells[0].outputs == []


def test_main_rejects_bad_profile_and_missing_notebook(tmp_path, capsys):
    with pytest.raises(SystemExit):
        course_runner.main(["--profile", "laptop", str(_notebook(tmp_path / "01_a.ipynb", "1"))])
    assert "valid profiles are" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        course_runner.main([str(tmp_path / "missing.ipynb")])
    assert "no such notebook" in capsys.readouterr().err


def test_committed_notebooks_carry_no_execution_timestamps():
    notebooks = sorted(course_runner.REPO_ROOT.glob("notebooks/**/*.ipynb"))
    assert notebooks
    stamped = [f"{path.name} cell {i}" for path in notebooks
               for i, cell in enumerate(nbformat.read(path, as_version=4).cells) if "execution" in cell.metadata]
    assert not stamped, stamped


def test_blank_stream_outputs_are_dropped_and_the_rest_kept():
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="          \r"),
                    nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": ""}, execution_count=1)]
    notebook.cells = [cell, nbformat.v4.new_markdown_cell("# title")]
    course_runner.drop_blank_streams(notebook)
    assert [out.get("text", "result") for out in notebook.cells[0].outputs] == ["kept\n", "result"]


def _figure_png(dpi: int = 72) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([0, 1, 2, 3], [0.1, 0.4, 0.35, 0.8], marker="o", label="reward")
    ax.fill_between([0, 1, 2, 3], [0, 0.3, 0.3, 0.7], [0.2, 0.5, 0.4, 0.9], alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def test_compact_png_is_smaller_and_looks_the_same():
    original = _figure_png()
    compact = course_runner.compact_png(original)
    assert len(compact) < 0.7 * len(original)
    before = np.asarray(Image.open(io.BytesIO(original)).convert("RGB"), dtype=int)
    after = np.asarray(Image.open(io.BytesIO(compact)).convert("RGB"), dtype=int)
    assert before.shape == after.shape
    # flat colours exact, anti-aliased edges within a small distance on average
    assert np.mean(np.abs(before - after)) < 2
    assert np.mean(np.all(before == after, axis=-1)) > 0.9


def test_compact_png_never_grows_an_image():
    once = course_runner.compact_png(_figure_png())
    assert len(course_runner.compact_png(once)) <= len(once)


def test_compact_png_lays_transparency_on_white():
    clear = io.BytesIO()
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(clear, "PNG")
    pixels = np.asarray(Image.open(io.BytesIO(course_runner.compact_png(clear.getvalue()))).convert("RGB"))
    assert (pixels == 255).all()


def test_compact_images_rewrites_only_png_outputs():
    original = _figure_png()
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("plot")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": base64.b64encode(original).decode(),
                                                                 "text/plain": "<Figure>"}),
                    nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    notebook.cells = [cell]
    course_runner.compact_images(notebook)
    data = cell.outputs[0]["data"]
    assert data["text/plain"] == "<Figure>" and cell.outputs[1]["text"] == "kept\n"
    assert len(base64.b64decode(data["image/png"])) < len(original)
