"""Judging pools: the union of every system's top hits for each query, to be read and graded by a person.

`searchd pool` runs every query of an eval set (judged or not) through the same
`SearchService.search` as `searchd eval`, takes each system's top `depth` documents, and writes
the candidates not yet in the qrels, each with its title, the systems and ranks that found it and
the passage each system matched (the hit's snippet): what the judge reads alongside the document.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from indexer.settings import Settings
from searchd.eval.evaluate import SYSTEMS, Services, check_systems, embedder_dirs


def pool(dataset: Path, split: str, settings: Settings, systems: list[str], depth: int) -> list[dict[str, Any]]:
    """Candidates (query, document, ranks by system, title, passages) not yet judged in qrels/<split>.tsv."""
    from indexer.readers.beir import load_queries
    from searchd.eval.reader_sets import read_qrels
    from searchd.query import Query

    queries = load_queries(dataset)
    qrels_file = dataset / "qrels" / f"{split}.tsv"
    judged = read_qrels(dataset, split) if qrels_file.is_file() else {}
    dirs = embedder_dirs(settings)
    systems = check_systems(systems)
    services = Services(dataset, dataset.resolve().name, settings, all(SYSTEMS[n].mode == "keyword" for n in systems))
    found: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for name in systems:
            model = dirs[SYSTEMS[name].embedder]
            if model is None:
                continue  # dense-tuned without a trained embedder: nothing to pool
            service = services.get(model)
            for qid, text in queries.items():
                result = service.search(Query(text, mode=SYSTEMS[name].mode, k=depth))
                for hit in result.hits:
                    if hit.external_id in judged.get(qid, {}):
                        continue
                    entry = found.setdefault((qid, hit.external_id), {
                        "query_id": qid, "query": text, "doc": hit.external_id, "title": hit.title,
                        "ranks": {}, "passages": {}})
                    entry["ranks"][name] = hit.rank
                    entry["passages"].setdefault(" ".join(hit.snippet.text.split()), name)
    finally:
        services.close()
    out = sorted(found.values(), key=lambda e: (e["query_id"], min(e["ranks"].values()), e["doc"]))
    for e in out:
        e["passages"] = list(e["passages"])
    return out


def write_pool(candidates: list[dict[str, Any]], out: Path) -> Path:
    """pool.jsonl, one candidate per line; the judge adds `query-id doc grade` lines to the qrels."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pool.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for entry in candidates:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return path
