"""`searchd rerank-bench`: how long the cross-encoder takes to rerank a query's top N, per backend.

Each query of a BEIR set is paired with `depth` real passages of an index's store ("Title.
chunk", what the search step feeds it; a seeded draw, the same for every row), and one call
`Reranker.score(query, passages)` is timed per query after a warm-up: the rerank step's own
latency, without retrieval. Rows: backend-precision x max_length.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from indexer.settings import Settings

VARIANTS = ("torch-fp32", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16", "openvino-int8")


@dataclass
class Row:
    variant: str
    max_length: int
    depth: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    agreement: float  # Spearman correlation of the scores with torch-fp32 at the same max_length (1.0 for itself)


def passages_of(index_dir: Path, n: int, seed: int) -> list[str]:
    """A seeded sample of `n` chunks of a store as "Title. text"."""
    from indexer.store import DocumentStore

    store = DocumentStore(Path(index_dir) / "store.sqlite", create=False)
    try:
        ids = store.chunk_ids()
        chosen = random.Random(seed).sample(list(ids), min(n, len(ids)))
        texts = store.chunk_texts(chosen)
    finally:
        store.close()
    return [f"{t}. {x}" if t else x for t, x in (texts[i] for i in chosen if i in texts)]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1]) if len(a) > 2 else 1.0


def run(settings: Settings, model_dir: Path, queries: Sequence[str], passages: Sequence[str], depth: int,
        lengths: Sequence[int], variants: Sequence[str], threads: int,
        calibration: Callable[[], Sequence[tuple[str, str]]], say=print) -> list[Row]:
    """Time every variant x max_length; the torch-fp32 scores at each length are the agreement reference."""
    from indexer.reranker import CrossEncoderReranker

    groups = [list(passages[(i * depth) % max(1, len(passages) - depth):][:depth]) for i in range(len(queries))]
    reference: dict[int, list[np.ndarray]] = {}
    rows = []
    for length in lengths:
        for name in variants:
            backend, precision = name.split("-")
            model = CrossEncoderReranker(model_dir, length, backend, precision, "cpu", settings.models.exports_dir,
                                         threads, prepare=True, calibration=calibration, batch_size=depth)
            model.score(queries[0], groups[0])  # warm-up (graph compilation, allocations)
            times, scores = [], []
            for q, group in zip(queries, groups):
                t0 = time.perf_counter()
                scores.append(model.score(q, group))
                times.append((time.perf_counter() - t0) * 1000)
            if name == "torch-fp32":
                reference[length] = scores
            ref = reference.get(length)
            agreement = float(np.mean([_spearman(s, r) for s, r in zip(scores, ref)])) if ref else float("nan")
            row = Row(name, length, depth, float(np.percentile(times, 50)), float(np.percentile(times, 95)),
                      float(np.mean(times)), agreement)
            say(f"{row.variant} max_length {row.max_length}: p50 {row.p50_ms:.1f} ms")
            rows.append(row)
    return rows


def markdown(rows: Sequence[Row], queries: int, threads: int, load: str) -> str:
    head = (f"rerank top {rows[0].depth if rows else 0}, {queries} queries, one score() call each, "
            f"{threads or 'default'} threads; {load}\n\n"
            "| variant | max_length | p50 ms | p95 ms | mean ms | rank agreement with torch-fp32 (Spearman) |\n"
            "|---|---:|---:|---:|---:|---:|\n")
    return head + "".join(f"| {r.variant} | {r.max_length} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | {r.mean_ms:.1f} | "
                          f"{r.agreement:.4f} |\n" for r in rows)
