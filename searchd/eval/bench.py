"""`searchd bench`: build a synthetic index of N chunks and time real queries through the real encoder.

Chunk texts are sentences drawn from a real corpus (nfcorpus in the data directory when
present, else the sample), so BM25 sees a realistic vocabulary; entity and metadata values are
drawn so that filters of known selectivity exist. Encoding speed is measured with the real
embedder on a sample of the chunks; the index itself holds synthetic vectors (real MiniLM
vectors of the sample texts plus noise), because encoding 100,000 chunks takes longer than
this benchmark should. Queries are real query texts encoded by the real embedder, end to end
through SearchService.search, then over HTTP against `searchd serve` in a child process.

`--long-queries N` adds rows for long queries as lawyers paste them (2,000-5,000 characters): the
facts of real BVA decisions and New Mexico opinions (the passages of `searchd make-evalset
bva-long|nm-long`) when the data directory has them, else runs of the corpus's sentences; each
goes through the long-query path (chunked encoding, tf-idf keyword terms) as in the API.
"""
from __future__ import annotations

import json
import os
import random
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import numpy as np

from indexer.documents import Chunk, Document, Mention
from indexer.settings import Settings

CHUNKS_PER_DOC = 5
BATCH = 2000  # synthetic documents drawn and stored per transaction
DOC_TYPES = ["decision", "opinion", "abstract", "complaint", "settlement", "judgment", "order", "brief", "report", "note"]
SOURCES = ["bva", "nm-appeals", "pubmed", "nv-bme", "aila"]
QUERIES = ["veteran denied service connection for PTSD", "malpractice warfarin bleeding", "lithium kidney side effects",
           "physician overprescribing opioids disciplined", "prazosin nightmares veterans", "criminal negligence doctor",
           "vitamin D supplementation and cancer risk", "statin muscle pain", "diet and heart disease mortality",
           "breast cancer screening", "head injury workers compensation", "nursing home pressure ulcers sepsis"]


def _sentences(settings: Settings, limit: int = 20000) -> list[str]:
    """Real sentences for chunk texts: nfcorpus abstracts if available, else the sample corpus."""
    from indexer.importing import CorpusReader

    source = settings.data_path("nfcorpus")
    if not source.is_dir():
        source = Path(__file__).resolve().parents[2] / "tests" / "data" / "sample"
    out: list[str] = []
    for doc in CorpusReader("beir", source, skip_bad=True):
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", doc.text) if len(s.split()) >= 5]
        if len(out) >= limit:
            break
    return out


def _queries(settings: Settings, n: int) -> list[str]:
    from indexer.readers.beir import load_queries

    texts = list(QUERIES)
    if settings.data_path("nfcorpus").is_dir():
        texts += sorted(load_queries(settings.data_path("nfcorpus")).values())[:max(0, n - len(texts))]
    return [texts[i % len(texts)] for i in range(n)]


LONG_MIN, LONG_MAX = 2000, 5000  # characters of a long bench query
LONG_BUDGET_MS = 1500  # p95 of a 5,000-character query on 2 cores (docs/legal-queries.md, "Latency budget")


def _long_queries(settings: Settings, n: int, sentences: list[str]) -> tuple[list[str], str]:
    """n long query texts of LONG_MIN-LONG_MAX characters and where they come from."""
    from indexer.importing import CorpusReader
    from searchd.eval.long_sets import FORMATS, SPANS

    texts: list[str] = []
    sources = []
    for fmt, (_, rel) in FORMATS.items():
        path = settings.data_path(rel)
        if not path.exists():
            continue
        found = 0
        for doc in CorpusReader(fmt, path, skip_bad=True):
            span = SPANS[fmt](doc.text, LONG_MAX)
            if span and span[1] - span[0] >= LONG_MIN:
                texts.append(" ".join(doc.text[span[0]:span[1]].split()))
                found += 1
            if found >= (n + 1) // 2:
                break
        sources.append(f"{found} {fmt} facts")
    if not texts:  # no legal corpora: runs of the corpus's sentences
        rng = random.Random(1)
        for _ in range(n):
            words: list[str] = []
            goal = rng.randint(LONG_MIN, LONG_MAX)
            while sum(len(w) + 1 for w in words) < goal:
                words.append(rng.choice(sentences))
            texts.append(" ".join(words)[:LONG_MAX])
        sources = [f"{n} runs of corpus sentences"]
    texts = [texts[i % len(texts)] for i in range(n)] if texts else []
    lengths = sorted(len(t) for t in texts)
    return texts, f"{', '.join(sources)}; {lengths[0]}-{lengths[-1]} characters, median {lengths[len(lengths) // 2]}"


def _time_queries(service, texts: list[str], mode: str, flt: dict) -> tuple[list[float], dict, int, int]:
    """Each text searched once: (ms per query, stage timings, timeouts, last total). A timed-out query is
    counted and its time (the limit) kept in the percentiles."""
    from searchd.service import SearchTimeout

    times, stages, timeouts, total = [], {}, 0, 0
    for q in texts:
        query = service.parse({"q": q, "mode": mode, **flt})
        started = time.perf_counter()
        try:
            result = service.search(query)
        except SearchTimeout:
            timeouts += 1
            times.append((time.perf_counter() - started) * 1000)
            continue
        times.append((time.perf_counter() - started) * 1000)
        total = result.total
        for key, value in result.timings.items():
            stages.setdefault(key, []).append(value)
    return times, stages, timeouts, total


def _long_latency(service, queries: list[str], rows: list) -> list[tuple]:
    """Long-query rows (no filter, and doc_type ~10%) per mode; returns (mode, filter, p50, p95) for the budget."""
    measured = []
    for name, flt in (("none", {}), ("doc_type (~10%)", {"doc_type": "complaint"})):
        for mode in ("dense", "keyword", "hybrid"):
            times, stages, timeouts, _ = _time_queries(service, queries, mode, flt)
            p50, p95, p99 = _percentiles(times)
            measured.append((mode, name, p50, p95))
            parts = ", ".join(f"{k} {np.median(v):.1f}" for k, v in stages.items() if k != "total")
            rows.append((f"long {mode:7} filter: {name}",
                         f"{len(queries)} queries" + (f", {timeouts} timeouts" if timeouts else ""),
                         f"p50 {p50:.0f} / p95 {p95:.0f} / p99 {p99:.0f} ms", f"median stages (ms): {parts}"))
    return measured


def _long_floor(measured: list[tuple]) -> tuple[str, ...]:
    worst = max(measured, key=lambda m: m[3])
    return (f"budget: long query p95 <= {LONG_BUDGET_MS} ms", f"worst p95 {worst[3]:.0f} ms ({worst[0]}, filter {worst[1]})",
            "met" if worst[3] <= LONG_BUDGET_MS else "NOT met", f"load {os.getloadavg()[0]:.1f}")


def _synthetic_docs(n_docs: int, sentences: list[str], rng: random.Random) -> list[Document]:
    """Documents of CHUNKS_PER_DOC passages separated by blank lines, with Disease/Drug mentions."""
    docs = []
    for i in range(n_docs):
        parts = [" ".join(rng.choice(sentences) for _ in range(3)) for _ in range(CHUNKS_PER_DOC)]
        head = []
        # Zipf-like ids: disease-0 is in about 1/3 of documents, disease-300 in about 0.1%
        for label, pool, count in (("Disease", 2000, rng.randint(1, 4)), ("Drug", 800, rng.randint(0, 2))):
            for _ in range(count):
                head.append((label, f"{label.lower()}-{min(pool - 1, int(rng.paretovariate(0.6)) - 1)}"))
        if i == n_docs // 2:
            head.append(("Disease", "disease-unique"))
        prefix, mentions = "", []
        for label, name in head:
            mentions.append(Mention(len(prefix), len(prefix) + len(name), name, label, norm_id=f"SYN:{name}"))
            prefix += name + " "
        parts[0] = prefix + parts[0]
        year = 1990 + i % 35
        meta = {"source": SOURCES[i % len(SOURCES)], "doc_type": DOC_TYPES[min(int(rng.expovariate(0.45)), 9)],
                "court": f"court-{i % 10}", "date": f"{year}-06-01"}
        docs.append(Document(f"syn-{i}", f"Synthetic document {i}", "\n\n".join(parts), meta, mentions))
    return docs


def _synthetic_corpus(n_docs: int, sentences: list[str]) -> Iterator[Document]:
    """n_docs synthetic documents, drawn BATCH at a time (the unique disease and the facet cycles are per batch)."""
    rng = random.Random(0)
    for start in range(0, n_docs, BATCH):
        docs = _synthetic_docs(min(BATCH, n_docs - start), sentences, rng)
        yield from (replace(d, id=f"syn-{start + j}") for j, d in enumerate(docs))


def _paragraph_chunker(doc: Document) -> list[Chunk]:
    chunks, start = [], 0
    for i, part in enumerate(doc.text.split("\n\n")):
        chunks.append(Chunk(i, start, start + len(part), part))
        start += len(part) + 2
    return chunks


def _percentiles(ms: list[float]) -> tuple[float, float, float]:
    a = np.asarray(ms)
    return float(np.percentile(a, 50)), float(np.percentile(a, 95)), float(np.percentile(a, 99))


def _rss_mb(pid: int | None = None) -> float:
    """Resident memory (MB) of a process from /proc, else this process' peak."""
    path = Path(f"/proc/{pid or os.getpid()}/status")
    if path.is_file():
        match = re.search(r"VmRSS:\s+(\d+) kB", path.read_text())
        if match:
            return int(match.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_index(settings: Settings, n_chunks: int, embedder, rows: list) -> None:
    """Synthetic store + vectors in settings.index.dir; timings appended to rows."""
    from indexer import pipeline
    from indexer.importing import import_documents, open_store
    from indexer.vector_index import FaissIndex

    sentences = _sentences(settings)
    store = open_store(settings)
    n_docs = max(1, n_chunks // CHUNKS_PER_DOC)
    started = time.perf_counter()
    import_documents(store, "bench", _synthetic_corpus(n_docs, sentences), _paragraph_chunker, BATCH, n_docs,
                     "bench store")
    seconds = time.perf_counter() - started
    total = store.counts()["chunks"]
    rows.append(("store import (SQLite + FTS5)", f"{total} chunks", f"{seconds:.1f} s", f"{total / seconds:.0f} chunks/s"))
    sample_ids = store.chunk_ids()[:1024]
    texts = [pipeline.embed_text(t, x, settings) for t, x in store.chunk_texts(sample_ids).values()]
    started = time.perf_counter()
    real = pipeline.encode_texts(embedder, texts, settings.index.build_batch)
    seconds = time.perf_counter() - started
    rows.append(("encode, real embedder (sample)", f"{len(texts)} chunks", f"{seconds:.1f} s",
                 f"{len(texts) / seconds:.0f} chunks/s (full {total}: ~{total / (len(texts) / seconds) / 60:.0f} min)"))
    ids = np.asarray(store.chunk_ids(), dtype=np.int64)
    noise = np.random.default_rng(0).standard_normal((len(ids), embedder.dim)).astype(np.float32)
    vectors = real[np.arange(len(ids)) % len(real)] + 0.05 * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    index = FaissIndex.create(embedder.dim, settings.index.type, settings.index, len(ids))
    index.train(vectors)
    index.add(vectors, ids)
    manifest = pipeline.manifest_for(index, store, pipeline.embedder_identity(embedder), settings, 0.0, len(ids))
    pipeline.commit(settings.index.dir, index, {**manifest, "synthetic_vectors": True})
    seconds = time.perf_counter() - started
    rows.append((f"FAISS {index.description} add + save", f"{len(ids)} vectors", f"{seconds:.1f} s",
                 f"{len(ids) / seconds:.0f} vectors/s"))
    store.close()


def _impact_lists(settings: Settings, index_dir: Path, rows: list) -> None:
    """Build the keyword impact lists when search.impact_lists wants them and the store has none for its state."""
    from indexer.pipeline import build_impact_lists
    from indexer.store import DocumentStore

    with DocumentStore(index_dir / "store.sqlite", create=False) as store:
        started = time.perf_counter()
        n = build_impact_lists(settings, store)
        if n:
            rows.append(("keyword impact lists (FTS5 bm25 per posting)", f"{n} terms",
                         f"{time.perf_counter() - started:.1f} s", ""))


def _filters(service) -> list[tuple[str, dict]]:
    """Filters of about 50%, 10%, 1%, 0.1% of the documents and a single document, found by counting."""
    n = service.store.counts()["documents"]
    counts = service.store.document_frequencies("Disease")
    near = lambda share: min(counts, key=lambda r: abs(r[1] / n - share))  # noqa: E731
    out = [("none", {})]
    year = service.store.median_year()
    out.append(("year >= median (~50%)", {"year_from": str(year)}))
    out.append(("doc_type (~10%)", {"doc_type": "complaint"}))
    for share in (0.01, 0.001):
        nid, c = near(share)
        out.append((f"disease ({100 * c / n:.2g}%)", {"disease": nid}))
    out.append(("disease + drug + year", {"disease": near(0.3)[0], "drug": "SYN:drug-0", "year_from": str(year)}))
    out.append(("single document", {"disease": "SYN:disease-unique"}))
    return out


def _latency(service, queries: list[str], rows: list, modes=("dense", "keyword", "keyword*", "hybrid")) -> list[tuple]:
    """Latency rows per filter and mode; "keyword*" is keyword mode with search.impact_lists off, for comparison.
    Returns (mode, filter, p50, p99) for the floors."""
    measured = []
    on = service.settings
    for name, flt in _filters(service):
        for label in modes:
            mode = label.rstrip("*")
            service.settings = on if label == mode else on.replace(search=replace(on.search, impact_lists=False))
            times, stages, timeouts, total = _time_queries(service, queries, mode, flt)
            p50, p95, p99 = _percentiles(times)
            measured.append((label, name, p50, p99))
            parts = ", ".join(f"{k} {np.median(v):.1f}" for k, v in stages.items() if k != "total")
            service.settings = on
            rows.append((f"{label:8} filter: {name}", f"total {total}" + (f", {timeouts} timeouts" if timeouts else ""),
                         f"p50 {p50:.1f} / p95 {p95:.1f} / "
                         f"p99 {p99:.1f} ms", f"median stages (ms): {parts}"))
    return measured


def _latency_floor(measured: list[tuple]) -> tuple[str, ...]:
    """Dense search with a filter at p50 <= 10 ms and p99 <= 30 ms end to end: the worst filtered row."""
    dense = [m for m in measured if m[0] == "dense" and m[1] != "none"]
    p50, p99 = max(m[2] for m in dense), max(m[3] for m in dense)
    return ("floor: dense + filter p50 <= 10, p99 <= 30 ms", f"worst p50 {p50:.1f} / p99 {p99:.1f} ms",
            "met" if p50 <= 10 and p99 <= 30 else "NOT met", f"load {os.getloadavg()[0]:.1f}")


def _http_floor(results: list[tuple], description: str) -> tuple[str, ...]:
    """16 clients, hybrid with filters: >= 60 QPS on a flat index, >= 120 on HNSW, zero errors (best worker count)."""
    need = 120 if description.startswith("HNSW") else 60
    runs = [r for r in results if r[0] == "hybrid" and r[2] == 16]
    if not runs:
        return ("floor: HTTP hybrid + filter, 16 clients", "not run", "", "")
    workers, qps, errors = max(((r[1], r[3], r[4]) for r in runs), key=lambda r: r[1])
    return (f"floor: HTTP hybrid + filter, 16 clients >= {need} QPS ({description})",
            f"{qps:.1f} QPS with {workers} worker(s), {errors} errors",
            "met" if qps >= need and errors == 0 else "NOT met", f"load {os.getloadavg()[0]:.1f}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HTTP_FILTERS = [{"doc_type": "complaint"}, {"year_from": "2007"}, {"doc_type": "decision", "year_from": "2000"}]


def _get(url: str, timeout: float) -> int:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        json.loads(r.read())
        return r.status


def _wait_ready(base: str, server: subprocess.Popen, limit_s: float = 600) -> None:
    """Until a search answers 200 (one worker loads in the background, several before they accept)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"searchd serve exited with status {server.returncode} before answering")
        try:
            if _get(f"{base}/search?q=warm+up", 30) == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"searchd serve did not answer a search within {limit_s:.0f} s")


def _load_clients(base: str, queries: list[str], mode: str, clients: int, seconds: float) -> tuple[int, dict, list]:
    """`clients` threads sending filtered `mode` searches for `seconds`: (done, errors by kind, latencies in ms)."""
    done, errors, latencies = [0], {}, []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def work(worker: int) -> None:
        i = worker
        while time.monotonic() < stop:
            params = {"q": queries[i % len(queries)], "mode": mode, **HTTP_FILTERS[i % len(HTTP_FILTERS)]}
            started = time.perf_counter()
            kind = None
            try:
                _get(f"{base}/search?{urllib.parse.urlencode(params)}", 60)
            except urllib.error.HTTPError as exc:
                kind = f"HTTP {exc.code}"
            except OSError as exc:
                kind = type(exc).__name__
            with lock:
                if kind is None:
                    done[0] += 1
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors[kind] = errors.get(kind, 0) + 1
            i += clients

    threads = [threading.Thread(target=work, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0], errors, latencies


def _process_memory(pid: int) -> list[tuple[int, float, float]]:
    """(pid, RSS MB, PSS MB) of a process and its children; PSS splits shared pages (the mapped index, libraries)."""
    out = []
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(c) for c in children.read_text().split()] if children.is_file() else []
    for p in [pid, *kids]:
        rollup = Path(f"/proc/{p}/smaps_rollup")
        pss = 0.0
        if rollup.is_file():
            match = re.search(r"^Pss:\s+(\d+) kB", rollup.read_text(), re.M)
            pss = int(match.group(1)) / 1024 if match else 0.0
        out.append((p, _rss_mb(p), pss))
    return out


def _http(settings: Settings, config_args: list[str], queries: list[str], seconds: float, rows: list,
          workers: tuple[int, ...] = (1, 2), clients: tuple[int, ...] = (1, 16)) -> list[tuple]:
    """QPS of `searchd serve --workers W` (a child process) for dense and hybrid searches, every one filtered;
    returns (mode, workers, clients, QPS, errors) per run."""
    results = []
    for w in workers:
        port = _free_port()
        cmd = [sys.executable, "-m", "searchd", "serve", "--port", str(port), "--workers", str(w), *config_args]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(base, server)
            for _ in range(4 * w):  # each worker's first queries (allocations, caches) are not timed
                _get(f"{base}/search?q=warm+up&mode=hybrid&doc_type=complaint", 60)
            for mode in ("dense", "hybrid"):
                for c in clients:
                    load = os.getloadavg()[0]
                    started = time.perf_counter()
                    done, errors, latencies = _load_clients(base, queries, mode, c, seconds)
                    elapsed = time.perf_counter() - started
                    p50, p95, _ = _percentiles(latencies or [0.0])
                    results.append((mode, w, c, done / elapsed, sum(errors.values())))
                    kinds = f" ({', '.join(f'{k} x{n}' for k, n in sorted(errors.items()))})" if errors else ""
                    rows.append((f"HTTP {mode} + filter, {w} worker(s), {c} client(s)",
                                 f"{done} requests, {sum(errors.values())} errors{kinds}", f"{done / elapsed:.1f} QPS",
                                 f"latency p50 {p50:.0f} / p95 {p95:.0f} ms; load {load:.1f}->"
                                 f"{os.getloadavg()[0]:.1f}"))
            memory = _process_memory(server.pid)
            workers_only = memory[1:] if w > 1 else memory
            rows.append((f"memory searchd serve --workers {w}", f"{len(workers_only)} serving process(es)",
                         f"RSS {sum(m[1] for m in memory):.0f} MB, PSS {sum(m[2] for m in memory):.0f} MB",
                         "per process RSS/PSS: " + ", ".join(f"{m[1]:.0f}/{m[2]:.0f}" for m in memory)))
        finally:
            server.terminate()
            server.wait(60)
    return results


def print_inference(settings: Settings, n_texts: int = 96, n_queries: int = 50) -> None:
    """The inference table: every backend x precision of embedder and tagger at 1 and 2 threads, and the floors."""
    from searchd.eval.inference import floors, overrides_for, table

    rows, results = table(overrides_for(settings), n_texts, n_queries)
    rows += floors(results)
    print(f"\nsearchd bench, inference: {n_texts} passages of ~128 tokens per run, {n_queries} queries one at a "
          f"time (2 threads), each variant in its own process; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    _print_rows(rows)


def _model_args(settings: Settings) -> list[str]:
    """The embedder settings this run uses, for the server it starts (a --set on the bench reaches it too)."""
    from searchd.eval.inference import overrides_for

    return [f"--set={o}" for o in overrides_for(settings, ("models", "embedder"))]


def _print_rows(rows: list) -> None:
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)).rstrip())


def run_bench(settings: Settings, n_chunks: int, n_queries: int, http_seconds: float, workdir: str | None,
              inference: str = "with", workers: tuple[int, ...] = (1, 2), long_queries: int = 0,
              inference_passages: int = 96) -> None:
    """Build, time and print the benchmark table (`inference`: with | only | skip the inference table)."""
    import torch

    if inference != "skip":
        print_inference(settings, inference_passages)
    if inference == "only":
        return

    from indexer.embedder import load_embedder
    from searchd.service import SearchService

    rows: list[tuple[str, str, str, str]] = []
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="searchd-bench-")
    index_dir = Path(workdir or tmp.name).resolve()
    # no query-vector cache: every timed query is encoded, although the texts repeat across rows
    settings = settings.replace(index=replace(settings.index, dir=index_dir),
                                search=replace(settings.search, query_cache=0))
    embedder = load_embedder(settings)
    if not (index_dir / "manifest.json").is_file():
        build_index(settings, n_chunks, embedder, rows)
    _impact_lists(settings, index_dir, rows)
    with SearchService.load(settings) as service:
        encoder = getattr(service.embedder, "choice", None)
        if encoder is not None:  # which variant every timed query was encoded with, and why
            rows.append(("query encoder", str(encoder.variant), "", encoder.reason))
        queries = _queries(settings, n_queries)
        service.search(service.parse({"q": "warm up"}))
        measured = _latency(service, queries, rows)
        rows.append(_latency_floor(measured))
        rows.append(("RSS bench process (index + model)", "", f"{_rss_mb():.0f} MB", ""))
        if long_queries > 0:
            texts, where = _long_queries(settings, long_queries, _sentences(settings, 2000))
            rows.append(("long queries", where, "", ""))
            rows.append(_long_floor(_long_latency(service, texts, rows)))
        http = _http(settings, [f'--set=index.dir="{index_dir}"', "--set=search.query_cache=0", *_model_args(settings)],
                    queries, http_seconds, rows, workers)
        if workers:
            rows.append(_http_floor(http, service.index.description))
        shape = (f"{service.index.ntotal} chunks, {service.store.counts()['documents']} documents, "
                 f"index {service.index.description}")
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    print(f"\nsearchd bench: {shape}, {n_queries} queries per row, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, width)))
    if tmp is not None:
        tmp.cleanup()
