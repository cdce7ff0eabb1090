"""Texts delivered as a table file: one text per row of a CSV or JSON Lines file.

Ingestion (:func:`labeling_dag.ingest.ingest`) takes such a file apart into one item per row,
named by the row's id. A table is read whole and checked before anything of it is used, so a
malformed one is refused as a whole with a ``ValueError`` naming the file, the row and the
problem, never stored in part.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from upath import UPath

TABLE_SUFFIXES = (".csv", ".jsonl")

# (row id, text, where in the file the row is: for the error on a duplicate id)
_Row = tuple[str, str, str]


def table_texts(path: Path | UPath) -> list[tuple[str, str]]:
    """The (row id, text) of every row of a CSV or JSONL table, in file order.

    CSV: a header row with a ``text`` column and optionally an ``id`` column; without one a row's
    id is its 1-based number among the data rows. Every row has as many fields as the header, so
    an unquoted comma cannot silently cut a text short. JSONL: one JSON object per line with a
    string ``text`` and optionally an ``id`` (a string or an integer); without one a row's id is
    its 1-based line number. Blank lines are skipped in both. The file is UTF-8 (a BOM is
    allowed); ids are unique within it.

    Raises:
        ValueError: ``"{path}: ..."`` naming the problem and its row or line.
    """
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{path}: not a table file (expected one of {', '.join(TABLE_SUFFIXES)})")
    content = _decode(path, path.read_bytes())
    rows = _csv_rows(path, content) if suffix == ".csv" else _jsonl_rows(path, content)
    _check_unique_ids(path, rows)
    return [(row_id, text) for row_id, text, _ in rows]


def _decode(path: Path | UPath, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}) ({exc.reason})"
        ) from exc


def _csv_rows(path: Path | UPath, content: str) -> list[_Row]:
    records = _csv_records(path, content)
    header_line, header = next(records, (0, None))
    if header is None:
        raise ValueError(f"{path}: empty file, expected a header row with a 'text' column")
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ValueError(f"{path}: line {header_line}: the header repeats the column(s) {duplicated}")
    if "text" not in header:
        raise ValueError(f"{path}: line {header_line}: no 'text' column in the header (columns: {header})")
    text_at = header.index("text")
    id_at = header.index("id") if "id" in header else None
    rows: list[_Row] = []
    for line, fields in records:
        where = f"row {len(rows) + 1} (line {line})"
        if len(fields) != len(header):
            raise ValueError(f"{path}: {where} has {len(fields)} fields, the header has {len(header)}")
        row_id = fields[id_at] if id_at is not None else str(len(rows) + 1)
        if not row_id:
            raise ValueError(f"{path}: {where} has an empty id")
        rows.append((row_id, fields[text_at], where))
    return rows


def _csv_records(path: Path | UPath, content: str) -> Iterator[tuple[int, list[str]]]:
    """(line the record starts on, its fields) for every CSV record but blank lines; a quoted
    field may span lines."""
    reader = csv.reader(io.StringIO(content, newline=""))
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValueError(f"{path}: line {reader.line_num}: malformed CSV ({exc})") from exc
        if fields:
            yield line, fields


def _jsonl_rows(path: Path | UPath, content: str) -> list[_Row]:
    rows: list[_Row] = []
    # Split on line feeds only: str.splitlines would also split at U+2028 and other separators
    # that a JSON string may hold unescaped.
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: {where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(record, dict):
            raise ValueError(f"{path}: {where}: expected a JSON object, got {_json_type(record)}")
        if "text" not in record:
            raise ValueError(f"{path}: {where}: no 'text' key (keys: {sorted(record)})")
        if not isinstance(record["text"], str):
            raise ValueError(f"{path}: {where}: 'text' is {_json_type(record['text'])}, not a string")
        rows.append((_jsonl_id(path, where, record.get("id", number)), record["text"], where))
    return rows


def _jsonl_id(path: Path | UPath, where: str, value: object) -> str:
    # bool is an int subclass, but true/false as ids are surely a mistake.
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{path}: {where}: 'id' is {_json_type(value)}, not a string or an integer")
    if value == "":
        raise ValueError(f"{path}: {where}: 'id' is empty")
    return str(value)


def _json_type(value: object) -> str:
    """A JSON value's type as the JSON text shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _check_unique_ids(path: Path | UPath, rows: list[_Row]) -> None:
    first: dict[str, str] = {}
    for row_id, _, where in rows:
        if row_id in first:
            raise ValueError(f"{path}: {where}: duplicate id {row_id!r} (first on {first[row_id]})")
        first[row_id] = where
