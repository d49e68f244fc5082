"""JSON lines, the one way the course reads and writes them.

``write_jsonl`` replaces a file whole (a temporary file, then a rename: a reader never sees half a file, and a
re-run never appends twice). ``append_jsonl`` adds records to a cache as they are paid for, starting on a new line
after a write cut short. ``read_jsonl`` skips an unreadable line (such a write cut short) instead of crashing: a
cache of paid-for answers must survive an interrupted run.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

logger = logging.getLogger(__name__)


def read_jsonl(path: str | Path) -> list[dict]:
    """Every record of ``path`` that parses as a JSON object; a line that does not is skipped with a warning."""
    records = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("%s line %d is not JSON (a write cut short?); skipped", Path(path).name, number)
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def write_jsonl(records: Iterable[Mapping], path: str | Path) -> Path:
    """Write ``records`` as JSON lines, replacing the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(dict(record), ensure_ascii=False) + "\n" for record in records)
    os.replace(tmp, path)
    return path


def append_jsonl(records: Iterable[Mapping], path: str | Path) -> None:
    """Append ``records`` to ``path``; after a write cut short, start on a new line so the first new record
    is not glued to the broken one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cut_short = False
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as existing:
            existing.seek(-1, 2)
            cut_short = existing.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as handle:
        if cut_short:
            handle.write("\n")
        handle.writelines(json.dumps(dict(record), ensure_ascii=False) + "\n" for record in records)
