"""`searchd bench --shards 1,2,4`: latency and throughput of exact search over 1, 2, 4 ... flat shards.

Random unit vectors (384 dims, the packaged MiniLM's) under sparse ascending ids, split by
chunk-id range exactly as `indexer build` splits an index (indexer/shards.py). Per shard count
and filter: p50/p95 latency of one query at a time, then throughput with several client threads
in one process (what a threaded searchd sees). With `--serve` every shard count is measured a
second time with the same shards saved to files and deployed on Ray Serve replicas
(indexer/shard_serve.py, one Ray session for all counts). Every row's top k is checked against the
single index's, so a faster row is never a different answer.
"""
from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from indexer.settings import IndexSettings, Settings

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
                    n_queries: int = 200, k: int = 10, clients: int = 4, echo=print,
                    serve: Settings | None = None) -> list[tuple]:
    """Rows (shards, filter, p50 ms, p95 ms, queries/s with `clients` threads, same top k, engine) of the shard
    benchmark; engine "threads" (shards in this process), and "Ray Serve" too when `serve` (settings whose
    [cluster] section says where) is given: the same shards saved to files and deployed on replicas."""
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
    cluster = _ServeBench(serve, counts, echo) if serve is not None else None
    try:
        for count in counts:
            started = time.perf_counter()
            parts = [s for _, s in split(record, plan_bounds(ids, count), settings)] if count > 1 or cluster else []
            index = record if count == 1 else ShardedIndex(parts)
            echo(f"  {count} shard(s) of {n // count} vectors ready in {time.perf_counter() - started:.1f} s")
            rows += _measure(index, "threads", count, ids, masks, queries, k, clients, truth)
            if cluster is not None:
                with cluster.deploy(parts, settings) as served:
                    rows += _measure(served, "Ray Serve", count, ids, masks, queries, k, clients, truth)
            if index is not record:
                index.close()
            elif parts:
                parts[0].close()
    finally:
        if cluster is not None:
            cluster.close()
        record.close()
    return rows


def _measure(index, engine: str, count: int, ids: np.ndarray, masks: dict, queries: np.ndarray, k: int,
             clients: int, truth: dict[str, list[np.ndarray]]) -> list[tuple]:
    """One row per filter: latency one query at a time, then throughput with `clients` threads."""
    order = index.row_ids()
    rows = []
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
        rows.append((count, name, np.percentile(times, 50), np.percentile(times, 95), qps, same, engine))
    return rows


class _ServeBench:
    """One Ray session for every shard count: replicas deployed per count from shard files in a temp dir."""

    def __init__(self, settings: Settings, counts: list[int], echo):
        import tempfile

        from indexer.cluster import start

        mark = time.perf_counter()
        self.ray, self.started = start(settings, 0, 0, "the Ray Serve rows", library="serve")
        c = settings.cluster
        cpus = self.ray.cluster_resources().get("CPU", 1)
        # every replica of the largest count must fit: share the cluster's CPUs out when the setting asks too many
        fit = min(c.cpus_per_replica, cpus / (max(counts) * c.replicas_per_shard))
        self.settings = settings.replace(cluster=dataclasses.replace(c, cpus_per_replica=fit))
        self.folder = tempfile.TemporaryDirectory(prefix="medlex-shard-bench-")
        echo(f"  Ray {'started' if self.started else 'joined'} in {time.perf_counter() - mark:.1f} s "
             f"({cpus:g} CPUs); {c.replicas_per_shard} replica(s) per shard reserving {fit:g} CPU each")
        self.echo = echo

    @contextmanager
    def deploy(self, parts: list, settings: IndexSettings):
        from indexer.shard_serve import serve_shards
        from indexer.shards import ShardedIndex

        files = []
        for i, part in enumerate(parts):
            path = Path(self.folder.name) / f"{len(parts)}-{i}.faiss"
            part.save(path)
            files.append((path, part.description))
        mark = time.perf_counter()
        served = ShardedIndex(serve_shards(self.settings, files))
        self.echo(f"  {len(parts)} shard(s) deployed on Ray Serve in {time.perf_counter() - mark:.1f} s")
        try:
            yield served
        finally:
            served.close()

    def close(self) -> None:
        if self.started:  # a local cluster goes down whole, Serve with it; a joined one keeps its Serve
            self.ray.shutdown()
        self.folder.cleanup()


def format_shard_table(rows: list[tuple], n: int, dim: int, n_queries: int, clients: int) -> str:
    """Markdown table of `run_shard_bench` rows, with the machine's load."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [f"exact (flat) search over {n} random unit vectors x {dim}, k=10, {n_queries} queries; "
             f"{os.cpu_count()} CPUs, load average {load}",
             "", f"| shards | searched by | filter | p50 ms | p95 ms | queries/s ({clients} client threads) | "
                 f"same top k as 1 shard |",
             "|---:|---|---|---:|---:|---:|---|"]
    lines += [f"| {c} | {e} | {f} | {p50:.2f} | {p95:.2f} | {qps:.0f} | {'yes' if same else 'NO'} |"
              for c, f, p50, p95, qps, same, e in rows]
    return "\n".join(lines)
