"""The course command: runs notebooks in order, in place, stops at the first failure, writes a summary."""

import nbformat
import pandas as pd
import pytest

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
