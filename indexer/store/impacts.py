"""Per-term impact lists: for each indexed term in many chunks, what it adds to each chunk's BM25.

FTS5's bm25() is a sum over a query's phrases, in query order, of one phrase's contribution, and
a phrase's contribution to a chunk is exactly the score the single-phrase query gives it (the
same idf, average length and column weights, the same floating-point operations). So
`build_impacts` stores, for every term found in more than `size` chunks, every chunk id with that
score, computed by FTS5 itself; searchd/bm25.py adds them up per chunk in query order and gets
FTS5's own scores, bit for bit, without FTS5 computing bm25() per matching row.

The lists hold for one state of the FTS index and one pair of column weights: they are keyed by
a fingerprint of the FTS5 structure and averages records and of the store version, which every
write changes, so a store changed after the build reads as having no lists (`term_impacts` is
None) and searches take the path without them until the next `indexer build`. Terms are FTS5's
tokens (Porter stems); a query phrase is looked up by tokenizing it with the same tokenizer in
an in-memory FTS5 table. A list is computed with a query phrase that tokenizes to exactly its
term: the term itself, or (Porter stems are not always stems of themselves: "diseas") the term
with one of a few endings ("disease"); a term none of them gives has no list.

A PostgreSQL store has no impact lists: it ranks by ts_rank_cd, which is not a sum over phrases
that a list could precompute, so `term_impacts` is None there and `build_impacts` writes none.
"""
from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from indexer.store.database import Database
from indexer.store.schema import FTS_COLUMNS, FTS_TOKENIZE

ENDINGS = ("", "e", "s", "es", "ed", "ing", "y", "al", "ion", "ation", "ic", "er", "ly", "ous", "ity", "ment", "ness",
           "ate", "ize", "ise", "ence", "ance", "ive", "ent", "ant", "ful", "ism", "ist")
LAYOUT = "every-posting/1"  # recorded with the lists: lists of another layout read as absent
IMPACT_DDL = [
    "DROP TABLE IF EXISTS fts_impacts",
    "DROP TABLE IF EXISTS fts_impacts_meta",
    "CREATE TABLE IF NOT EXISTS fts_impacts (term TEXT PRIMARY KEY, ids BLOB NOT NULL, scores BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fts_impacts_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]


@dataclass(frozen=True)
class ImpactLists:
    """The impact lists of one FTS state and one pair of column weights."""

    fingerprint: str
    weights: tuple[float, ...]
    size: int  # terms in at most this many chunks have no list (FTS5 scores them, cheaply)
    terms: frozenset[str]  # the tokens with a list

    def has(self, token: str) -> bool:
        return token in self.terms


class _Tokenizer:
    """FTS5's own tokenizer (the chunks_fts one) on an in-memory table: text -> its tokens, in order."""

    def __init__(self):
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(":memory:", check_same_thread=False)
        self._conn.execute(f"CREATE VIRTUAL TABLE t USING fts5(x, tokenize='{FTS_TOKENIZE}')")
        self._conn.execute("CREATE VIRTUAL TABLE tv USING fts5vocab(t, 'instance')")

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        with self._lock:
            try:
                self._conn.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", enumerate(texts))
                out: list[list[str]] = [[] for _ in texts]
                for doc, term in self._conn.execute("SELECT doc, term FROM tv ORDER BY doc, offset"):
                    out[doc].append(term)
                return out
            finally:
                self._conn.execute("DELETE FROM t")


class StoreImpacts(Database):
    """Building and reading the impact lists (part of DocumentStore)."""

    _tokenizer: _Tokenizer | None = None
    _impacts: ImpactLists | None = None

    def phrase_tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """The FTS5 tokens of each text, as chunks_fts indexes them (stemmed, case- and diacritics-folded)."""
        if self._tokenizer is None:
            self._tokenizer = _Tokenizer()
        return self._tokenizer.tokens(list(texts))

    def fts_fingerprint(self) -> str:
        """Changes whenever the FTS index does (its structure record counts every write)."""
        if self.postgres:  # chunks.tsv changes only with chunk and document writes, which move the version
            return hashlib.sha1(repr(self.version()).encode()).hexdigest()
        with self.reading() as conn:
            raw = conn.connection.driver_connection
            blocks = raw.execute("SELECT id, block FROM chunks_fts_data WHERE id IN (1, 10) ORDER BY id").fetchall()
        h = hashlib.sha1(repr(self.version()).encode())
        for _, block in blocks:
            h.update(bytes(block))
        return h.hexdigest()

    def phrase_impacts(self, phrase: str, weights: Sequence[float],
                       deadline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, -bm25 unrounded) of the one-phrase query `phrase` (FTS5 syntax): what it adds to each chunk."""
        w = _weights(weights)
        if self.postgres:
            return self.keyword_scored(phrase, None, w, deadline)
        marks = ", ".join("?" * len(w))
        with self.reading(deadline) as conn:
            raw = conn.connection.driver_connection
            rows = raw.execute(f"SELECT rowid, -bm25(chunks_fts, {marks}) FROM chunks_fts WHERE chunks_fts MATCH ?",
                               (*w, phrase)).fetchall()
        both = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
        return both[:, 0].astype(np.int64), np.ascontiguousarray(both[:, 1])

    def build_impacts(self, weights: Sequence[float], size: int, progress: bool = True) -> int:
        """(Re)write the impact lists for `weights` (title, text): every term in more than `size` chunks.

        Returns the number of lists written. Costs one FTS5 bm25() per posting of those terms,
        and 16 bytes a posting on disk (chunk id and score).
        """
        from tqdm import tqdm

        w = _weights(weights)
        if size < 1:
            raise ValueError(f"impact list size must be at least 1, got {size}")
        if self.postgres:
            return 0
        before = self.fts_fingerprint()
        with self.reading() as conn:
            raw = conn.connection.driver_connection
            raw.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_fts_vocab "
                        "USING fts5vocab(main, chunks_fts, 'row')")
            terms = [t for t, in raw.execute("SELECT term FROM temp.chunks_fts_vocab WHERE doc > ? ORDER BY term",
                                             (size,))]
        phrases = self._phrases_for(terms)
        rows = []
        for term, phrase in tqdm(phrases.items(), desc="keyword impact lists", unit="term", disable=not progress,
                                 dynamic_ncols=True):
            ids, scores = self.phrase_impacts('"' + phrase + '"', w)
            rows.append((term, ids.tobytes(), scores.tobytes()))
        with self.engine.begin() as conn:
            if self.fts_fingerprint() != before:
                raise RuntimeError("the store changed while its keyword impact lists were built; run the build again")
            for ddl in IMPACT_DDL:
                conn.exec_driver_sql(ddl)
            raw = conn.connection.driver_connection
            raw.executemany("INSERT INTO fts_impacts(term, ids, scores) VALUES (?, ?, ?)", rows)
            raw.executemany("INSERT INTO fts_impacts_meta(key, value) VALUES (?, ?)",
                            [("fingerprint", before), ("weights", repr(w)), ("size", str(size)),
                             ("layout", LAYOUT)])
        self._impacts = None
        return len(rows)

    def _phrases_for(self, terms: Sequence[str]) -> dict[str, str]:
        """term -> a word that FTS5 tokenizes to exactly that term, for the terms some ending gives one."""
        out: dict[str, str] = {}
        for ending in ENDINGS:
            left = [t for t in terms if t not in out]
            words = [t + ending for t in left] + [t[:-1] + "y" + ending for t in left if t.endswith("i")]
            owners = left + [t for t in left if t.endswith("i")]
            for term, word, toks in zip(owners, words, self.phrase_tokens(words)):
                if toks == [term]:
                    out.setdefault(term, word)
        return out

    def term_impacts(self, weights: Sequence[float]) -> ImpactLists | None:
        """The impact lists for `weights` when they match the FTS index as it is now, else None."""
        w = _weights(weights)
        if self.postgres:
            return None
        now = self.fts_fingerprint()
        cached = self._impacts
        if cached is not None and cached.fingerprint == now and cached.weights == w:
            return cached
        with self.reading() as conn:
            raw = conn.connection.driver_connection
            if raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'fts_impacts_meta'").fetchone() is None:
                return None
            meta = dict(raw.execute("SELECT key, value FROM fts_impacts_meta").fetchall())
            if meta.get("fingerprint") != now or meta.get("weights") != repr(w) or meta.get("layout") != LAYOUT:
                return None
            terms = frozenset(t for t, in raw.execute("SELECT term FROM fts_impacts"))
        self._impacts = ImpactLists(now, w, int(meta["size"]), terms)
        return self._impacts

    def impact_list(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids, what `token` adds to their BM25) from the impact lists (`term_impacts` says which exist)."""
        with self.reading() as conn:
            raw = conn.connection.driver_connection
            row = raw.execute("SELECT ids, scores FROM fts_impacts WHERE term = ?", (token,)).fetchone()
        if row is None:
            raise KeyError(f"no keyword impact list for {token!r}")
        return np.frombuffer(row[0], dtype=np.int64), np.frombuffer(row[1], dtype=np.float64)


def _weights(weights: Sequence[float]) -> tuple[float, ...]:
    if len(weights) != len(FTS_COLUMNS):
        raise ValueError(f"bm25 needs {len(FTS_COLUMNS)} column weights ({', '.join(FTS_COLUMNS)}), got {weights}")
    return tuple(float(x) for x in weights)
