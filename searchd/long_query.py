"""Long queries (query by document): the facts of a case pasted whole, thousands of characters.

The encoder sees 128 tokens, so a long query is cut into chunks by the same chunker as the
documents and each chunk encoded; the vectors are either pooled (the mean of the unit vectors,
renormalised: one search) or kept apart (a search per chunk, rankings fused by RRF), per
`search.long_query_pooling`. For BM25 every word of a long query would OR hundreds of terms
into FTS5; instead the `search.long_query_terms` words with the highest tf-idf are kept, the
document frequencies read from the store (chunks holding the word), tf damped as 1 + log tf.
"""
from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from indexer.errors import ConfigError, choices
from searchd.keyword import STOP_WORDS, KeywordQuery

if TYPE_CHECKING:
    from indexer.settings import Settings
    from indexer.store import DocumentStore, StoreSnapshot

POOLING = ("mean", "rrf")
MAX_CANDIDATES = 400  # distinct words whose frequency is looked up; a 20,000-character query has about 1,500
DF_CACHE = 200_000  # words whose chunk frequency a service remembers (per store version)
_WORD = re.compile(r"\w+", re.UNICODE)


def check_pooling(pooling: str) -> str:
    """The pooling rule, or a ConfigError naming the valid ones."""
    if pooling not in POOLING:
        raise ConfigError(f"search.long_query_pooling {pooling!r} is not one of {choices(POOLING)}")
    return pooling


def spread(items: Sequence[str], limit: int) -> list[str]:
    """At most `limit` items, evenly spaced over the sequence (first and last kept)."""
    if limit <= 0 or len(items) <= limit:
        return list(items)
    if limit == 1:
        return [items[0]]
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


def pool(vectors: np.ndarray) -> np.ndarray:
    """The mean of unit vectors, renormalised to unit length (float32)."""
    mean = np.asarray(vectors, dtype=np.float32).mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def candidate_terms(text: str) -> dict[str, int]:
    """Content words of a text (lower case, no stop words, no one-letter or all-digit tokens) -> count."""
    counts: dict[str, int] = {}
    for word in _WORD.findall(unicodedata.normalize("NFKC", text).lower()):
        word = word.strip("_")
        if len(word) < 2 or word.isdigit() or word in STOP_WORDS:
            continue
        counts[word] = counts.get(word, 0) + 1
    return counts


def key_terms(text: str, frequencies: Callable[[list[str]], list[int]], total: int, k: int) -> KeywordQuery:
    """The k words of `text` with the highest (1 + log tf) * log(N / df); words in no chunk are dropped.

    `frequencies(words)` gives each word's chunk count in the store; at most MAX_CANDIDATES words
    are looked up, the most frequent in the text first (ties: first seen), which bounds the cost.
    """
    counts = candidate_terms(text)
    words = sorted(counts, key=lambda w: -counts[w])[:MAX_CANDIDATES]  # sorted() is stable: ties stay in text order
    dfs = frequencies(words)
    total = max(total, 1)
    scored = [((1 + math.log(counts[w])) * math.log(total / df), i, w) for i, (w, df) in enumerate(zip(words, dfs))
              if 0 < df]
    scored.sort(key=lambda t: (-t[0], t[1]))
    return KeywordQuery(tuple(w for _, _, w in scored[:max(k, 1)]), ())


class LongQueries:
    """A service's long-query path: keyword terms picked by tf-idf and chunked query vectors, with their caches."""

    def __init__(self, store: DocumentStore, embedder: Any, settings: Settings):
        self.store, self.embedder, self.settings = store, embedder, settings
        self._lock = threading.Lock()
        self._terms: OrderedDict[tuple, KeywordQuery] = OrderedDict()  # (store version, text) -> picked terms
        self._df: tuple[tuple | None, dict[str, int]] = (None, {})  # (store version, word -> chunks holding it)
        self._chunker: Callable[[str], list[str]] | None = None

    def keyword_query(self, text: str, snap: StoreSnapshot) -> KeywordQuery:
        """The search.long_query_terms words of `text` with the highest tf-idf, as a keyword query."""
        s = self.settings.search
        key = (snap.version, text)
        with self._lock:
            if key in self._terms:
                self._terms.move_to_end(key)
                return self._terms[key]
        terms = key_terms(text, lambda words: self.chunk_counts(words, snap), len(snap.chunk_ids), s.long_query_terms)
        with self._lock:
            self._terms[key] = terms
            while len(self._terms) > max(s.query_cache, 1):
                self._terms.popitem(last=False)
        return terms

    def chunk_counts(self, words: list[str], snap: StoreSnapshot) -> list[int]:
        """Chunks holding each word (BM25's document frequency), remembered per store version: words recur across queries."""
        with self._lock:
            if self._df[0] != snap.version or len(self._df[1]) > DF_CACHE:
                self._df = (snap.version, {})
            known = dict(self._df[1])
        missing = [w for w in words if w not in known]
        found = dict(zip(missing, self.store.phrase_counts([KeywordQuery((w,), ()).fts() for w in missing])))
        with self._lock:
            if self._df[0] == snap.version:
                self._df[1].update(found)
        return [known.get(w, found.get(w, 0)) for w in words]

    def pieces(self, text: str) -> list[str]:
        """The query's chunks by the documents' chunker (the embedder's tokenizer, chunk.max_tokens windows), spread."""
        if self._chunker is None:
            from indexer.documents import chunk_text, offsets_for_model
            from indexer.models import resolve_embedder_dir

            offsets, c = offsets_for_model(str(resolve_embedder_dir(self.settings))), self.settings.chunk
            self._chunker = lambda t: [ch.text for ch in chunk_text(t, offsets, c.max_tokens, c.overlap_tokens)]
        return spread(self._chunker(text), self.settings.search.long_query_chunks) or [text]

    def vector(self, text: str) -> np.ndarray:
        """One pooled unit vector (mean), or one row per chunk (rrf: the service searches each and fuses)."""
        pooling = check_pooling(self.settings.search.long_query_pooling)
        vectors = self.embedder.embed_queries(self.pieces(text))
        return pool(vectors) if pooling == "mean" else np.asarray(vectors, dtype=np.float32)
