"""Run a BEIR-format eval set through SearchService.search for several systems and score it.

Every query goes through the same `search(Query)` call that users hit, asking for `depth`
hits (paged by search.max_k), so what is measured is what users get. A system is a search
mode plus the embedder whose index serves it: bm25 (keyword), dense-base (the packaged
MiniLM), dense-tuned (var/models/embedder when trained), hybrid (the configured embedder),
hybrid-entities (hybrid with entity filters taken from the query text).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from indexer.errors import ConfigError, MedlexError, ReaderError, choices
from indexer.readers.beir import load_qrels, load_queries
from indexer.settings import Settings
from searchd.evalsets import fold_queries, sample_queries
from searchd.metrics import Cutoffs, relevant, score_run


@dataclass(frozen=True)
class SystemSpec:
    mode: str  # dense | keyword | hybrid
    embedder: str  # base | tuned | configured: whose index serves the system
    entity_filters: bool = False  # filter on Disease/Drug entities named in the query


SYSTEMS: dict[str, SystemSpec] = {
    "bm25": SystemSpec("keyword", "base"),
    "dense-base": SystemSpec("dense", "base"),
    "dense-tuned": SystemSpec("dense", "tuned"),
    "hybrid": SystemSpec("hybrid", "configured"),
    "hybrid-entities": SystemSpec("hybrid", "configured", entity_filters=True),
}


class Searcher(Protocol):
    def search(self, query: Any) -> Any: ...  # Query -> SearchResult


@dataclass
class EvalData:
    """The queries and judgments of one eval run (after fold selection and sampling)."""

    name: str
    path: Path
    split: str
    fold: str | None
    queries: dict[str, str]  # the queries run, by id
    qrels: dict[str, dict[str, int]]
    judged: int  # judged queries with a relevant document, before sampling
    truncated: int = 0  # queries cut to search.max_query_chars


def load_eval_data(dataset: Path, split: str, settings: Settings, fold: str | None = None,
                   max_queries: int | None = None) -> EvalData:
    """Queries and qrels of a split (optionally a seeded fold and a seeded sample of queries)."""
    ev = settings.eval
    if not dataset.is_dir():
        raise ReaderError("dataset must be a BEIR directory with corpus.jsonl[.gz], queries.jsonl, qrels/",
                          str(dataset))
    queries, qrels = fold_queries(load_queries(dataset), load_qrels(dataset, split), fold,
                                  ev.dev_fraction, ev.fold_seed)
    judged = [q for q in qrels if relevant(qrels[q])]
    missing = [q for q in judged if q not in queries]
    if missing:
        raise ReaderError(f"query {missing[0]!r} is judged in qrels/{split}.tsv but has no text "
                          f"({len(missing)} such)", str(dataset))
    limit = ev.max_queries if max_queries is None else max_queries
    chosen = sample_queries(judged, limit, ev.sample_seed)
    cap = settings.search.max_query_chars
    texts = {q: _fit(queries[q], cap) for q in chosen}
    truncated = sum(len(queries[q]) > cap for q in chosen)
    return EvalData(dataset.resolve().name, dataset, split, fold, texts, {q: qrels[q] for q in chosen},
                    len(judged), truncated)


def _fit(text: str, cap: int) -> str:
    """A query cut at the last space before the length the search API accepts."""
    text = " ".join(text.split())
    if len(text) <= cap:
        return text
    cut = text.rfind(" ", 0, cap)
    return text[:cut if cut > 0 else cap]


def check_systems(names: list[str]) -> list[str]:
    """The requested systems, or a ConfigError naming an unknown one and the valid ones."""
    for name in names:
        if name not in SYSTEMS:
            raise ConfigError(f"unknown eval system {name!r}; valid systems: {choices(SYSTEMS)}")
    return list(dict.fromkeys(names))


@dataclass
class SystemRun:
    """One system's rankings over the eval queries, with its timings and failures."""

    name: str
    mode: str
    rankings: dict[str, list[str]] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    filtered: int = 0  # queries that got entity filters
    seconds: float = 0.0


def fetch_ranking(searcher: Searcher, query_type: Callable[..., Any], text: str, mode: str, depth: int,
                  page: int, filters: Mapping[str, tuple[str, ...]]) -> list[str]:
    """External ids of the top `depth` hits, asked for in pages of at most `page`."""
    ids: list[str] = []
    while len(ids) < depth:
        k = min(page, depth - len(ids))
        result = searcher.search(query_type(text, mode=mode, k=k, offset=len(ids), filters=dict(filters)))
        ids += [hit.external_id for hit in result.hits]
        if len(result.hits) < k:
            break
    return list(dict.fromkeys(ids))  # a document can only count once


def run_system(name: str, searcher: Searcher, query_type: Callable[..., Any], data: EvalData, depth: int,
               page: int, filters_for: Callable[[str], dict[str, tuple[str, ...]]] | None = None) -> SystemRun:
    """Send every eval query through `searcher.search` with a progress bar."""
    from tqdm import tqdm

    spec = SYSTEMS[name]
    run = SystemRun(name, spec.mode)
    start = time.perf_counter()
    for qid, text in tqdm(data.queries.items(), desc=f"{data.name} {name}", unit="query", dynamic_ncols=True):
        filters = filters_for(text) if filters_for else {}
        run.filtered += bool(filters)
        t0 = time.perf_counter()
        try:
            run.rankings[qid] = fetch_ranking(searcher, query_type, text, spec.mode, depth, page, filters)
        except MedlexError as exc:  # a refused query scores as an empty list, and is counted
            run.rankings[qid] = []
            run.errors[qid] = str(exc)
        run.latency_ms[qid] = (time.perf_counter() - t0) * 1000
    run.seconds = time.perf_counter() - start
    return run


def system_summary(run: SystemRun, data: EvalData, cutoffs: Cutoffs, embedder_label: str) -> dict[str, Any]:
    """Scores and timings of one run, JSON-ready; per-query scores under `per_query`."""
    scores = score_run(run.rankings, data.qrels, cutoffs)
    lat = np.array(list(run.latency_ms.values()) or [0.0])
    return {"mode": run.mode, "embedder_label": embedder_label, "mean": scores.mean,
            "per_query": scores.per_query, "skipped": scores.skipped, "seconds": run.seconds,
            "latency_ms_mean": float(lat.mean()), "latency_ms_p95": float(np.percentile(lat, 95)),
            "errors": len(run.errors), "error_examples": dict(list(run.errors.items())[:3]),
            "entity_filtered_queries": run.filtered}
