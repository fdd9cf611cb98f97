"""Keyword-mode latency alone on `searchd bench`'s synthetic store, per filter, with the store calls it makes.

`python -m searchd.eval.keyword_latency CHUNKS WORKDIR [QUERIES]` builds (once) the bench's
synthetic store of CHUNKS chunks in WORKDIR (no vectors, no model) and times keyword queries
through SearchService.search under the bench's filters, printing p50/p95/p99 and the time per
query of each store read behind BM25. It runs unchanged against older code (store methods it
does not find are skipped), so two versions can be timed side by side on one store. With
search.impact_lists in the settings, each filter runs twice, impact lists on and off, in turn.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from indexer.settings import load_settings
from indexer.store import DocumentStore
from searchd.eval import bench
from searchd.service import SearchService

READS = ("keyword_scored", "keyword_chunks", "phrase_counts", "phrase_rows", "term_impacts", "phrase_tokens")


def main(n_chunks: int, work: Path, n_queries: int = 200) -> None:
    """Build the store when missing, then print one latency row per filter."""
    s = load_settings()
    s = s.replace(index=dataclasses.replace(s.index, dir=work))
    if not (work / "store.sqlite").is_file():
        from indexer.importing import import_documents, open_store

        store = open_store(s)
        n_docs = n_chunks // bench.CHUNKS_PER_DOC
        import_documents(store, "bench", bench._synthetic_corpus(n_docs, bench._sentences(s)),
                         bench._paragraph_chunker, bench.BATCH, n_docs, "bench store")
        store.close()
    svc = SearchService.keyword_only(DocumentStore(work / "store.sqlite", create=False), s)
    calls: dict[str, list[float]] = {}
    for name in (n for n in READS if hasattr(DocumentStore, n)):
        real = getattr(svc.store, name)

        def timed(*args, _real=real, _name=name, **kwargs):
            t = time.perf_counter()
            out = _real(*args, **kwargs)
            calls.setdefault(_name, []).append(time.perf_counter() - t)
            return out
        setattr(svc.store, name, timed)
    queries = bench._queries(s, n_queries)
    svc.search(svc.parse({"q": "warm up", "mode": "keyword"}))
    toggles = (True, False) if hasattr(s.search, "impact_lists") else (None,)
    if toggles[0] and svc.store.term_impacts(svc.bm25_weights()) is None:
        svc.store.build_impacts(svc.bm25_weights(), s.search.impact_list_size)
    for label, flt in bench._filters(svc):
        for on in toggles:
            if on is not None:
                svc.settings = svc.settings.replace(search=dataclasses.replace(svc.settings.search, impact_lists=on))
            times = []
            calls.clear()
            for q in queries:
                t = time.perf_counter()
                svc.search(svc.parse({"q": q, "mode": "keyword", **flt}))
                times.append((time.perf_counter() - t) * 1000)
            per = ", ".join(f"{k} {1000 * sum(v) / len(queries):.1f} ms/q ({len(v) / len(queries):.1f}/q)"
                            for k, v in calls.items())
            p50, p95, p99 = np.percentile(times, [50, 95, 99])
            name = label if on is None else f"{label} [lists {'on' if on else 'off'}]"
            print(f"{name:40} p50 {p50:6.1f} p95 {p95:6.1f} p99 {p99:6.1f} max {max(times):6.1f} | {per}",
                  flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]).resolve(), int(sys.argv[3]) if len(sys.argv) > 3 else 200)
