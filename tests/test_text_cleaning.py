"""Texts: cleaning and rejection (labeling_dag.text_cleaning), duplicate marking, reading table
files (labeling_dag.text_tables) and taking them apart at ingestion (labeling_dag.ingest)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from labeling_dag.contracts import CLEANED_COLUMNS, RAW_COLUMNS
from labeling_dag.ingest import ingest
from labeling_dag.rejects import ImageRejected
from labeling_dag.text_cleaning import MAX_TEXT_CHARS, clean_text
from labeling_dag.text_duplicates import mark_text_duplicates
from labeling_dag.text_signature import NUM_PERM, duplicate_key
from labeling_dag.text_tables import TABLE_SUFFIXES, table_texts

MARKS = ("duplicate_of", "near_duplicate_of", "is_exact_duplicate", "is_near_duplicate")
# A 60-word text, and the same with one word changed.
WORDS = [f"word{i}" for i in range(60)]
LONG_TEXT = " ".join(WORDS)
ONE_WORD_CHANGED = " ".join([*WORDS[:30], "changed", *WORDS[31:]])


def _clean(tmp_path: Path, data: bytes, name: str = "raw.txt") -> dict[str, object]:
    raw = tmp_path / "raw" / name
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(data)
    image_id = hashlib.sha256(data).hexdigest()
    return clean_text(raw, image_id=image_id, workdir=tmp_path / "work", out_folder="cleaned_images/b1")


# --- cleaning -------------------------------------------------------------------------------------


def test_a_text_is_normalised_and_stored_as_a_row_of_the_cleaned_table(tmp_path: Path) -> None:
    # BOM, decomposed accent (e + combining acute), CRLF and lone CR, surrounding whitespace.
    raw = "\ufeff  Cafe\u0301 au lait\r\nsecond line\rthird  \n".encode()
    row = _clean(tmp_path, raw)

    text = "Caf\u00e9 au lait\nsecond line\nthird"
    assert set(row) == set(CLEANED_COLUMNS) - set(MARKS) - {"source_path", "run_id"}
    image_id = hashlib.sha256(raw).hexdigest()
    assert row["path"] == f"cleaned_images/b1/files/{image_id}.txt"
    assert (tmp_path / "work" / str(row["path"])).read_bytes() == text.encode()
    assert (row["width"], row["height"]) == (len(text), 1)
    assert row["converted_mode"] == "normalised"
    assert row["pixel_hash"] == hashlib.sha256(b"caf\xc3\xa9 au lait second line third").hexdigest()
    assert len(str(row["phash"])) == 8 * NUM_PERM
    assert (row["exif_transposed"], row["is_blurry"], row["is_low_contrast"]) == (False, False, False)
    assert (row["blur_variance"], row["contrast"]) == (0.0, 0.0)
    # The row fits the shared schema.
    pd.DataFrame([row]).astype({c: CLEANED_COLUMNS[c] for c in row})


def test_a_clean_text_keeps_its_bytes_and_signatures_are_stable(tmp_path: Path) -> None:
    row = _clean(tmp_path, b"Already clean.\nTwo lines.")
    again = _clean(tmp_path, b"ALREADY   clean. two\tlines.\n", name="other.txt")

    assert row["converted_mode"] == ""
    assert (tmp_path / "work" / str(row["path"])).read_text(encoding="utf-8") == "Already clean.\nTwo lines."
    assert (again["pixel_hash"], again["phash"]) == (row["pixel_hash"], row["phash"])


def test_the_duplicate_key_folds_case_and_whitespace() -> None:
    assert duplicate_key("  Stra\u00dfe\u00a0\n\tIS  wide ") == "strasse is wide"


@pytest.mark.parametrize(
    ("data", "reason", "problem"),
    [
        (b"", "empty", "no text"),
        (b"\xef\xbb\xbf", "empty", "no text"),
        (b" \r\n\t \n", "empty", "nothing but whitespace"),
        (b"caf\xe9 au lait", "not_utf8", "offset 3"),
        (b"\xef\xbb\xbfok \xff", "not_utf8", "offset 6"),
        ("hello".encode("utf-16"), "binary", "NUL byte at offset"),
        (b"\x01\x02\x03\x1b text", "binary", "control characters"),
        (b"a" * (MAX_TEXT_CHARS + 1), "too_long", f"more than the limit of {MAX_TEXT_CHARS}"),
        (b"a" * (4 * MAX_TEXT_CHARS + 4), "too_long", "file is larger than"),
    ],
    ids=["zero-bytes", "bom-only", "whitespace", "latin-1", "bad-byte-after-bom", "utf-16", "controls", "long", "huge"],
)
def test_unusable_texts_are_rejected_with_a_reason(tmp_path: Path, data: bytes, reason: str, problem: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        _clean(tmp_path, data)

    assert caught.value.reason == reason
    assert str(caught.value).startswith(f"{tmp_path / 'raw' / 'raw.txt'}: ")
    assert problem in caught.value.problem
    assert not (tmp_path / "work").exists()


def test_a_missing_file_is_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "gone.txt"
    with pytest.raises(ImageRejected, match=f"^{missing}: cannot open file") as caught:
        clean_text(missing, image_id="x", workdir=tmp_path / "work", out_folder="cleaned")
    assert caught.value.reason == "unreadable"


def test_a_text_at_the_length_limit_is_kept(tmp_path: Path) -> None:
    assert _clean(tmp_path, b"a" * MAX_TEXT_CHARS + b"\n")["width"] == MAX_TEXT_CHARS


# --- duplicates -----------------------------------------------------------------------------------


def _rows(tmp_path: Path, texts: dict[str, str]) -> pd.DataFrame:
    """Cleaned rows of the texts, by image id, with empty duplicate marks."""
    rows = []
    for image_id, text in texts.items():
        raw = tmp_path / "raw" / f"{image_id}.txt"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(text, encoding="utf-8")
        rows.append(clean_text(raw, image_id=image_id, workdir=tmp_path / "work", out_folder="cleaned"))
    frame = pd.DataFrame(rows)
    for mark in MARKS:
        frame[mark] = "" if mark.endswith("_of") else False
    return frame


def _marks(marked: pd.DataFrame) -> dict[str, tuple[str, str]]:
    return {
        row.image_id: (row.duplicate_of, row.near_duplicate_of)
        for row in marked.itertuples()
        if row.is_exact_duplicate or row.is_near_duplicate
    }


def test_exact_and_near_duplicates_are_marked_against_existing_and_earlier_new_texts(tmp_path: Path) -> None:
    existing = _rows(tmp_path, {"e1": LONG_TEXT, "e2": "The cat sat on the mat."})
    new = _rows(
        tmp_path,
        {
            "n1": "the CAT  sat on\nthe mat.",  # exact duplicate of e2: case and whitespace only
            "n2": ONE_WORD_CHANGED,  # near duplicate of e1
            "n3": "A completely different sentence about the weather today.",
            "n4": "a completely different sentence about the weather TODAY.",  # exact duplicate of n3
            "n5": "A completely different sentence about the weather yesterday.",  # too short to be near
        },
    )

    marked = mark_text_duplicates(new, existing)

    assert _marks(marked) == {"n1": ("e2", ""), "n2": ("", "e1"), "n4": ("n3", "")}
    assert list(marked["image_id"]) == list(new["image_id"])
    assert marked["is_exact_duplicate"].dtype == bool and marked["is_near_duplicate"].dtype == bool


def test_near_duplicates_within_a_new_batch_point_at_the_first(tmp_path: Path) -> None:
    empty = _rows(tmp_path, {}).reindex(columns=list(CLEANED_COLUMNS))
    new = _rows(tmp_path, {"a": LONG_TEXT, "b": ONE_WORD_CHANGED, "c": LONG_TEXT.replace("word59", "last")})

    assert _marks(mark_text_duplicates(new, empty)) == {"b": ("", "a"), "c": ("", "a")}


def test_a_near_duplicate_of_a_near_duplicate_points_at_a_kept_text(tmp_path: Path) -> None:
    """Only kept texts are references: an existing near duplicate is never pointed at."""
    existing = _rows(tmp_path, {"e1": LONG_TEXT, "e2": ONE_WORD_CHANGED})
    existing.loc[1, ["near_duplicate_of", "is_near_duplicate"]] = ["e1", True]
    new = _rows(tmp_path, {"n1": ONE_WORD_CHANGED.replace("word10", "other")})

    assert _marks(mark_text_duplicates(new, existing)) == {"n1": ("", "e1")}


def test_marking_against_ten_thousand_existing_texts_is_fast() -> None:
    rng = np.random.default_rng(0)
    signatures = [row.astype(">u4").tobytes().hex() for row in rng.integers(0, 2**32, (10_001, NUM_PERM))]
    existing = pd.DataFrame(
        {
            "image_id": [f"e{i}" for i in range(10_000)],
            "pixel_hash": [f"h{i}" for i in range(10_000)],
            "phash": signatures[:10_000],
            "is_exact_duplicate": False,
            "is_near_duplicate": False,
        }
    )
    near = bytearray(bytes.fromhex(signatures[42]))
    near[:40] = bytes(40)  # 10 of 128 values changed: estimated Jaccard 0.92
    new = pd.DataFrame(
        {"image_id": ["n0", "n1"], "pixel_hash": ["x", "y"], "phash": [signatures[10_000], near.hex()]}
    ).assign(**{mark: "" for mark in MARKS})

    started = time.perf_counter()
    marked = mark_text_duplicates(new, existing)

    assert time.perf_counter() - started < 5
    assert _marks(marked) == {"n1": ("", "e42")}


# --- table files ----------------------------------------------------------------------------------


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def test_csv_tables_with_and_without_ids(tmp_path: Path) -> None:
    with_ids = _write(tmp_path / "a.csv", '\ufefflabel,id,text\r\nx,r7,"Hello, world"\r\n\r\ny,r9,"two\nlines"\r\n')
    without = _write(tmp_path / "b.csv", "text\nfirst\n\nsecond\n")

    assert table_texts(with_ids) == [("r7", "Hello, world"), ("r9", "two\nlines")]
    assert table_texts(without) == [("1", "first"), ("2", "second")]


def test_jsonl_tables_with_and_without_ids(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "text": "first"}),
        "",
        json.dumps({"id": 7, "text": "line\u2028separator", "label": "x"}, ensure_ascii=False),
        json.dumps({"text": "no id"}),
    ]
    path = _write(tmp_path / "t.jsonl", "\n".join(lines) + "\n")

    assert table_texts(path) == [("a", "first"), ("7", "line\u2028separator"), ("4", "no id")]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("t.csv", "id,body\n1,hello\n", "line 1: no 'text' column"),
        ("t.csv", "", "empty file"),
        ("t.csv", "id,text\n1,ok\n2,one,too many\n", "row 2 (line 3) has 3 fields, the header has 2"),
        ("t.csv", "id,text\nx,ok\n,empty id\n", "row 2 (line 3) has an empty id"),
        ("t.csv", 'id,text\nx,ok\ny,"multi\nline"\nx,again\n', "row 3 (line 5): duplicate id 'x' (first on row 1"),
        ("t.csv", b"text\nfine\ncaf\xe9\n", "not UTF-8: byte 0xe9 at offset 13 (line 3)"),
        ("t.jsonl", '{"text": "ok"}\n{"text": "broken"\n', "line 2: invalid JSON"),
        ("t.jsonl", '{"text": "ok"}\n{"text": 3}\n', "line 2: 'text' is a number, not a string"),
        ("t.jsonl", '{"text": null}\n', "line 1: 'text' is null, not a string"),
        ("t.jsonl", '{"body": "x"}\n', "line 1: no 'text' key"),
        ("t.jsonl", '["text"]\n', "line 1: expected a JSON object, got an array"),
        ("t.jsonl", '{"id": 1.5, "text": "x"}\n', "line 1: 'id' is a number, not a string or an integer"),
        ("t.jsonl", '{"id": 1, "text": "x"}\n{"id": "1", "text": "y"}\n', "line 2: duplicate id '1' (first on line 1)"),
    ],
)
def test_a_bad_table_is_an_error_naming_the_file_and_the_row(
    tmp_path: Path, name: str, content: str | bytes, problem: str
) -> None:
    path = _write(tmp_path / name, content)

    with pytest.raises(ValueError) as caught:
        table_texts(path)

    assert str(caught.value).startswith(f"{path}: ")
    assert problem in str(caught.value)


# --- ingestion ------------------------------------------------------------------------------------


def _empty_index() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in RAW_COLUMNS.items()})


def _ingest(source: Path, work: Path, index: pd.DataFrame) -> tuple[pd.DataFrame, list[Path]]:
    return ingest(
        sorted(source.iterdir()),
        index,
        workdir=work,
        store_folder="raw_images/b1",
        run_id="run-1",
        suffixes=(".txt",),
        tables=TABLE_SUFFIXES,
    )


def test_ingestion_takes_tables_apart_into_one_item_per_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, work = tmp_path / "source", tmp_path / "work"
    csv_file = _write(source / "news.csv", "id,text\nn1,Markets rallied.\nn2,Rain tomorrow.\n")
    jsonl_file = _write(source / "more.jsonl", '{"text": "Rain tomorrow."}\n{"id": "k", "text": "Goal!"}\n')
    _write(source / "note.txt", "A plain text file.\n")
    _write(source / "picture.jpg", b"\xff\xd8 not for this modality")

    rows, skipped = _ingest(source, work, _empty_index())

    assert [p.name for p in skipped] == ["picture.jpg"]
    assert sorted(rows["source_path"]) == sorted(
        [f"{csv_file}#n1", f"{csv_file}#n2", f"{jsonl_file}#1", f"{jsonl_file}#k", str(source / "note.txt")]
    )
    by_source = dict(zip(rows["source_path"], rows["image_id"]))
    assert by_source[f"{csv_file}#n1"] == hashlib.sha256(b"Markets rallied.").hexdigest()
    # The same text in two tables is one item, stored once.
    assert by_source[f"{csv_file}#n2"] == by_source[f"{jsonl_file}#1"]
    stored = sorted(p.relative_to(work) for p in (work / "raw_images").rglob("*") if p.is_file())
    assert stored == sorted({Path(p) for p in rows["stored_path"]})
    assert len(stored) == 4
    for row in rows.itertuples():
        expected = "A plain text file.\n" if row.source_path.endswith(".txt") else None
        content = (work / row.stored_path).read_text(encoding="utf-8")
        assert row.stored_path == f"raw_images/b1/files/{row.image_id[:2]}/{row.image_id}.txt"
        assert hashlib.sha256(content.encode()).hexdigest() == row.image_id
        assert expected is None or content == expected
    assert set(rows.loc[rows["source_path"].str.startswith(str(csv_file)), "size_bytes"]) == {csv_file.stat().st_size}

    # Re-ingesting unchanged tables reads none of them and adds nothing.
    index = pd.concat([_empty_index(), rows], ignore_index=True)
    monkeypatch.setattr("labeling_dag.ingest.table_texts", _must_not_read)
    again, _ = _ingest(source, work, index)
    assert again.empty

    # A changed table is read again.
    monkeypatch.undo()
    _write(csv_file, "id,text\nn1,Markets rallied.\nn3,Snow.\n")
    os.utime(csv_file, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed, _ = _ingest(source, work, index)
    assert sorted(changed["source_path"]) == [f"{csv_file}#n1", f"{csv_file}#n3"]


def _must_not_read(path: Path) -> list[tuple[str, str]]:
    raise AssertionError(f"{path} was read again")


def test_a_malformed_table_stops_ingestion_before_any_of_it_is_stored(tmp_path: Path) -> None:
    source, work = tmp_path / "source", tmp_path / "work"
    bad = _write(source / "bad.jsonl", '{"text": "first row"}\n{"text": 42}\n')

    with pytest.raises(ValueError, match=f"^{bad}: line 2: 'text' is a number"):
        _ingest(source, work, _empty_index())

    assert not (work / "raw_images").exists()
