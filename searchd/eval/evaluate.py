"""Run a BEIR-format eval set through SearchService.search for several systems and score it.

Every query goes through the same `search(Query)` call that users hit, asking for `depth`
hits (paged by search.max_k), so what is measured is what users get. A system is a search
mode plus the embedder whose index serves it: bm25 (keyword), dense-base (the packaged
MiniLM), dense-tuned (var/models/embedder when trained), hybrid (the configured embedder),
hybrid-entities (hybrid with entity filters taken from the query text); hybrid-rerank and
dense-tuned-rerank are hybrid and dense-tuned with the cross-encoder reranking their top
eval.rerank_depth documents inside the same `search` call (search.rerank_depth).
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
from searchd.eval.evalsets import fold_queries, sample_queries
from searchd.eval.metrics import Cutoffs, relevant, score_run


@dataclass(frozen=True)
class SystemSpec:
    mode: str  # dense | keyword | hybrid
    embedder: str  # base | tuned | configured: whose index serves the system
    entity_filters: bool = False  # filter on Disease/Drug entities named in the query
    rerank: bool = False  # the cross-encoder reranks the top eval.rerank_depth documents


SYSTEMS: dict[str, SystemSpec] = {
    "bm25": SystemSpec("keyword", "base"),
    "dense-base": SystemSpec("dense", "base"),
    "dense-tuned": SystemSpec("dense", "tuned"),
    "hybrid": SystemSpec("hybrid", "configured"),
    "hybrid-entities": SystemSpec("hybrid", "configured", entity_filters=True),
    "hybrid-rerank": SystemSpec("hybrid", "configured", rerank=True),
    "dense-tuned-rerank": SystemSpec("dense", "tuned", rerank=True),
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
    folds = settings.train_embedder  # the embedder's own draw, so --fold dev is what it never trained on
    queries, qrels = fold_queries(load_queries(dataset), load_qrels(dataset, split), fold,
                                  folds.dev_fraction, folds.seed)
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
    fusion: dict[str, int] = field(default_factory=dict)  # hybrid: "profile: rule d:k wDEPTH" -> queries


def fetch_ranking(searcher: Searcher, query_type: Callable[..., Any], text: str, mode: str, depth: int,
                  page: int, filters: Mapping[str, tuple[str, ...]], seen: dict[str, int] | None = None) -> list[str]:
    """External ids of the top `depth` hits, asked for in pages of at most `page`; `seen` counts the fusion
    each query ran with (SearchResult.fusion of its first page)."""
    ids: list[str] = []
    while len(ids) < depth:
        k = min(page, depth - len(ids))
        result = searcher.search(query_type(text, mode=mode, k=k, offset=len(ids), filters=dict(filters)))
        fused = getattr(result, "fusion", None)
        if seen is not None and fused and not ids:
            key = f"{fused['profile']}: {fused['rule']} {fused['dense_weight']:g}:{fused['keyword_weight']:g} " \
                  f"w{fused['depth']}"
            seen[key] = seen.get(key, 0) + 1
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
            run.rankings[qid] = fetch_ranking(searcher, query_type, text, spec.mode, depth, page, filters, run.fusion)
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
            "entity_filtered_queries": run.filtered, "fusion": run.fusion}


def embedder_dirs(settings: Settings) -> dict[str, Path | None]:
    """Model dir of each embedder kind: base (packaged MiniLM), tuned (None when not trained), configured."""
    from indexer.models import packaged_model_dir, resolve_embedder_dir, resolve_model_dir

    base = packaged_model_dir()
    tuned = resolve_model_dir("auto", settings.train_embedder.output_dir)
    return {"base": base, "tuned": None if tuned == base else tuned, "configured": resolve_embedder_dir(settings)}


def _label(model_dir: Path, dirs: Mapping[str, Path | None]) -> str:
    if model_dir == dirs["base"]:
        return "MiniLM-L6 (base)"
    return f"fine-tuned ({model_dir.name})" if model_dir == dirs["tuned"] else str(model_dir)


class Services:
    """One SearchService per embedder over the dataset's eval index, built or reused on first use."""

    def __init__(self, dataset: Path, name: str, settings: Settings, keyword_only: bool = False):
        self.dataset, self.name, self.settings = dataset, name, settings
        self.keyword_only = keyword_only  # every system is BM25: build the store only, encode nothing
        self.open: dict[Path, Any] = {}
        self.indexes: dict[str, dict[str, Any]] = {}
        self.reranker: Any = None  # loaded on the first rerank system

    def get(self, model_dir: Path) -> Any:
        from searchd.eval.indexes import ensure_index, ensure_store
        from searchd.service import SearchService

        if model_dir not in self.open:
            if self.keyword_only:
                from indexer.pipeline import open_store

                s, info = ensure_store(self.dataset, self.name, model_dir, self.settings)
                # keyword mode reads only the store (FTS5); there is no vector index or embedder to load
                self.open[model_dir] = SearchService.keyword_only(open_store(s, create=False), s)
            else:
                s, info = ensure_index(self.dataset, self.name, model_dir, self.settings)
                self.open[model_dir] = SearchService.load(s)
            self.indexes[model_dir.name] = info
        return self.open[model_dir]

    def reranking(self, model_dir: Path) -> Any:
        """The embedder's service with the reranker on its top eval.rerank_depth documents (a view of it)."""
        if self.reranker is None:
            from indexer.reranker import load_reranker, store_pairs

            index_dir = self.get(model_dir).settings.index.dir
            self.reranker = load_reranker(self.settings, prepare=True, calibration=lambda: store_pairs(index_dir))
        return self.get(model_dir).with_reranker(self.reranker, self.settings.eval.rerank_depth)

    def close(self) -> None:
        for service in self.open.values():
            service.close()


def evaluate(dataset: Path, split: str, settings: Settings, systems: list[str], fold: str | None = None,
             max_queries: int | None = None) -> tuple[dict[str, Any], dict[str, SystemRun]]:
    """Run the eval set through every system's SearchService.search; the report dict and the raw runs."""
    from searchd.eval.report import comparisons_as_dicts, compare_all

    started = time.perf_counter()
    data = load_eval_data(dataset, split, settings, fold, max_queries)
    systems = check_systems(systems)
    services = Services(dataset, data.name, settings, all(SYSTEMS[n].mode == "keyword" for n in systems))
    try:
        runs, summaries, notes = _run_systems(services, systems, data, settings)
        ann, documents = _index_facts(services, data, settings)
    finally:
        services.close()
    if data.truncated:
        notes.append(f"{data.truncated} queries were cut to search.max_query_chars={settings.search.max_query_chars}")
    notes += _long_query_note(data, settings)
    per_query = {n: s.pop("per_query") for n, s in summaries.items()}
    ev, folds = settings.eval, settings.train_embedder
    report = {"dataset": {"name": data.name, "path": str(dataset), "split": split, "fold": fold,
                          "fold_seed": folds.seed, "dev_fraction": folds.dev_fraction, "queries": len(data.queries),
                          "judged_queries": data.judged, "sample_seed": ev.sample_seed, "documents": documents},
              "depth": ev.depth, "systems": summaries, "notes": notes, "ann": ann, "indexes": services.indexes,
              "permutations": ev.permutations, "seed": ev.sample_seed, "device": _device(settings),
              "comparisons": comparisons_as_dicts(compare_all(per_query, ev.significance_metrics,
                                                              ev.permutations, ev.sample_seed))}
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["query_texts"] = data.queries  # what was searched (the web evaluation page links to it)
    report["per_query"] = per_query
    return report, runs


def _run_systems(services: Services, systems: list[str], data: EvalData,
                 settings: Settings) -> tuple[dict[str, SystemRun], dict[str, dict[str, Any]], list[str]]:
    """Each system's run and summary; a note for each system that could not run."""
    from searchd.query import Query

    dirs = embedder_dirs(settings)
    cutoffs = Cutoffs(accuracy=tuple(settings.eval.k_values), precision_recall=tuple(settings.eval.k_values))
    runs, summaries, notes = {}, {}, []
    for name in systems:
        model = dirs[SYSTEMS[name].embedder]
        if model is None:
            notes.append(f"{name} was not run: no fine-tuned embedder in {settings.train_embedder.output_dir}")
            continue
        service = services.reranking(model) if SYSTEMS[name].rerank else services.get(model)
        runs[name] = run_system(name, service, Query, data, settings.eval.depth, settings.search.max_k,
                                _filters_for(service, settings) if SYSTEMS[name].entity_filters else None)
        keyword = "PostgreSQL ts_rank_cd" if settings.store.url else "FTS5 BM25"
        label = f"none ({keyword})" if SYSTEMS[name].mode == "keyword" else _label(model, dirs)
        if SYSTEMS[name].rerank:
            label += f" + cross-encoder {Path(services.reranker.name).name} (top {settings.eval.rerank_depth})"
        summaries[name] = system_summary(runs[name], data, cutoffs, label)
    return runs, summaries, notes


def _long_query_note(data: EvalData, settings: Settings) -> list[str]:
    """How many queries took the long-query path (chunked encoding, tf-idf keyword terms), and with what settings."""
    s = settings.search
    n = sum(len(t) > s.long_query_chars for t in data.queries.values())
    if not n:
        return []
    return [f"{n} of {len(data.queries)} queries are long (> search.long_query_chars={s.long_query_chars}): encoded in "
            f"at most {s.long_query_chunks} chunks, pooled by {s.long_query_pooling}; "
            f"{s.long_query_terms} keyword terms by tf-idf"]


def _index_facts(services: Services, data: EvalData, settings: Settings) -> tuple[dict[str, Any] | None, int]:
    """ANN quality of a vector index already opened (the configured embedder's when open), and the corpus size."""
    from searchd.eval.indexes import ann_recall

    if not services.open:
        return None, 0
    service = services.open.get(embedder_dirs(settings)["configured"]) or next(iter(services.open.values()))
    documents = service.store.counts()["documents"]
    if services.keyword_only:
        return None, documents
    vectors = service.embedder.embed_queries(list(data.queries.values()))
    return {"index_type": settings.index.type, **ann_recall(service.index, vectors, settings.eval.ann_k)}, documents


def _filters_for(service: Any, settings: Settings) -> Callable[[str], dict[str, tuple[str, ...]]]:
    """Query text -> entity filters, from the affirmed mentions in the service's store."""
    from searchd.eval.indexes import entity_filters, entity_lexicon

    lexicon = entity_lexicon(service.store, settings.search.facet_labels)
    return lambda text: entity_filters(text, lexicon)


def _device(settings: Settings) -> str:
    import os

    import torch

    from indexer.models import resolve_device

    device = resolve_device(settings.embedder.device)
    return f"{device} ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores visible)" \
        if device == "cpu" else device
