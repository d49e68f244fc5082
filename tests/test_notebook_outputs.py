"""The committed notebooks' outputs are part of the product: what a learner sees must not carry this machine's
paths or empty stderr blocks, and opens with its title (``test_course_runner`` checks that no cell carries an
execution timestamp)."""

import json
import re
from pathlib import Path

import pytest

from helpers.config import REPO_ROOT

CHAPTERS = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = CHAPTERS + sorted((REPO_ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:work|home|root|tmp|Users|content|check)/[\w.-]+/")


def _outputs(path: Path):
    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            yield index, cell, output


def _texts(output: dict):
    if "text" in output:
        yield "".join(output["text"])
    for kind, value in output.get("data", {}).items():
        if kind.startswith("text/"):
            yield "".join(value) if isinstance(value, list) else value


def test_there_are_nine_chapters():
    assert len(CHAPTERS) == 9


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_machine_paths_in_outputs(path):
    hits = [
        (i, m.group(0)) for i, _, out in _outputs(path) for text in _texts(out) for m in ABSOLUTE_PATH.finditer(text)
    ]
    assert not hits, f"absolute paths in outputs (cell, path): {hits[:5]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_empty_stderr_blocks(path):
    empty = [i for i, _, out in _outputs(path) if out.get("name") == "stderr" and not "".join(out["text"]).strip()]
    assert not empty, f"empty stderr outputs in cells {empty}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_opens_with_its_title(path):
    first = json.loads(path.read_text())["cells"][0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# "), "".join(first["source"])[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_ran_once_each_top_to_bottom(path):
    """Execution counts 1, 2, 3, ...: the committed outputs come from one run in order, no cell re-run or skipped."""
    counts = [cell.get("execution_count") for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), counts


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_each_chapter_says_what_to_run_on_colab(path):
    first = "".join(json.loads(path.read_text())["cells"][0]["source"])
    assert "On Colab" in first and "COURSE_STORAGE" in first and "constraints-colab.txt" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_is_under_250_kb(path):
    # the embedded figures are palette PNGs (course_runner.compact_images); full-colour copies are under figures/
    assert path.stat().st_size < 250_000, f"{path.stat().st_size:,} bytes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_table_shows_as_a_styler_object(path):
    # a pandas Styler's text form is "<pandas.io.formats.style.Styler at 0x...>" and its HTML hides <think> tags:
    # side-by-side tables go through helpers.tables.text_table
    hits = [i for i, _, out in _outputs(path) for text in _texts(out) if "pandas.io.formats.style.Styler" in text]
    assert not hits, f"Styler outputs in cells {hits}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_long_log_tables(path):
    # a trainer's notebook display adds a table row per logged step (80 at one log per step); the course draws
    # the history as curves instead (helpers.training.NotebookBarCallback), and shows tables of a few rows
    long = [(i, n) for i, _, out in _outputs(path)
            if (n := "".join(out.get("data", {}).get("text/html", "")).count("<tr")) > 40]
    assert not long, f"HTML tables of more than 40 rows (cell, rows): {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_progress_bar_repeated(path):
    # the same bar finishing again and again (one per model in a loop) is noise, not information: bars inside
    # loops clear themselves (leave=False) and course_runner drops the blank block they leave
    repeated = []
    for i, _, out in _outputs(path):
        if out.get("output_type") != "stream":
            continue
        labels = re.findall(r"^(.{0,60}?):\s+100%\|", "".join(out["text"]), flags=re.MULTILINE)
        repeated += [(i, label, labels.count(label)) for label in set(labels) if labels.count(label) > 3]
    assert not repeated, f"progress bars repeated (cell, label, times): {repeated}"


MEASURED_IN_PROSE = re.compile(r"\d+\.\d+\s?%|\d+ (?:fixed|broken)\b")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_measured_rate_written_into_markdown(path):
    # a rate such as "33.5%" or "5 fixed" in a markdown cell goes stale on the next run: results are rendered
    # from variables (display(Markdown(...))) or read from the committed result files
    cells = json.loads(path.read_text())["cells"]
    hits = [(i, m.group(0)) for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
            for m in MEASURED_IN_PROSE.finditer("".join(cell["source"]))]
    assert not hits, f"measured numbers written into markdown (cell, text): {hits}"
