"""Evaluation sets from data that has pairs, written in BEIR layout so every dataset is measured alike.

- PubTator (BC5CDR, NCBI-disease): the title is the query, its own abstract the one relevant
  document. The corpus holds the abstracts only (the title is removed, or the query would be
  in its answer), with the gold mentions that fall inside the abstract, shifted.
- MedQuAD: the question is the query, its answer the relevant document. Documents of one
  source page share a focus, so the seeded dev fold is drawn over (source, page) groups,
  never over single questions; the corpus holds the answers of the fold only.
- BEIR sets with train qrels only (SciFact): `dev_fold` picks the dev queries by the embedder's
  seeded draw (`indexer.folds`); `searchd eval --fold dev` uses it in place, without copying the corpus.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from indexer.documents import Document
from indexer.errors import ConfigError, ReaderError, choices
from indexer.folds import split_ids
from indexer.importing import CorpusReader
from indexer.readers import ReadOptions
from indexer.readers.medquad import answered_rows

FOLDS = ("train", "dev", "all")


@dataclass
class EvalSet:
    """A BEIR-style evaluation set held in memory."""

    name: str
    corpus: list[dict[str, Any]] = field(default_factory=list)  # BEIR corpus records
    queries: dict[str, str] = field(default_factory=dict)  # query id -> text
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)  # query id -> {doc id: grade}


def dev_fold(ids: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The dev share of ids, drawn by `indexer.folds.split_ids` as the embedder's training draws it."""
    if not 0.0 < fraction < 1.0:  # an empty dev or train fold would score nothing
        raise ConfigError(f"dev fraction {fraction!r} must be between 0 and 1 (exclusive)")
    return split_ids(ids, fraction, seed)[1]


def select_fold(ids: Iterable[str], fold: str, fraction: float, seed: int) -> set[str]:
    """The ids of one fold: 'dev' (seeded share), 'train' (the rest) or 'all'."""
    ids = set(ids)
    if fold not in FOLDS:
        raise ConfigError(f"unknown fold {fold!r}; valid folds: {choices(FOLDS)}")
    if fold == "all":
        return ids
    dev = dev_fold(ids, fraction, seed)
    return dev if fold == "dev" else ids - dev


def _abstract_record(doc: Document) -> dict[str, Any] | None:
    """The abstract of a PubTator document as a BEIR record, mentions shifted past the title."""
    shift = len(doc.title) + 1  # the reader joins title and abstract with one space
    abstract = doc.text[shift:] if doc.text.startswith(doc.title) else doc.text
    if not abstract.strip():
        return None
    mentions = [{"start": m.start - shift, "end": m.end - shift, "text": m.text, "label": m.label,
                 "source_label": m.source_label, "norm_id": m.norm_id}
                for m in doc.mentions if m.start >= shift]
    meta = {k: v for k, v in doc.meta.items() if k in ("source", "doc_type", "date")}
    return {"_id": doc.id, "title": "", "text": abstract, "metadata": meta, "mentions": mentions}


def from_pubtator(path: Path, name: str, label_map: dict[str, str] | None = None) -> EvalSet:
    """Title -> abstract pairs from a PubTator file: one query and one relevant abstract per document."""
    out = EvalSet(name)
    options = ReadOptions(label_map=label_map or {}, source=name)
    for record in CorpusReader("pubtator", path, options):
        entry = _abstract_record(record)
        if entry is None or not record.title.strip():
            continue
        out.corpus.append(entry)
        out.queries[record.id] = record.title
        out.qrels[record.id] = {record.id: 1}
    if not out.queries:
        raise ReaderError("no document with both a title and an abstract", str(path))
    return out


def _medquad_rows(path: Path) -> list[dict[str, Any]]:
    """Answered MedQuAD rows, ids prefixed by their source site."""
    return [{**r, "qid": f"{r['source'] or 'medquad'}:{r['qid']}"} for r in answered_rows(path)]


def from_medquad(path: Path, name: str, fold: str, fraction: float, seed: int) -> EvalSet:
    """Question -> answer pairs of one MedQuAD fold, drawn over source pages; identical answers merged."""
    rows = _medquad_rows(path)
    keep = select_fold((r["group"] for r in rows), fold, fraction, seed)
    out = EvalSet(name)
    answer_id: dict[str, str] = {}
    for r in rows:
        if r["group"] not in keep:
            continue
        if r["answer"] not in answer_id:
            answer_id[r["answer"]] = f"a:{r['qid']}"
            # no title: the focus names the topic the question asks about, which would leak the query
            out.corpus.append({"_id": answer_id[r["answer"]], "title": "", "text": r["answer"],
                               "metadata": {"source": "medquad", "doc_type": "answer", "site": r["source"],
                                            "qtype": r["qtype"]}})
        out.queries[r["qid"]] = r["question"]
        out.qrels[r["qid"]] = {answer_id[r["answer"]]: 1}
    return out


def write_beir(evalset: EvalSet, out_dir: Path, split: str) -> dict[str, int]:
    """Write corpus.jsonl, queries.jsonl and qrels/<split>.tsv; returns the counts written."""
    (out_dir / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(out_dir / "corpus.jsonl", evalset.corpus)
    _write_jsonl(out_dir / "queries.jsonl", ({"_id": q, "text": t} for q, t in evalset.queries.items()))
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{q}\t{d}\t{g}" for q, docs in evalset.qrels.items() for d, g in docs.items()]
    tmp = out_dir / "qrels" / f".{split}.tsv.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out_dir / "qrels" / f"{split}.tsv")
    return {"documents": len(evalset.corpus), "queries": len(evalset.queries),
            "judgments": sum(len(d) for d in evalset.qrels.values())}


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write aside and rename, so a half-written set never looks complete."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for rec in records:
            handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)


def fold_queries(queries: dict[str, str], qrels: dict[str, dict[str, int]], fold: str | None,
                 fraction: float, seed: int) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Restrict queries and qrels to a seeded fold of the judged query ids (None = unchanged)."""
    if fold is None:
        return queries, qrels
    keep = select_fold(qrels.keys(), fold, fraction, seed)
    return ({q: t for q, t in queries.items() if q in keep}, {q: j for q, j in qrels.items() if q in keep})


def sample_queries(qids: Sequence[str], limit: int, seed: int) -> list[str]:
    """At most `limit` query ids, a seeded sample in sorted order (limit 0 = all)."""
    ordered = sorted(qids)
    if limit <= 0 or limit >= len(ordered):
        return ordered
    return sorted(random.Random(seed).sample(ordered, limit))
