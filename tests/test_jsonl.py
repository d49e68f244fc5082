"""JSON lines: whole-file writes, appends after a write cut short, reads that skip it."""

from helpers.jsonl import append_jsonl, read_jsonl, write_jsonl


def test_write_replaces_the_file_and_keeps_unicode(tmp_path):
    path = tmp_path / "sub" / "kept.jsonl"
    write_jsonl([{"a": 1}, {"b": "é"}], path)
    assert read_jsonl(path) == [{"a": 1}, {"b": "é"}]
    write_jsonl([{"a": 2}], path)
    assert read_jsonl(path) == [{"a": 2}]  # replaced, not appended
    assert [p.name for p in path.parent.iterdir()] == ["kept.jsonl"]  # no temporary file left behind


def test_a_line_cut_short_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    append_jsonl([{"key": "k1"}, {"key": "k2"}], path)
    with path.open("a") as handle:
        handle.write('{"key": "k3", "compl')  # an interrupted write
    assert read_jsonl(path) == [{"key": "k1"}, {"key": "k2"}]
    append_jsonl([{"key": "k4"}], path)
    assert read_jsonl(path) == [{"key": "k1"}, {"key": "k2"}, {"key": "k4"}]
    assert path.read_text().splitlines()[2] == '{"key": "k3", "compl'  # the broken line is left as it was


def test_blank_lines_and_non_objects_are_not_records(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n"text"\n{"b": 2}\n')
    assert read_jsonl(path) == [{"a": 1}, {"b": 2}]
