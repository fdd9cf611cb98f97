"""Eval sets whose corpus is read from the data directory: queries and judgments in the repository, text never.

A reader set is a folder with `corpora.json`, `queries.jsonl` and `qrels/<split>.tsv` (the
layout of `eval/legal-queries/`). `corpora.json` names the corpora and how to read them:

    {"name": "legal-queries",
     "corpora": [{"prefix": "bva", "format": "bva", "path": "bva-decisions/summarization/single_issue_PTSD_sample"},
                 {"prefix": "nv", "format": "nv-bme", "path": "nv-medical-board-malpractice-filings"}]}

An entry may keep only some document types (`"doc_types": ["complaint"]`) or the first
`"limit"` documents in the reader's order. Each document's id in the qrels is `<prefix>:<id the reader gives it>`, which comes from the
source's file names (BVA citation number, Nevada `<year>/<file stem>`, CAP case id), so the
judgments stay valid across imports. `materialise` reads the corpora with the same readers as
`indexer import` into a BEIR folder under eval.evalsets_dir (rewritten only when the corpus
changed), checks every judged id against it, and `searchd eval` runs that folder.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

from indexer.errors import ReaderError
from indexer.settings import Settings

MANIFEST = "corpora.json"
GRADES = (0, 1, 2)
_PREFIX = re.compile(r"[a-z][a-z0-9-]*")


def is_reader_set(path: Path) -> bool:
    """True when the folder describes its corpus in corpora.json instead of holding one."""
    return (path / MANIFEST).is_file()


def read_manifest(path: Path) -> dict[str, Any]:
    """corpora.json, checked: a name and a list of {prefix, format, path}; errors name the bad entry."""
    from indexer.readers import FORMATS

    file = path / MANIFEST
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReaderError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", str(file)) from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ReaderError("expected an object with a `name` string and a `corpora` list", str(file))
    corpora = data.get("corpora")
    if not isinstance(corpora, list) or not corpora:
        raise ReaderError("`corpora` must be a non-empty list of {prefix, format, path}", str(file))
    seen: set[str] = set()
    for i, entry in enumerate(corpora, 1):
        where = f"corpora entry {i}"
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("prefix", "format", "path")):
            raise ReaderError("each entry needs string `prefix`, `format` and `path`", str(file), where)
        if not _PREFIX.fullmatch(entry["prefix"]) or entry["prefix"] in seen:
            raise ReaderError(f"prefix {entry['prefix']!r} must be unique, lower case letters, digits or '-'",
                              str(file), where)
        if not isinstance(entry.get("doc_types", []), list) or not isinstance(entry.get("limit", 0), int):
            raise ReaderError("`doc_types` must be a list of document types and `limit` a whole number",
                              str(file), where)
        if entry["format"] not in FORMATS:
            raise ReaderError(f"unknown format {entry['format']!r}; valid: {', '.join(sorted(FORMATS))}",
                              str(file), where)
        seen.add(entry["prefix"])
    return data


def read_queries(path: Path) -> dict[str, str]:
    """queries.jsonl: one {"_id", "text"} object per line; errors name the line."""
    file = path / "queries.jsonl"
    if not file.is_file():
        raise ReaderError("no queries.jsonl in this eval set", str(path))
    out: dict[str, str] = {}
    for no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReaderError(f"invalid JSON: {exc.msg} at column {exc.colno}", str(file), f"line {no}") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("_id"), str) or not isinstance(rec.get("text"), str) \
                or not rec["text"].strip():
            raise ReaderError("expected an object with string `_id` and non-empty `text`", str(file), f"line {no}")
        if rec["_id"] in out:
            raise ReaderError(f"query id {rec['_id']!r} appears twice", str(file), f"line {no}")
        out[rec["_id"]] = rec["text"]
    return out


def read_qrels(path: Path, split: str) -> dict[str, dict[str, int]]:
    """qrels/<split>.tsv: `query-id corpus-id score` with a header line and grades 0, 1 or 2."""
    file = path / "qrels" / f"{split}.tsv"
    if not file.is_file():
        raise ReaderError(f"no qrels/{split}.tsv in this eval set", str(path))
    out: dict[str, dict[str, int]] = {}
    for no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        cells = line.split("\t")
        if no == 1 and cells[0] == "query-id" or not line.strip():
            continue
        if len(cells) != 3 or cells[2].strip() not in {str(g) for g in GRADES}:
            raise ReaderError(f"expected `query-id<TAB>corpus-id<TAB>grade` with a grade in {GRADES}, got {line!r:.80}",
                              str(file), f"line {no}")
        qid, doc = cells[0].strip(), cells[1].strip()
        if doc in out.setdefault(qid, {}):
            raise ReaderError(f"document {doc!r} is judged twice for query {qid!r}", str(file), f"line {no}")
        out[qid][doc] = int(cells[2])
    return out


def check(path: Path, split: str, doc_ids: set[str]) -> dict[str, int]:
    """Every judged query has text and every judged document is in the corpus; counts of what is there."""
    queries, qrels = read_queries(path), read_qrels(path, split)
    for qid, docs in qrels.items():
        if qid not in queries:
            raise ReaderError(f"query {qid!r} is judged in qrels/{split}.tsv but not in queries.jsonl", str(path))
        unknown = sorted(set(docs) - doc_ids)
        if unknown:
            raise ReaderError(f"query {qid!r} judges {unknown[0]!r}, which no corpus in {MANIFEST} holds "
                              f"({len(unknown)} such; ids are <prefix>:<reader id>)", str(path))
    return {"queries": len(queries), "judged_queries": len(qrels),
            "judgments": sum(len(d) for d in qrels.values()),
            "relevant": sum(g > 0 for d in qrels.values() for g in d.values())}


def records(path: Path, settings: Settings) -> Iterator[dict[str, Any]]:
    """BEIR corpus records of every corpus the manifest names, read from the data directory."""
    from indexer.importing import CorpusReader
    from indexer.readers import ReadOptions

    for entry in read_manifest(path)["corpora"]:
        source = settings.data_path(Path(entry["path"]))
        if not source.exists():
            raise ReaderError(f"corpus {entry['prefix']!r} is not in the data directory (data.dir or "
                              "MEDLEX_DATA_DIR)", str(source))
        kinds = set(entry.get("doc_types") or ())
        reader = CorpusReader(entry["format"], source, ReadOptions(label_map=settings.train_ner.label_map))
        taken = 0
        for doc in reader:
            if kinds and doc.meta.get("doc_type") not in kinds:
                continue
            if entry.get("limit") and taken >= entry["limit"]:
                break
            taken += 1
            meta = {k: doc.meta[k] for k in ("source", "doc_type", "court", "date") if doc.meta.get(k)}
            yield {"_id": f"{entry['prefix']}:{doc.id}", "title": doc.title, "text": doc.text, "metadata": meta}


def materialise(path: Path, split: str, settings: Settings, checked: bool = True) -> Path:
    """The BEIR folder of a reader set (written under eval.evalsets_dir/<name>), checked against its qrels."""
    from searchd.eval.evalsets import _write_jsonl

    name = read_manifest(path)["name"]
    out = settings.eval.evalsets_dir / name
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.jsonl"
    stamp = out / "source.json"
    want = {"manifest": (path / MANIFEST).read_text(encoding="utf-8"), "data_dir": str(settings.data_path(Path(".")))}
    if not corpus.is_file() or not stamp.is_file() or json.loads(stamp.read_text(encoding="utf-8")) != want:
        _write_jsonl(corpus, records(path, settings))  # unchanged text keeps the eval index's corpus digest
        stamp.write_text(json.dumps(want), encoding="utf-8")
    ids = {json.loads(line)["_id"] for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip()}
    if checked:
        check(path, split, ids)
    (out / "queries.jsonl").write_text((path / "queries.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    for qrels in (path / "qrels").glob("*.tsv"):
        (out / "qrels" / qrels.name).write_text(qrels.read_text(encoding="utf-8"), encoding="utf-8")
    return out
