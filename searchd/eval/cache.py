"""A vector cache for eval index builds: chunk vectors by embedder checksum and text hash.

Encoding is the slow part of an eval on CPU. Vectors depend only on the embedder's weights
and the exact text encoded, so an index rebuilt for another index type (ANN quality) or
after the dataset's index directory was removed reuses them instead of encoding again.
`CachedEmbedder` sits at the Embedder protocol seam: the index pipeline cannot tell it apart.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer.embedder import Embedder


def text_key(text: str) -> bytes:
    """20-byte SHA-1 of the exact text that is encoded."""
    return hashlib.sha1(text.encode("utf-8")).digest()


class VectorCache:
    """Vectors of one embedder (by checksum), persisted as .npz shards in a folder."""

    def __init__(self, folder: Path, dim: int):
        self.folder, self.dim = Path(folder), dim
        self.vectors: dict[bytes, np.ndarray] = {}
        self.pending: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []:
            with np.load(shard) as data:
                if data["vectors"].shape[1:] == (dim,):
                    self.vectors.update(zip((bytes(k) for k in data["keys"]), data["vectors"]))

    def __len__(self) -> int:
        return len(self.vectors)

    def get(self, keys: Sequence[bytes]) -> list[np.ndarray | None]:
        return [self.vectors.get(k) for k in keys]

    def put(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        for k, v in zip(keys, vectors):
            self.vectors[k] = self.pending[k] = np.asarray(v, dtype=np.float32)

    def flush(self) -> None:
        """Write the vectors added since the last flush as a new shard (write aside, then rename)."""
        if not self.pending:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = np.frombuffer(b"".join(self.pending), dtype="S20")
        vectors = np.stack(list(self.pending.values())).astype(np.float32)
        name = f"shard-{len(list(self.folder.glob('*.npz'))):05d}-{os.getpid()}"
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(self.folder / f"{name}.npz")
        self.pending.clear()


class CachedEmbedder:
    """An Embedder that answers documents from a VectorCache and encodes (and caches) only the misses."""

    def __init__(self, embedder: Embedder, cache: VectorCache, flush_every: int = 512):
        self.inner, self.cache, self.flush_every = embedder, cache, flush_every
        self.name, self.dim = embedder.name, embedder.dim
        self.checksum = embedder.checksum  # the manifest records these of the inner embedder
        self.backend, self.precision = embedder.backend, embedder.precision
        self.hits = self.misses = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm vectors of passages; cached ones are not encoded again."""
        keys = [text_key(t) for t in texts]
        found = self.cache.get(keys)
        todo = [i for i, v in enumerate(found) if v is None]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, v in enumerate(found):
            if v is not None:
                out[i] = v
        if todo:
            fresh = self.inner.embed_documents([texts[i] for i in todo])
            out[todo] = fresh
            self.cache.put([keys[i] for i in todo], fresh)
            if len(self.cache.pending) >= self.flush_every:
                self.cache.flush()  # an interrupted build keeps what it encoded
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Queries are short and few: always encoded."""
        return self.inner.embed_queries(texts)

    def close(self) -> None:
        self.cache.flush()
