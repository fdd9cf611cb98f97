"""`indexer bench-build`: the same store built by each engine (local, Ray with 1, 2 ... workers), timed and compared.

Each run starts from a copy of the configured index directory's store (imported, not built),
so every engine tags and encodes the same documents from scratch with the configured models.
The models are loaded once by this process (the driver, as `indexer build` does); Ray actors load
their own copies inside the timed run. Every Ray build is checked against the local one: the
same chunk ids, the lowest cosine of their vectors, and whether the mentions are identical.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ConfigError
from indexer.settings import Settings


def parse_engines(spec: str) -> list[tuple[str, int]]:
    """'local,ray:1,ray:2' -> [('local', 0), ('ray', 1), ('ray', 2)]."""
    out = []
    for part in spec.split(","):
        name, _, workers = part.strip().partition(":")
        if name == "local" and not workers:
            out.append(("local", 0))
        elif name == "ray" and workers.isdigit() and int(workers) >= 1:
            out.append(("ray", int(workers)))
        else:
            raise ConfigError(f"--engines item {part!r} is not 'local' or 'ray:WORKERS' (e.g. local,ray:1,ray:2)")
    return out


def run_build_bench(settings: Settings, engines: list[tuple[str, int]], workdir: Path, tag: bool = True,
                    echo=print) -> list[dict[str, Any]]:
    """One row per engine: seconds, chunks/s, documents tagged, and agreement with the local build."""
    from indexer.cluster import sync_on_ray
    from indexer.embedder import load_embedder
    from indexer.ner import load_tagger
    from indexer.pipeline import STORE, open_index, sync
    from indexer.store import DocumentStore

    if settings.store.url:  # each engine builds a copy of the store file; a database is not copied so
        raise ConfigError("indexer build-bench copies the index's SQLite store per engine; unset store.url "
                          f"({settings.store.url.split('@')[-1]!r}) to run it")
    source = settings.index.dir / STORE
    if not source.is_file():
        raise ConfigError(f"no store in {str(settings.index.dir)!r} to build; run `indexer import` first")
    embedder, tagger = load_embedder(settings, prepare=True), load_tagger(settings) if tag else None
    rows, reference = [], None
    for name, workers in engines:
        label = "local" if name == "local" else f"ray, {workers} worker{'s' if workers > 1 else ''}"
        where = workdir / label.replace(", ", "-").replace(" ", "")
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        for path in settings.index.dir.glob(f"{STORE}*"):  # the database and any write-ahead log beside it
            shutil.copy2(path, where / path.name)
        s = settings.replace(index=dataclasses.replace(settings.index, dir=where, shards=1),
                             cluster=dataclasses.replace(settings.cluster, workers=max(workers, 1)))
        store = DocumentStore(where / STORE, create=False)
        load = os.getloadavg()[0]
        started = time.perf_counter()
        manifest = (sync if name == "local" else sync_on_ray)(s, store, embedder, tagger=tagger)
        seconds = time.perf_counter() - started
        store.close()
        store, index, _ = open_index(s)
        ids = index.ids()
        built = (ids, index.vectors(ids), _mentions(store))
        index.close()
        store.close()
        row = {"engine": label, "seconds": seconds, "chunks": int(manifest["encoded_last_build"]),
               "documents_tagged": int(manifest["tagged_last_build"]), "load_before": load,
               "load_after": os.getloadavg()[0], "start": float(manifest.get("ray_start_seconds", 0.0))}
        row["chunks_per_s"] = row["chunks"] / max(seconds, 1e-9)
        if reference is None:
            reference = built
        else:
            same_ids = np.array_equal(built[0], reference[0])
            row["same_ids"] = same_ids
            row["min_cosine"] = float(np.min(np.sum(built[1] * reference[1], axis=1))) if same_ids else float("nan")
            row["same_mentions"] = built[2] == reference[2]
        echo(f"  {label}: {row['chunks']} chunks, {row['documents_tagged']} documents tagged in {seconds:.1f} s")
        rows.append(row)
    return rows


def _mentions(store) -> dict[int, list]:
    ids = [i for c in store.collections() for i in store.document_ids(c)]
    return store.mentions_of(ids)


def format_build_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of `run_build_bench` rows."""
    lines = ["| engine | chunks | documents tagged | seconds (of which starting Ray) | chunks/s | "
             "load 1-min (before/after) | equals local |", "|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        same = "reference" if "same_ids" not in r else \
            f"ids {'yes' if r['same_ids'] else 'NO'}, min cosine {r['min_cosine']:.6f}, mentions " \
            f"{'yes' if r['same_mentions'] else 'NO'}"
        lines.append(f"| {r['engine']} | {r['chunks']} | {r['documents_tagged']} | {r['seconds']:.1f} ({r['start']:.1f}) | "
                     f"{r['chunks_per_s']:.1f} | {r['load_before']:.1f} / {r['load_after']:.1f} | {same} |")
    return "\n".join(lines)
