"""`searchd bench --filter-harness`: filtered vector search side by side, the same queries for every engine.

100,000 random unit vectors (256 dims by default) carry one categorical attribute whose values
cover 30%, 3%, 0.3% and 0.03% of the rows; each filter allows one value. Engines:

- medlex `FaissIndex.search_rows` (flat and HNSW): the planner the search service uses, given
  the row mask the service would build (a comparison over the category codes); on flat once on
  one thread and once split over `index.scan_threads` (when that is more than one);
- FAISS alone through an `IDSelectorBitmap` over the rows (`FaissIndex.search_bitmap`);
- a numpy scan of the allowed rows, which is exact and is the reference for recall.

Every time includes building that engine's per-query filter structure from the category codes.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from indexer.settings import IndexSettings

SHARES = (0.30, 0.03, 0.003, 0.0003)
Engine = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (query, row mask) -> chunk ids, best first


def _corpus(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors, sparse ascending ids (like a store's after deletions) and a category per row."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.sort(rng.choice(10 * n, n, replace=False)).astype(np.int64)
    # category c covers SHARES[c] of the rows; the rest share one more value
    category = np.searchsorted(np.cumsum(SHARES), rng.random(n), side="right").astype(np.int8)
    return vectors, ids, category


def _numpy_scan(vectors: np.ndarray, ids: np.ndarray, k: int) -> Engine:
    def search(q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        pos = np.flatnonzero(rows)
        scores = vectors[pos] @ q
        top = np.argpartition(-scores, k - 1)[:k] if len(pos) > k else np.arange(len(pos))
        return ids[pos[top[np.lexsort((ids[pos[top]], -scores[top]))]]]
    return search


def _time(engine: Engine, queries: np.ndarray, mask_of: Callable[[], np.ndarray]) -> tuple[list[float], list]:
    times, results = [], []
    for q in queries:
        started = time.perf_counter()
        results.append(engine(q, mask_of()))
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def run_harness(settings: IndexSettings, n: int = 100_000, dim: int = 256, n_queries: int = 200,
                k: int = 10) -> list[tuple[str, str, str, str]]:
    """Rows (engine, filter, p50 / p99 ms, recall@k against the exact scan) of the filtered-search harness."""
    from dataclasses import replace

    from indexer.vector_index import FaissIndex

    vectors, ids, category = _corpus(n, dim)
    queries = _corpus(n_queries, dim, seed=1)[0]
    engines: list[tuple[str, Engine]] = [("numpy scan (exact)", _numpy_scan(vectors, ids, k))]
    for kind in ("flat", "hnsw"):
        started = time.perf_counter()
        index = FaissIndex.create(dim, kind, settings, n)
        index.add(vectors, ids)
        print(f"  built {index.description} over {n} vectors in {time.perf_counter() - started:.0f} s", flush=True)
        if index.is_flat and index.scan_threads > 1:
            one = FaissIndex(index.index, replace(settings, scan_threads=1), index.description)
            engines.append((f"medlex FaissIndex {index.description}, 1 thread",
                            lambda q, r, x=one: x.search_rows(q, k, r)[1]))
            name = f"medlex FaissIndex {index.description}, split over {index.scan_threads} threads"
        else:
            name = f"medlex FaissIndex {index.description}"
        engines += [(name, lambda q, r, x=index: x.search_rows(q, k, r)[1]),
                    (f"FAISS {index.description} + IDSelectorBitmap", lambda q, r, x=index: x.search_bitmap(q, k, r)[1])]
    rows = []
    for value, share in enumerate(SHARES):
        mask_of = lambda v=value: category == v  # noqa: E731  the per-query work a filter costs every engine
        truth = None
        for name, engine in engines:
            times, results = _time(engine, queries, mask_of)
            truth = truth or results  # the exact scan runs first
            recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / max(len(b), 1) for a, b in zip(results, truth)])
            p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
            rows.append((name, f"{100 * share:g}% allowed ({int((category == value).sum())} rows)",
                         f"p50 {p50:.3f} / p99 {p99:.3f} ms", f"recall@{k} {recall:.3f}"))
    return rows


def format_table(title: str, rows: list[tuple[str, ...]]) -> str:
    """A title line and left-aligned columns."""
    width = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join([title] + ["  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip() for r in rows])
