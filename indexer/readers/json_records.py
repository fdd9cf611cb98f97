"""JSON and JSONL records with a field mapping (formats `json` and `jsonl`).

ReadOptions.fields maps the document fields to record fields, dotted paths allowed:
`indexer import --format jsonl --field text=body.full --field date=meta.decided --field court=court.name`.
Fields: id, title, text, date, doc_type, court, source, and for `json` `records` (the dotted path of
the list of records inside the file; by default the file is a list, or one record). An unmapped
field is read from the record's field of the same name when it has one. Without an
`id` mapping the id is the record's `id`, `_id` or `doc_id`, else `<file stem>-<record number>`.
The source facet is --source, else the record's `source` field, else the folder (or file) name.
A text given as a list of strings is joined by blank lines. Dates become ISO (YYYY-MM-DD or YYYY);
one that does not parse is kept in meta["date_raw"]. Files may be gzipped; a directory is read
file by file (*.json, *.jsonl, *.ndjson and their .gz).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from indexer.documents import Document
from indexer.errors import ReaderError, choices
from indexer.readers import ReadOptions, Record
from indexer.readers.io import open_text
from indexer.readers.util import files_under, iso_date

FIELDS = ("id", "title", "text", "date", "doc_type", "court", "source", "records")
DEFAULT_IDS = ("id", "_id", "doc_id")
MISSING = object()


def lookup(record: Any, path: str) -> Any:
    """The value at a dotted path (`a.b.0.c`: list items by index), or MISSING."""
    value = record
    for key in path.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            return MISSING
    return value


def check_fields(fields: dict[str, str]) -> None:
    """Refuse mapping names that are not document fields."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ReaderError(f"unknown field mapping {choices(unknown)}; valid names: {', '.join(FIELDS)}")


def _string(value: Any) -> str | None:
    if value is MISSING or value is None:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    return value if isinstance(value, str) else str(value) if isinstance(value, (int, float)) else None


def to_document(record: Any, n: int, stem: str, options: ReadOptions, source: str | None = None) -> Document:
    """A record as a Document; ValueError names what is missing."""
    if not isinstance(record, dict):
        raise ValueError(f"record is a JSON {type(record).__name__}, not an object")
    fields = options.fields
    text = _string(lookup(record, fields.get("text", "text")))
    if text is None or not text.strip():
        raise ValueError(f"no text at field {fields.get('text', 'text')!r} (map it with --field text=NAME)")
    if "id" in fields:
        doc_id = _string(lookup(record, fields["id"]))
        if doc_id is None:
            raise ValueError(f"no id at field {fields['id']!r}")
    else:
        found = [_string(record.get(k)) for k in DEFAULT_IDS if record.get(k) is not None]
        doc_id = found[0] if found and found[0] else f"{stem}-{n}"
    meta: dict[str, Any] = {"source": options.source or source or stem}
    for name in ("source", "doc_type", "court", "date"):  # unmapped: a field of the same name, if any
        if name == "source" and options.source:
            continue
        value = _string(lookup(record, fields.get(name, name)))
        if value is not None:
            meta[name] = value
    if "date" in meta and iso_date(meta["date"]) != meta["date"]:
        raw = meta.pop("date")
        iso = iso_date(raw)
        meta.update({"date": iso} if iso else {"date_raw": raw})
    return Document(doc_id, _string(lookup(record, fields.get("title", "title"))) or "", text, meta)


def _records(file: Path, jsonl: bool, options: ReadOptions) -> Iterator[tuple[str, Any]]:
    """(where, record) pairs; a line or file that is not JSON gives (where, ReaderError)."""
    with open_text(file) as handle:
        if jsonl:
            for no, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield f"line {no}", json.loads(line)
                    except json.JSONDecodeError as exc:
                        yield f"line {no}", ReaderError(f"invalid JSON: {exc.msg} at column {exc.colno}",
                                                        str(file), f"line {no}")
            return
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:  # the file is lost, the folder's other files are not
            yield "file", ReaderError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", str(file))
            return
    if "records" in options.fields:
        data = lookup(data, options.fields["records"])
        if not isinstance(data, list):
            yield "file", ReaderError(f"no list of records at {options.fields['records']!r}", str(file))
            return
    for n, record in enumerate(data if isinstance(data, list) else [data], 1):
        yield f"record {n}", record


def read_records(path: Path, options: ReadOptions, jsonl: bool) -> Iterator[Record]:
    """Documents of a JSON or JSONL file or directory."""
    check_fields(options.fields)
    suffixes = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz") if jsonl else (".json", ".json.gz")
    folder_source = path.name if path.is_dir() else None  # one source for a folder of files
    for file in files_under(path, suffixes):
        stem = file.name.split(".")[0]
        for n, (where, record) in enumerate(_records(file, jsonl, options), 1):
            if isinstance(record, ReaderError):
                yield record
                continue
            try:
                yield to_document(record, n, stem, options, folder_source)
            except ValueError as exc:
                yield ReaderError(str(exc), str(file), where)


def count(path: Path, options: ReadOptions) -> int | None:
    """Non-blank lines of JSONL files (one record each); None for JSON, where it takes a parse."""
    files = files_under(path, (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".json", ".json.gz"))
    if any(".json" in f.name and ".jsonl" not in f.name for f in files):
        return None
    total = 0
    for file in files:
        with open_text(file) as handle:
            total += sum(1 for line in handle if line.strip())
    return total


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Documents of a JSON file (a list of records, or one record) or directory of them."""
    return read_records(path, options, jsonl=False)


def read_jsonl(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Documents of a JSONL file (one record per line) or directory of them."""
    return read_records(path, options, jsonl=True)
