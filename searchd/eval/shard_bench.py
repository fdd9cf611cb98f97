"""`searchd bench --shards 1,2,4`: latency and throughput of exact search over 1, 2, 4 ... flat shards.

Random unit vectors (384 dims, the packaged MiniLM's) under sparse ascending ids, split by
chunk-id range exactly as `indexer build` splits an index (indexer/shards.py). Per shard count
and filter: p50/p95 latency of one query at a time, then throughput with several client threads
in one process (what a threaded searchd sees). Every shard count's top k is checked against the
single index's, so a faster row is never a different answer.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from indexer.settings import IndexSettings

FILTERS = (("none", None), ("10% allowed", 0.10), ("1% allowed", 0.01))


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _resident() -> int:
    """Resident bytes of this process (Linux /proc), 0 elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def run_shard_bench(settings: IndexSettings, counts: list[int], n: int = 200_000, dim: int = 384,
                    n_queries: int = 200, k: int = 10, clients: int = 4, echo=print) -> list[tuple]:
    """Rows (shards, filter, p50 ms, p95 ms, queries/s with `clients` threads, same top k) of the shard benchmark."""
    from indexer.shards import ShardedIndex, plan_bounds, split
    from indexer.vector_index import FaissIndex

    rng = np.random.default_rng(0)
    ids = np.sort(rng.choice(10 * n, n, replace=False)).astype(np.int64)
    vectors = _unit(rng, n, dim)
    before = _resident()
    record = FaissIndex.create(dim, "flat", settings, n)
    record.add(vectors, ids)
    grown = _resident() - before  # the index's own copy: the input vectors are still held
    del vectors
    echo(f"  resident memory of the flat index: {grown / 1e6:.1f} MB, {grown / n:.0f} bytes per vector "
         f"({dim * 4} of them the vector)")
    queries = _unit(np.random.default_rng(1), n_queries, dim)
    masks = {name: None if share is None else np.random.default_rng(2).random(n) < share for name, share in FILTERS}
    truth: dict[str, list[np.ndarray]] = {}
    rows = []
    for count in counts:
        started = time.perf_counter()
        index = record if count == 1 else ShardedIndex([s for _, s in split(record, plan_bounds(ids, count), settings)])
        echo(f"  {count} shard(s) of {n // count} vectors ready in {time.perf_counter() - started:.1f} s")
        order = index.row_ids()
        for name, mask in masks.items():
            # the service's mask is over the index's rows; map the by-id filter to this row order once
            rows_mask = None if mask is None else mask[np.searchsorted(ids, order)]
            times, found = [], []
            for q in queries:
                mark = time.perf_counter()
                found.append(index.search_rows(q, k, rows_mask)[1])
                times.append((time.perf_counter() - mark) * 1000)
            same = all(np.array_equal(a, b) for a, b in zip(found, truth.setdefault(name, found)))
            with ThreadPoolExecutor(max_workers=clients) as pool:
                mark = time.perf_counter()
                list(pool.map(lambda q: index.search_rows(q, k, rows_mask), np.concatenate([queries, queries])))
                qps = 2 * len(queries) / (time.perf_counter() - mark)
            rows.append((count, name, np.percentile(times, 50), np.percentile(times, 95), qps, same))
        if index is not record:
            index.close()
    record.close()
    return rows


def format_shard_table(rows: list[tuple], n: int, dim: int, n_queries: int, clients: int) -> str:
    """Markdown table of `run_shard_bench` rows, with the machine's load."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"exact (flat) search over {n} random unit vectors x {dim}, k=10, {n_queries} queries; "
             f"{os.cpu_count()} CPUs, load average {load}",
             "", f"| shards | filter | p50 ms | p95 ms | queries/s ({clients} client threads) | same top k as 1 shard |",
             "|---:|---|---:|---:|---:|---|"]
    lines += [f"| {c} | {f} | {p50:.2f} | {p95:.2f} | {qps:.0f} | {'yes' if same else 'NO'} |"
              for c, f, p50, p95, qps, same in rows]
    return "\n".join(lines)
