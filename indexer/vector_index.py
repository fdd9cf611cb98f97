"""VectorIndex protocol and its FAISS implementation: the only module that imports faiss.

Vectors are unit-norm float32 and scored by inner product (cosine). Every index is an
`IndexIDMap2` so FAISS ids are the store's int64 chunk ids. Filtered search is planned here,
over rows (positions in the id map) rather than ids, so a query pays for no sorting, set
difference or id-sized bitmap: callers that search often keep a row -> document map per index
`version` and pass a boolean row mask (`search_rows`); `search(allowed=ids)` maps ids to rows
through arrays computed once per version.

- a small allowed set (at most `exact_below_fraction` of the index) is scored exactly on its
  own vectors with numpy, whatever the index type;
- a larger allowed set on a CPU flat or HNSW index goes through an `IDSelectorBitmap` over rows
  of the inner index (exact for flat); on HNSW, up to `graph_exact_below_fraction` of the index
  allowed, through the bitmap on the graph's flat storage instead (exact: a filtered walk keeps
  only the allowed nodes it meets, so a narrow filter made it come back short and fall back to
  the scan after paying for the walk); an HNSW walk that comes back short of k falls back to
  the exact scan rather than return fewer hits than the filter allows;
- a flat search that scores `PARALLEL_SCAN_ROWS` rows or more (unfiltered, or through the bitmap)
  is split into `index.scan_threads` contiguous row ranges of equal allowed counts, searched at
  once (FAISS releases the GIL; one query is otherwise one thread in FAISS) and merged: the same
  exact top k, in about 1/threads of the time where memory bandwidth allows;
- a FAISS GPU copy only ever answers unfiltered queries, because FAISS ignores id selectors on
  GPU indexes (faiss issues 3114, 3924). Without faiss-gpu, the GPU copy is an exact torch
  scan (indexer/torch_scan.py), which answers every query, filtered ones through a row mask.

An index loaded with `mmap=True` (searchd) maps the vectors of flat and HNSW indexes read-only
(FAISS `IO_FLAG_MMAP_IFC`), so processes serving one index share its pages; it refuses changes.
Exact scans read the vectors in place (a flat index's, or an HNSW index's flat storage), so
only IVF keeps a copy of its own.

Index types that cannot remove ids (HNSW) keep tombstones, which every search excludes and
`compact()` drops by rebuilding from the stored vectors.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Protocol

import faiss
import numpy as np

from indexer.errors import ConfigError, IndexMismatchError
from indexer.settings import IndexSettings

NAMED_TYPES = ("flat", "hnsw", "ivf", "auto")
PARALLEL_SCAN_ROWS = 20_000  # below this many scored rows a flat search stays on one thread (a split costs ~0.1 ms)
MAX_SCAN_THREADS = 4  # index.scan_threads = 0 takes the usable CPUs up to this


class VectorIndex(Protocol):
    """Unit-norm chunk vectors keyed by chunk id, scored by inner product: what the search service needs."""

    dim: int
    description: str  # the kind of index (a FAISS factory string), shown in stats and the manifest
    version: int  # changes on every add, remove and close: row masks and row maps are per version

    @property
    def exact(self) -> bool: ...  # every search returns the true top k of the allowed set

    @property
    def ntotal(self) -> int: ...  # live vectors

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def search_rows(self, q: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]: ...

    def row_ids(self) -> np.ndarray: ...  # chunk id of each row, the order of search_rows masks

    def vectors(self, ids: np.ndarray) -> np.ndarray: ...  # stored vectors of ids, missing ones skipped

    def save(self, path: Path) -> None: ...

    def close(self) -> None: ...  # frees memory (and the GPU copy); the index is empty afterwards


def factory_string(kind: str, n: int, settings: IndexSettings) -> str:
    """FAISS factory string for a configured type and an expected number of vectors."""
    if kind == "auto":
        kind = "flat" if n < settings.auto_flat_below else "hnsw"
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{settings.hnsw_m}"
    if kind == "ivf":
        # IVF needs about 39 training points per centroid; 4*sqrt(n) lists is the usual rule
        nlist = max(1, min(int(4 * math.sqrt(max(n, 1))), n // 39))
        return f"IVF{nlist},Flat"
    return kind


class FaissIndex:
    """A FAISS index keyed by chunk id, with exact filtered search at any selectivity."""

    def __init__(self, index: faiss.Index, settings: IndexSettings, description: str,
                 tombstones: Iterable[int] = (), mapped: bool = False):
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexMismatchError("the FAISS file is not an id-mapped index; run `indexer build --rebuild`")
        self.index = index
        self.inner = faiss.downcast_index(index.index)
        self._flat_storage = self._find_storage()
        self.settings = settings
        self.description = description
        self.mapped = mapped  # vectors mapped read-only from the file: no add, remove or reset
        self.dim = index.d
        self.tombstones = np.unique(np.asarray(list(tombstones), dtype=np.int64))
        self._copy: np.ndarray | None = None  # vectors of non-flat indexes, kept for exact scans
        self._gpu = None
        self._torch = None  # a TorchScan of the rows on a GPU when faiss-gpu is absent
        self.version = 0
        self._apply_search_knobs()
        self._refresh()

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def create(cls, dim: int, kind: str, settings: IndexSettings, expected: int) -> "FaissIndex":
        """An empty index of the configured type (IVF still needs `train`)."""
        description = factory_string(kind, expected, settings)
        try:
            inner = faiss.index_factory(dim, description, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ConfigError(f"index.type {kind!r} gives FAISS factory string {description!r}, which FAISS "
                              f"rejects ({str(exc).splitlines()[0][:120]}); use one of {NAMED_TYPES} "
                              f"or a valid factory string") from None
        return cls(faiss.IndexIDMap2(inner), settings, description)

    @classmethod
    def load(cls, path: Path, settings: IndexSettings, description: str, tombstones: Iterable[int] = (),
             mmap: bool = False) -> "FaissIndex":
        """Read a saved index (the CPU one of record); `mmap` maps flat/HNSW vectors read-only instead."""
        if not mmap:
            return cls(faiss.read_index(str(path)), settings, description, tombstones)
        return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC), settings, description, tombstones, True)

    def save(self, path: Path) -> None:
        """Write the CPU index to `path` (callers write aside and rename)."""
        faiss.write_index(self.index, str(path))

    def close(self) -> None:
        """Free the vectors and the GPU copy now rather than at garbage collection; the index is then empty."""
        if self.mapped:  # FAISS aborts the process on reset() of mapped vectors: drop the mapping instead
            self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            self.inner, self.mapped = faiss.downcast_index(self.index.index), False
            self._flat_storage = self._find_storage()
        self.index.reset()
        self.tombstones = np.zeros(0, dtype=np.int64)
        self._copy = None
        self._refresh()

    def __enter__(self) -> "FaissIndex":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- properties ----------------------------------------------------------------------
    @property
    def is_flat(self) -> bool:
        return isinstance(self.inner, faiss.IndexFlat)

    @property
    def exact(self) -> bool:
        """True when every search is exact (flat index)."""
        return self.is_flat

    @property
    def can_remove(self) -> bool:
        return not isinstance(self.inner, faiss.IndexHNSW)

    @property
    def ntotal(self) -> int:
        """Live vectors (tombstones excluded)."""
        return int(self.index.ntotal) - len(self.tombstones)

    def ids(self) -> np.ndarray:
        """Live chunk ids, sorted."""
        return np.setdiff1d(self._sorted, self.tombstones, assume_unique=True)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.is_trained)

    # ---- mutation ------------------------------------------------------------------------
    def train(self, vectors: np.ndarray) -> None:
        """Train the coarse quantizer of an IVF index (no-op for flat and HNSW)."""
        if not self.index.is_trained:
            self.index.train(np.ascontiguousarray(vectors, dtype=np.float32))

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add vectors under chunk ids that are not in the index yet."""
        self._writable()
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise IndexMismatchError(f"vectors of shape {vectors.shape} do not match {len(ids)} ids of dimension {self.dim}")
        if len(ids) == 0:
            return
        if np.isin(ids, self._sorted).any():
            raise IndexMismatchError(f"chunk ids already in the index: {ids[np.isin(ids, self._sorted)][:5].tolist()}")
        self.index.add_with_ids(vectors, ids)
        if self._copy is not None:
            self._copy = np.vstack([self._copy, vectors])
        self._refresh()

    def remove(self, ids: np.ndarray) -> None:
        """Remove chunk ids; index types that cannot remove keep them as tombstones."""
        self._writable()
        ids = np.intersect1d(np.asarray(ids, dtype=np.int64), self._sorted)
        if len(ids) == 0:
            return
        if not self.can_remove:
            self.tombstones = np.union1d(self.tombstones, ids)
            self._mark_live()
            return
        if self._copy is not None:
            self._copy = self._copy[~np.isin(self._ids, ids)]
        self.index.remove_ids(faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids)))
        self._refresh()

    def compact(self) -> "FaissIndex":
        """A new index of the same type without tombstones, rebuilt from the stored vectors."""
        live = self.ids()
        fresh = FaissIndex.create(self.dim, self.description, self.settings, len(live))
        vectors = self.vectors(live)
        fresh.train(vectors)
        fresh.add(vectors, live)
        return fresh

    def _writable(self) -> None:
        if self.mapped:
            raise IndexMismatchError("this vector index is memory-mapped read-only (searchd); change it through "
                                     "`indexer add`, `update` or `delete`")

    # ---- reading -------------------------------------------------------------------------
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of chunk ids (missing ids are skipped), in the order given."""
        pos = self._positions(np.asarray(ids, dtype=np.int64))
        return np.array(self._matrix()[pos[pos >= 0]], dtype=np.float32)

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk ids) of one query vector, restricted to `allowed` ids when given."""
        return self.search_rows(q, k, None if allowed is None else self.rows_of(allowed))

    def search_rows(self, q: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk ids) within a boolean mask over `row_ids()` (None: every live row)."""
        q = np.ascontiguousarray(q, dtype=np.float32).reshape(1, self.dim)
        if self._torch is not None:
            return self._torch_search(q, k, rows)
        if rows is None and not len(self.tombstones):
            return self._search_all(q, k)
        rows = self._live if rows is None else rows & self._live if len(self.tombstones) else rows
        n = int(np.count_nonzero(rows))
        if n == 0 or k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if n <= self.settings.exact_below_fraction * max(self.ntotal, 1) or n <= k:
            return self._scan(q[0], np.flatnonzero(rows), k)
        if self.is_flat and n >= PARALLEL_SCAN_ROWS and self.scan_threads > 1:
            return self._parallel_flat(q, k, rows, n)
        if self._graph_scan(n):  # exact on the graph's flat storage, split as a flat search is (one part when small)
            return self._parallel_flat(q, k, rows, n, self._flat_storage)
        scores, ids = self.search_bitmap(q, k, rows)
        if len(ids) < min(k, n):  # an HNSW walk can strand itself among excluded nodes: never come back short
            return self._scan(q[0], np.flatnonzero(rows), k)
        return scores, ids

    def row_ids(self) -> np.ndarray:
        """The chunk id of each row, the order `search_rows` masks follow (read-only; new after a change)."""
        return self._ids

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Boolean row mask of chunk ids (ids not in the index are ignored)."""
        mask = np.zeros(len(self._ids), dtype=bool)
        pos = self._positions(np.asarray(ids, dtype=np.int64))
        mask[pos[pos >= 0]] = True
        return mask

    # ---- internals -----------------------------------------------------------------------
    def _refresh(self) -> None:
        """Per-version arrays, so that no search sorts or maps ids: row -> id, sorted ids, live rows."""
        self._gpu = self._torch = None  # a GPU copy would be stale after any change
        self._ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        self._ids.flags.writeable = False  # handed out by row_ids()
        self._order = np.argsort(self._ids, kind="stable")
        self._sorted = self._ids[self._order]
        self._mark_live()
        if self._flat_storage is None and self._copy is None:
            self._copy = self._reconstruct_all() if len(self._ids) else np.zeros((0, self.dim), np.float32)

    def _mark_live(self) -> None:
        self.version += 1
        self._live = ~np.isin(self._ids, self.tombstones) if len(self.tombstones) else np.ones(len(self._ids), bool)

    def _reconstruct_all(self) -> np.ndarray:
        ivf = faiss.try_extract_index_ivf(self.inner)
        if ivf is not None:  # IVF reconstructs only through a direct map
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return np.vstack([self.index.reconstruct(int(i)) for i in self._ids]).astype(np.float32)

    def _matrix(self) -> np.ndarray:
        """(n, dim) vectors in id-map order: a view of the flat storage (flat, HNSW), else the kept copy (IVF)."""
        storage = self._flat_storage
        if storage is None:
            return self._copy
        n = int(self.index.ntotal)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(storage.get_xb(), n * self.dim).reshape(n, self.dim)

    def _find_storage(self):
        """The IndexFlat holding the vectors by row (a flat index itself, an HNSW index's storage), or None."""
        if self.is_flat:
            return self.inner
        if isinstance(self.inner, faiss.IndexHNSW):
            storage = faiss.downcast_index(self.inner.storage)
            if isinstance(storage, faiss.IndexFlat):
                return storage
        return None

    def _positions(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id in the id map, -1 where absent."""
        if len(self._sorted) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        i = np.searchsorted(self._sorted, ids)
        i = np.minimum(i, len(self._sorted) - 1)
        found = self._sorted[i] == ids
        return np.where(found, self._order[i], -1)

    def _scan(self, q: np.ndarray, pos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of the vectors at `pos`; top k by score, ties by smaller id."""
        scores = self._matrix()[pos] @ q
        ids = self._ids[pos]
        k = min(k, len(pos))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(pos) else np.arange(len(pos))
        order = np.lexsort((ids[top], -scores[top]))
        return scores[top][order].astype(np.float32), ids[top][order]

    def _params(self, sel) -> faiss.SearchParameters:
        if isinstance(self.inner, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=sel, efSearch=self.settings.hnsw_ef_search)
        if faiss.try_extract_index_ivf(self.inner) is not None:
            return faiss.SearchParametersIVF(sel=sel, nprobe=self.settings.ivf_nprobe)
        return faiss.SearchParameters(sel=sel)

    def search_bitmap(self, q: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One plan alone: FAISS through a bitmap of allowed rows, on the CPU index (the filter harness's baseline)."""
        q = np.ascontiguousarray(q, dtype=np.float32).reshape(1, self.dim)
        if isinstance(self.inner, (faiss.IndexFlat, faiss.IndexHNSW)):
            # the inner index numbers vectors by row: no id translation and no bitmap as large as the largest id
            bitmap = np.packbits(rows, bitorder="little")  # n/8 bytes: about 12 KB and 10 us at 100,000 rows
            scores, found = self.inner.search(q, k, params=self._params(_selector(bitmap)))
            keep = found[0] >= 0
            return scores[0][keep], self._ids[found[0][keep]]
        # other types (IVF) may number vectors apart from rows after a removal: select by id
        allowed = self._ids[rows]
        mask = np.zeros(int(allowed.max()) + 1, dtype=bool)
        mask[allowed] = True
        bitmap = np.packbits(mask, bitorder="little")
        scores, ids = self.index.search(q, k, params=self._params(_selector(bitmap)))
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _graph_scan(self, n: int) -> bool:
        """Whether a filtered search of n allowed rows on an HNSW index scores them exactly in its flat storage.

        A graph walk under a filter keeps only the allowed nodes it meets: with a narrow filter it meets too
        few of them, comes back short and falls back to the scan anyway, having paid for the walk first."""
        return (self._flat_storage is not None and isinstance(self.inner, faiss.IndexHNSW)
                and n <= self.settings.graph_exact_below_fraction * max(self.ntotal, 1))

    @property
    def scan_threads(self) -> int:
        """Threads a large flat search is split over: `index.scan_threads`, or with 0 the usable CPUs (at most 4)."""
        configured = self.settings.scan_threads
        if configured < 0:
            raise ConfigError(f"index.scan_threads must be 0 (the usable CPUs) or a number of threads, got {configured}")
        return configured or min(MAX_SCAN_THREADS, len(os.sched_getaffinity(0)))

    def _parallel_flat(self, q: np.ndarray, k: int, rows: np.ndarray | None, n: int,
                       flat: faiss.IndexFlat | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k of a flat index (within a row mask) from one FAISS search per row range, run at once;
        `flat`: the IndexFlat to search (default the inner index; an HNSW index's storage).

        The ranges hold equal numbers of scored rows, so no thread waits on another; each FAISS call releases
        the GIL and returns its range's top k, and the merge keeps the best k, ties by smaller id as `_scan`."""
        target = self.inner if flat is None else flat
        parts = min(self.scan_threads, max(1, n // (PARALLEL_SCAN_ROWS // 2)))
        total = int(self.index.ntotal)
        if rows is None:
            bounds = [total * i // parts for i in range(parts + 1)]
            bitmap = None
        else:
            allowed = np.flatnonzero(rows)
            bounds = [0] + [int(allowed[n * i // parts]) for i in range(1, parts)] + [total]
            bitmap = np.packbits(rows, bitorder="little")

        def one(i: int) -> tuple[np.ndarray, np.ndarray]:
            span = faiss.IDSelectorRange(bounds[i], bounds[i + 1])
            rows_sel = None if bitmap is None else _selector(bitmap)  # kept alive with `span` until the call ends
            sel = span if rows_sel is None else faiss.IDSelectorAnd(span, rows_sel)
            scores, found = target.search(q, k, params=faiss.SearchParameters(sel=sel))
            return scores[0], found[0]

        pool = _scan_pool(parts - 1)
        pending = [pool.submit(one, i) for i in range(1, parts)]
        results = [one(0)] + [f.result() for f in pending]
        scores = np.concatenate([s for s, _ in results])
        found = np.concatenate([f for _, f in results])
        keep = found >= 0
        scores, ids = scores[keep], self._ids[found[keep]]
        order = np.lexsort((ids, -scores))[:k]
        return scores[order].astype(np.float32), ids[order]

    def _search_all(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, int(self.index.ntotal))
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if self._gpu is None and self.is_flat and self.index.ntotal >= PARALLEL_SCAN_ROWS and self.scan_threads > 1:
            return self._parallel_flat(q, k, None, int(self.index.ntotal))
        index = self._gpu if self._gpu is not None else self.index
        scores, ids = index.search(q, k)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def _apply_search_knobs(self) -> None:
        if isinstance(self.inner, faiss.IndexHNSW):
            self.inner.hnsw.efSearch = self.settings.hnsw_ef_search
        ivf = faiss.try_extract_index_ivf(self.inner)
        if ivf is not None:
            ivf.nprobe = self.settings.ivf_nprobe

    def to_gpu(self) -> str | None:
        """Make a GPU copy, the CPU index staying the record: 'faiss' (unfiltered queries), 'torch' (an exact scan
        of every query, when faiss-gpu is absent but torch sees CUDA), or None (no GPU)."""
        if faiss.get_num_gpus() > 0 and not len(self.tombstones):
            self._gpu = faiss.index_cpu_to_all_gpus(self.index)
            return "faiss"
        from indexer.torch_scan import cuda_available

        if cuda_available():
            self.use_torch_scan("cuda")
            return "torch"
        return None

    def use_torch_scan(self, device: str) -> None:
        """Answer every search with an exact torch scan of the rows on `device` (until the next change)."""
        from indexer.torch_scan import TorchScan

        self._torch = TorchScan(self._matrix(), device)

    def _torch_search(self, q: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        mask = self._live if rows is None else rows & self._live
        scores, found = self._torch.search(q[0], k, None if rows is None and not len(self.tombstones) else mask)
        ids = self._ids[found]
        order = np.lexsort((ids, -scores))  # ties by smaller id, as the CPU scan
        return scores[order], ids[order]


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, workers, pool): a forked child makes its own
_POOL_LOCK = threading.Lock()


def _scan_pool(workers: int) -> ThreadPoolExecutor:
    """This process's threads for split flat searches, shared by every index (made again after a fork or to grow)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] < workers:
            _POOL = (os.getpid(), max(workers, 1),
                     ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="medlex-scan"))
        return _POOL[2]


def _selector(bitmap: np.ndarray) -> faiss.IDSelector:
    """A FAISS selector over a little-endian packed bitmap; the caller keeps `bitmap` alive during the search."""
    return faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
