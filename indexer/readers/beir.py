"""BEIR: `corpus.jsonl[.gz]` with `_id`, `title`, `text` (optional `metadata`, `mentions`).

PATH is the dataset directory or the corpus file itself. Queries and qrels are read by
`load_queries` and `load_qrels` for evaluation.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from indexer.documents import Document, Mention, validate_mentions
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.io import open_text


def find_file(path: Path, stem: str) -> Path:
    """`stem.jsonl` or `stem.jsonl.gz` in a dataset directory."""
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (path / name).is_file():
            return path / name
    raise ReaderError(f"no {stem}.jsonl or {stem}.jsonl.gz in this directory", str(path))


def _mentions(raw: list, options: ReadOptions) -> list[Mention]:
    out = []
    for m in raw:
        label = m["label"]
        out.append(Mention(int(m["start"]), int(m["end"]), m["text"], options.label_map.get(label, label),
                           source_label=m.get("source_label", label), norm_id=m.get("norm_id"),
                           norm_name=m.get("norm_name"), negation=m.get("negation", "affirmed")))
    return out


def _shape_problem(rec: dict) -> str | None:
    """Why a record's optional fields cannot be stored (`metadata` must be an object, `title` a string)."""
    if not isinstance(rec.get("metadata") or {}, dict):
        return f"`metadata` must be an object, got {type(rec['metadata']).__name__}"
    if not isinstance(rec.get("title") or "", str):
        return f"`title` must be a string, got {type(rec['title']).__name__}"
    if not isinstance(rec.get("mentions") or [], list):
        return f"`mentions` must be a list, got {type(rec['mentions']).__name__}"
    return None


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Documents of a BEIR corpus."""
    file = find_file(path, "corpus") if path.is_dir() else path
    source = options.source or (path.name if path.is_dir() else path.parent.name)
    with open_text(file) as handle:
        for no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"line {no}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                yield ReaderError(f"invalid JSON: {exc.msg} at column {exc.colno}", str(file), where)
                continue
            if not isinstance(rec, dict) or "_id" not in rec or not isinstance(rec.get("text"), str):
                yield ReaderError("record needs `_id` and a string `text`", str(file), where)
                continue
            problem = _shape_problem(rec)
            if problem:
                yield ReaderError(problem, str(file), where)
                continue
            meta = {"source": source, **(rec.get("metadata") or {})}
            try:
                mentions = _mentions(rec.get("mentions") or [], options)
            except (KeyError, TypeError, ValueError) as exc:
                yield ReaderError(f"bad mention: {exc!r}", str(file), where)
                continue
            doc = Document(str(rec["_id"]), rec.get("title") or "", rec["text"], meta, mentions)
            problems = validate_mentions(doc)
            if problems:
                yield ReaderError(problems[0], str(file), where)
                continue
            yield doc


def load_queries(path: Path) -> dict[str, str]:
    """query id -> text from queries.jsonl[.gz]."""
    out = {}
    file = find_file(path, "queries")
    with open_text(file) as handle:
        for no, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rec = json.loads(line)
                    out[str(rec["_id"])] = rec["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ReaderError(f"bad query record: {exc!r}", str(file), f"line {no}") from None
    return out


def load_qrels(path: Path, split: str) -> dict[str, dict[str, int]]:
    """query id -> {doc id: grade} from qrels/<split>.tsv (header optional)."""
    file = path / "qrels" / f"{split}.tsv"
    if not file.is_file():
        have = sorted(p.stem for p in (path / "qrels").glob("*.tsv")) if (path / "qrels").is_dir() else []
        raise ReaderError(f"no qrels for split {split!r}; available splits: {', '.join(have) or 'none'}", str(path))
    out: dict[str, dict[str, int]] = {}
    with open_text(file) as handle:
        for no, row in enumerate(csv.reader(handle, delimiter="\t"), 1):
            if not row or (no == 1 and not row[-1].lstrip("-").isdigit()):
                continue
            if len(row) < 3:
                raise ReaderError(f"expected query-id, corpus-id, score; got {row!r}", str(file), f"line {no}")
            try:
                out.setdefault(row[0], {})[row[1]] = int(row[-1])
            except ValueError:
                raise ReaderError(f"score {row[-1]!r} is not an integer", str(file), f"line {no}") from None
    return out
