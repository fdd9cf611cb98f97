"""Test helpers for searchd: a deterministic keyword embedder and a sample index builder.

KeywordEmbedder hashes each word to a signed coordinate, so two texts score by the words they
share (a bag-of-words cosine) and expected rankings can be worked out by hand. It sits at the
Embedder protocol seam; the store, FAISS and the service are the real ones.
"""
from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
STOP = frozenset("a an and the of for to in on with by was is are be his her he she it that this as at from".split())


def words(text: str) -> list[str]:
    """Lower-case words without stop words, with a plural 's' stripped."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in STOP:
            continue
        out.append(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


class KeywordEmbedder:
    """Bag of hashed words, L2-normalised; a text without words maps to the first basis vector."""

    checksum, backend, precision = None, "torch", "fp32"  # no model directory: the name stands in

    def __init__(self, dim: int = 256, name: str = "keyword-fake"):
        self.dim = dim
        self.name = name
        self.calls = 0

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in words(text):
            h = zlib.crc32(w.encode())
            v[h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        n = float(np.linalg.norm(v))
        if n == 0:
            v[0] = 1.0
            return v
        return v / n

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)


def sample_chunker(doc):
    """Small windows so that sample documents have several chunks each."""
    from indexer.documents import chunk_text

    return chunk_text(doc.text, max_tokens=40, overlap_tokens=8)


def sample_documents(sample_dir):
    from indexer.readers import read

    return list(read("beir", sample_dir))


def build_sample_index(settings, sample_dir, embedder=None, collection="sample"):
    """Import the sample corpus into settings.index.dir and build the vectors; returns a SearchService."""
    from indexer import pipeline
    from searchd.service import SearchService

    embedder = embedder or KeywordEmbedder()
    store = pipeline.open_store(settings)
    store.upsert_documents(collection, sample_documents(sample_dir), sample_chunker)
    pipeline.sync(settings, store, embedder)
    store.close()
    store, index, manifest = pipeline.open_index(settings)
    return SearchService(store, index, embedder, settings, manifest)


def brute_keyword(store, text: str, weights=(1.0, 1.0)) -> list[tuple[int, int, float]]:
    """(chunk, document, score) of every chunk the keyword query `text` matches, scored in one SQL statement.

    SQLite: FTS5's bm25() with the column weights. PostgreSQL: ts_rank_cd over chunks.tsv with
    the weights scaled into [0, 1] as the store scales them, and the tsquery written here from the
    parsed words (not by indexer/store/tsquery.py, so that the two are held against each other).
    """
    from searchd.keyword import parse

    query = parse(text)
    if not store.postgres:
        return store.raw("SELECT f.rowid, c.document_id, -bm25(chunks_fts, :t, :x) FROM chunks_fts f JOIN chunks c "
                         "ON c.id = f.rowid WHERE chunks_fts MATCH :q", q=query.fts(), t=weights[0], x=weights[1])
    params = {f"p{i}": p for i, p in enumerate(query.include)} | {f"e{i}": p for i, p in enumerate(query.exclude)}
    tsq = "(" + " || ".join(f"phraseto_tsquery('medlex', :p{i})" for i in range(len(query.include))) + ")"
    tsq = "(" + tsq + "".join(f" && !!phraseto_tsquery('medlex', :e{i})" for i in range(len(query.exclude))) + ")"
    top = max(weights) or 1.0
    return store.raw(f"SELECT id, document_id, ts_rank_cd(CAST(:w AS float4[]), tsv, {tsq}) FROM chunks "
                     f"WHERE tsv @@ {tsq}", w=[0.0, 0.0, weights[1] / top, weights[0] / top], **params)


def matching_documents(store, text: str) -> set[int]:
    """Store ids of the documents with a chunk the keyword query `text` matches, straight from SQL."""
    return {doc for _, doc, _ in brute_keyword(store, text)}
