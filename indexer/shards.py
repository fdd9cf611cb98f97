"""Sharded exact search: the vector index split by chunk-id range into N FAISS files, searched in parallel.

vectors.faiss stays the index of record: builds, checkpoints, add/update/delete and compaction
work on it as before. With index.shards > 1, `indexer build` (and add/update/delete, and
`indexer reshard`) also write shards/NNN.gG.faiss, one per chunk-id range, and list them in
manifest.json under "shards"; searchd then loads the shards instead of vectors.faiss.

- Shard i holds the live chunk ids from its `first_id` up to the next shard's; the ranges are
  cut at equal counts when first planned and kept afterwards, so new chunks (higher ids) land in
  the last shard and an incremental build rewrites only the shards whose ids or vectors changed
  (a digest of both is recorded per shard); `indexer reshard N` cuts them afresh.
- A shard file is written under a new generation name and only the manifest's rename makes it
  current, so a crash leaves the previous manifest and its shard files as they were.
- `ShardedIndex` answers the same calls as `FaissIndex` (search, search_rows, row_ids, vectors):
  its row order is the shards' rows one after another, so the allowed-row mask the search service
  resolves once in the store is sliced, not recomputed, per shard. Every shard returns its own top
  k in a thread pool (FAISS and numpy release the GIL) and the merge keeps the k best by score,
  ties by smaller id, as `FaissIndex` does: on flat shards the merged top k is the exact top k.
- cluster.serve_shards = true puts each shard on Ray Serve replicas (indexer/shard_serve.py); the
  pool's threads then wait on the replicas' answers, and the slicing and the merge stay the same.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ConfigError, IndexMismatchError
from indexer.settings import IndexSettings, Settings
from indexer.store import DocumentStore
from indexer.vector_index import FaissIndex

SHARDS_DIR = "shards"


class ShardedIndex:
    """N shards searched in parallel and merged: the read side of the VectorIndex protocol.

    A shard is a `FaissIndex` in this process, or a `ServedShard` (indexer/shard_serve.py) whose scans run on
    Ray Serve replicas: either answers search_rows, vectors, row_ids, ids, close."""

    def __init__(self, shards: list[Any]):
        if not shards:
            raise IndexMismatchError("a sharded index needs at least one shard")
        self.shards = shards
        self.dim = shards[0].dim
        self.description = f"{len(shards)} shards x {shards[0].description}"
        self._pool = ThreadPoolExecutor(max_workers=len(shards), thread_name_prefix="searchd-shard")
        self._refresh()

    def _refresh(self) -> None:
        sizes = [len(s.row_ids()) for s in self.shards]
        self._bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._ids = np.concatenate([s.row_ids() for s in self.shards]) if sum(sizes) else np.zeros(0, np.int64)
        self._ids.flags.writeable = False
        self._versions = tuple(s.version for s in self.shards)

    @property
    def version(self) -> tuple[int, ...]:
        """Changes when any shard changes (row masks and row maps are per version)."""
        return tuple(s.version for s in self.shards)

    @property
    def exact(self) -> bool:
        return all(s.exact for s in self.shards)

    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self.shards)

    def ids(self) -> np.ndarray:
        """Live chunk ids, sorted."""
        return np.sort(np.concatenate([s.ids() for s in self.shards]))

    def row_ids(self) -> np.ndarray:
        """Chunk id of each row: shard 0's rows, then shard 1's, ... (the order of `search_rows` masks)."""
        if self._versions != self.version:
            self._refresh()
        return self._ids

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk ids) over every shard, restricted to `allowed` ids when given."""
        if allowed is None:
            return self.search_rows(q, k, None)
        return self.search_rows(q, k, np.isin(self.row_ids(), np.asarray(allowed, dtype=np.int64)))

    def search_rows(self, q: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk ids) within a boolean mask over `row_ids()`: each shard its slice, then the merge."""
        if rows is not None and len(rows) != len(self.row_ids()):
            raise IndexMismatchError(f"a row mask of {len(rows)} rows does not fit the {len(self._ids)} rows of the shards")
        jobs = []
        for i, shard in enumerate(self.shards):
            part = None if rows is None else rows[self._bounds[i]:self._bounds[i + 1]]
            if part is None or part.any():
                jobs.append((shard, part))
        if len(jobs) == 1:
            return jobs[0][0].search_rows(q, k, jobs[0][1])
        found = list(self._pool.map(lambda job: job[0].search_rows(q, k, job[1]), jobs))
        return merge_top_k(found, k)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of chunk ids (missing ids are skipped), in the order given."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), self.dim), np.float32)
        found = np.zeros(len(ids), bool)
        for shard in self.shards:
            here = np.isin(ids, shard.row_ids())
            if here.any():
                out[here] = shard.vectors(ids[here])
                found |= here
        return out[found]

    def to_gpu(self) -> bool:
        """A GPU copy of every shard for unfiltered searches (filtered ones stay on the CPU shards)."""
        return all([s.to_gpu() for s in self.shards])

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        raise IndexMismatchError("shards are written from vectors.faiss (indexer build, indexer reshard), not changed in place")

    remove = save = add

    def close(self) -> None:
        """Stop the search threads and free every shard."""
        self._pool.shutdown(wait=True)
        for shard in self.shards:
            shard.close()
        self._refresh()

    def __enter__(self) -> "ShardedIndex":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def merge_top_k(found: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of several (scores, ids) lists, by score and then smaller id."""
    scores = np.concatenate([f[0] for f in found]).astype(np.float32)
    ids = np.concatenate([f[1] for f in found]).astype(np.int64)
    order = np.lexsort((ids, -scores))[:max(k, 0)]
    return scores[order], ids[order]


def check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"index.shards must be a whole number of at least 1 (1 = vectors.faiss alone), got {n!r}")
    return n


def plan_bounds(ids: np.ndarray, n: int) -> list[int]:
    """First chunk id of each of n ranges holding equal shares of the sorted `ids` (shard 0 starts at 0)."""
    cuts = [int(ids[(i * len(ids)) // n]) if len(ids) else 0 for i in range(1, n)]
    return [0] + cuts


def split(index: FaissIndex, bounds: list[int], settings: IndexSettings) -> list[tuple[np.ndarray, FaissIndex]]:
    """(ids, shard) per chunk-id range: fresh indexes of the record's kind over its live vectors."""
    return [(ids, _shard_of(index, ids, settings)) for ids in _ranges(index.ids(), bounds)]


def _ranges(live: np.ndarray, bounds: list[int]) -> list[np.ndarray]:
    which = np.searchsorted(np.asarray(bounds[1:], dtype=np.int64), live, side="right")
    return [live[which == i] for i in range(len(bounds))]


def _shard_of(index: FaissIndex, ids: np.ndarray, settings: IndexSettings) -> FaissIndex:
    # IVF lists are sized for the shard; any other kind is the record's own factory string
    kind = "ivf" if index.description.startswith("IVF") else index.description
    shard = FaissIndex.create(index.dim, kind, settings, len(ids))
    vectors = index.vectors(ids)
    if len(ids):
        shard.train(vectors)
        shard.add(vectors, ids)
    return shard


def _digest(ids: np.ndarray, vectors: np.ndarray, description: str) -> str:
    h = hashlib.blake2b(description.encode(), digest_size=12)
    h.update(np.ascontiguousarray(ids).tobytes())
    h.update(np.ascontiguousarray(vectors).tobytes())
    return h.hexdigest()


def write_shards(settings: Settings, index: FaissIndex, previous: dict[str, Any] | None,
                 rebalance: bool = False) -> dict[str, Any]:
    """Write the shard files index.shards asks for; the manifest keys that list them ({} for one shard).

    Ranges and unchanged shard files of `previous` (the manifest being replaced) are kept unless
    `rebalance` or the shard count changed. The caller commits by saving the manifest, then calls
    `prune`.
    """
    from tqdm import tqdm

    from indexer.pipeline import write_aside

    n = check_count(settings.index.shards)
    if n == 1:
        return {}
    d = settings.index.dir
    (d / SHARDS_DIR).mkdir(exist_ok=True)
    old = (previous or {}).get("shards") or []
    live = index.ids()
    bounds = [s["first_id"] for s in old] if len(old) == n and not rebalance else plan_bounds(live, n)
    generation = int((previous or {}).get("shard_generation", 0)) + 1
    entries = []
    for i, ids in enumerate(tqdm(_ranges(live, bounds), desc="write shards", unit="shard", dynamic_ncols=True)):
        digest = _digest(ids, index.vectors(ids), index.description)
        kept = old[i] if len(old) == n and old[i]["first_id"] == bounds[i] and old[i]["digest"] == digest \
            and (d / old[i]["file"]).is_file() else None
        if kept is None:
            name = f"{SHARDS_DIR}/{i:03d}.g{generation}.faiss"
            with _shard_of(index, ids, settings.index) as shard:
                (d / name).parent.mkdir(exist_ok=True)
                write_aside(d / name, shard.save).replace(d / name)
                kind = shard.description
            kept = {"file": name, "first_id": int(bounds[i]), "vectors": int(len(ids)), "digest": digest,
                    "index_type": kind}
        entries.append(kept)
    return {"shards": entries, "shard_generation": generation}


def prune(d: Path, manifest: dict[str, Any]) -> list[Path]:
    """Remove shard files the committed manifest does not list (older generations, or all when unsharded)."""
    listed = {d / s["file"] for s in manifest.get("shards") or []}
    gone = [p for p in sorted((d / SHARDS_DIR).glob("*.faiss")) if p not in listed] if (d / SHARDS_DIR).is_dir() else []
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def reshard(settings: Settings) -> dict[str, Any]:
    """Cut the index of record afresh into index.shards ranges and commit them; returns the new manifest."""
    from indexer.pipeline import MANIFEST, open_index, save_json

    check_count(settings.index.shards)
    store, index, manifest = open_index(settings)
    try:
        started = time.perf_counter()
        manifest = {k: v for k, v in manifest.items() if k not in ("shards", "shard_generation")} | \
            write_shards(settings, index, manifest, rebalance=True)
        manifest["reshard_seconds"] = round(time.perf_counter() - started, 3)
        save_json(settings.index.dir / MANIFEST, manifest)
        prune(settings.index.dir, manifest)
        return manifest
    finally:
        index.close()
        store.close()


def open_search_index(settings: Settings, mmap: bool = False) -> tuple[DocumentStore, FaissIndex | ShardedIndex,
                                                                      dict[str, Any]]:
    """What searchd searches: the shards the manifest lists, else vectors.faiss (`open_index`); checked against the
    store. `mmap`: flat/HNSW vectors mapped read-only (search.mmap_vectors)."""
    from indexer.pipeline import FORMAT, MANIFEST, has_store, open_index, open_store, read_json

    d = settings.index.dir
    manifest = read_json(d / MANIFEST) if has_store(settings) else None
    listed = (manifest or {}).get("shards")
    if not listed or manifest.get("format") != FORMAT:
        return open_index(settings, mmap=mmap)
    missing = [s["file"] for s in listed if not (d / s["file"]).is_file()]
    if missing:
        raise IndexMismatchError(f"the manifest lists shard files that are missing ({missing[0]!r}); run "
                                 f"`indexer reshard`")
    if settings.cluster.serve_shards:  # each shard on Ray Serve replicas (indexer/shard_serve.py)
        from indexer.shard_serve import serve_shards

        shards = serve_shards(settings, [(d / s["file"], s["index_type"]) for s in listed], mmap=mmap)
    else:
        shards = [FaissIndex.load(d / s["file"], settings.index, s["index_type"], mmap=mmap) for s in listed]
    index = ShardedIndex(shards)
    store = open_store(settings, create=False)
    ids, store_ids = index.ids(), np.asarray(store.chunk_ids(), dtype=np.int64)
    if index.dim != manifest["dim"] or len(ids) != len(store_ids) or not np.array_equal(ids, store_ids):
        index.close()
        store.close()
        raise IndexMismatchError(f"the shards hold {len(ids)} vectors of dimension {index.dim} and the store "
                                 f"{len(store_ids)} chunks (the manifest says dimension {manifest['dim']}); "
                                 f"run `indexer build`")
    return store, index, manifest
