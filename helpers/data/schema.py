"""One row schema per task (``SCHEMAS``, as ``datasets.Features`` in ``FEATURES``) and ``validate_rows``, which
names the row and the field of anything missing or mistyped."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, get_args, get_origin, get_type_hints, is_typeddict

import datasets

TASKS = ("math", "countdown", "warmstart", "instructions", "preferences")
SPLITS = ("train", "validation", "test")


class Message(TypedDict):
    """One chat turn, as chat templates and TRL expect it."""

    role: str
    content: str


SCHEMAS: dict[str, dict[str, Any]] = {
    "math": {"prompt": str, "solution": str, "answer": str, "difficulty": int},
    "countdown": {"nums": list[int], "target": int},
    "warmstart": {"messages": list[Message], "task": str},
    "instructions": {"messages": list[Message], "constraints": dict},
    "preferences": {"prompt": list[Message], "chosen": list[Message], "rejected": list[Message], "constraints": dict},
}


def _feature(spec: Any) -> Any:
    """The ``datasets`` feature for one schema type; ``dict`` becomes ``Json`` so that constraint
    dicts with different keys round-trip exactly (a struct column would add the missing keys as None)."""
    simple = {str: datasets.Value("string"), int: datasets.Value("int64")}
    if spec in simple:
        return simple[spec]
    if spec is dict:
        return datasets.Json()
    if get_origin(spec) is list:
        return datasets.List(_feature(get_args(spec)[0]))
    if is_typeddict(spec):
        return {key: _feature(value) for key, value in get_type_hints(spec).items()}
    raise TypeError(f"no datasets feature for schema type {spec!r}")


FEATURES: dict[str, datasets.Features] = {
    task: datasets.Features({name: _feature(spec) for name, spec in schema.items()}) for task, schema in SCHEMAS.items()
}


def _type_ok(value: Any, spec: Any) -> bool:
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec in (str, dict):
        return isinstance(value, spec)
    if get_origin(spec) is list:
        item = get_args(spec)[0]
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if is_typeddict(spec):
        hints = get_type_hints(spec)
        return isinstance(value, dict) and all(k in value and _type_ok(value[k], t) for k, t in hints.items())
    raise TypeError(f"unsupported schema type {spec!r}")


def _type_name(spec: Any) -> str:
    if get_origin(spec) is list:
        return f"list[{_type_name(get_args(spec)[0])}]"
    if is_typeddict(spec):
        return "{" + ", ".join(f"{k!r}: {_type_name(t)}" for k, t in get_type_hints(spec).items()) + "}"
    return spec.__name__


def validate_row(row: Any, schema: Mapping[str, Any], where: str) -> None:
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a mapping of field -> value, got {type(row).__name__}")
    for name, spec in schema.items():
        if name not in row:
            raise ValueError(f"{where}: missing field {name!r} (expected {_type_name(spec)})")
        value = row[name]
        if not _type_ok(value, spec):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ValueError(f"{where}: field {name!r} should be {_type_name(spec)}, got {type(value).__name__} {shown}")


def validate_rows(rows: Iterable[Mapping], schema: str | Mapping[str, Any], source: str = "rows") -> None:
    """Check every row against a schema (a task name or a ``{field: type}`` mapping).

    Raises ``ValueError`` naming the row index and the field, e.g.
    ``countdown row 3: field 'target' should be int, got str '88'``, so a bad row in a large file is
    found in seconds instead of surfacing as a cryptic error deep inside a trainer.
    """
    if isinstance(schema, str):
        source = schema if source == "rows" else source
        schema = SCHEMAS[schema]
    for index, row in enumerate(rows):
        validate_row(row, schema, f"{source} row {index}")


def task_of(row: Mapping) -> str:
    """Which task a row is, from its columns (the one place that decides it): ``"countdown"`` (``nums`` and
    ``target``), ``"instructions"`` (``constraints``, preference rows included), ``"math"`` (a ``prompt`` string
    or an ``answer``), else ``"conversation"`` (``messages``, or a ``prompt`` given as messages)."""
    if "nums" in row and "target" in row:
        return "countdown"
    if "constraints" in row:
        return "instructions"
    if isinstance(row.get("prompt"), str) or "answer" in row:
        return "math"
    return "conversation"
