"""The read half of DocumentStore: counts, document views, BM25, highlights, the snapshot loader, lexicon reads.

Reads that take a list of ids go through Database.rows_for_ids, so no list is ever cut short by
SQLite's bound-parameter cap. Reads behind a search that return many rows go straight through
sqlite3, where SQLAlchemy row objects would cost more than the query. On PostgreSQL the keyword
reads run on chunks.tsv (schema.PG_DDL) with the expression turned into a tsquery (tsquery.py),
and chunks are scored by ts_rank_cd instead of BM25 (`keyword_scoring`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from sqlalchemy import func, select

from indexer.store.database import MAX_IDS, Database
from indexer.store.schema import FTS_COLUMNS, ChunkRow, CollectionRow, DocumentRow, MentionRow
from indexer.store.snapshot import StoreSnapshot
from indexer.store.tsquery import tsquery_sql



@dataclass(frozen=True)
class DocInfo:
    """A document without its text: store and corpus ids, collection, title, metadata columns."""

    id: int
    external_id: str
    collection: str
    title: str
    meta: dict[str, Any]


class StoreReads(Database):
    """Reads: everything search, evaluation, the tagger and the index build ask of the store."""

    def _fetch(self, sql: str, params: Sequence[Any] = (), deadline: float | None = None) -> list[tuple]:
        """All rows of a `?`-marked statement (plain tuples), interrupted at `deadline`."""
        with self.reading(deadline) as conn:
            return self.fetch(conn, sql, params)

    @property
    def keyword_scoring(self) -> str:
        """How keyword search scores a chunk: "bm25" (SQLite FTS5) or "ts_rank_cd" (PostgreSQL)."""
        return "ts_rank_cd" if self.postgres else "bm25"

    # ---- sizes and ids -------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Numbers of collections, documents, chunks and mentions."""
        with self.session() as s:
            return {"collections": s.scalar(select(func.count()).select_from(CollectionRow)),
                    "documents": s.scalar(select(func.count()).select_from(DocumentRow)),
                    "chunks": s.scalar(select(func.count()).select_from(ChunkRow)),
                    "mentions": s.scalar(select(func.count()).select_from(MentionRow))}

    def version(self) -> tuple[int, int, int]:
        """Changes whenever documents, chunks or mentions are added, replaced or deleted."""
        if self.postgres:  # serial ids are never reused either: a replaced document moves the largest chunk id on
            return tuple(self._fetch("SELECT (SELECT count(*) FROM documents), greatest((SELECT coalesce(max(id), 0) "
                                     "FROM documents), (SELECT coalesce(max(id), 0) FROM chunks)), "
                                     "(SELECT coalesce(max(id), 0) FROM mentions)")[0])
        # AUTOINCREMENT ids are never reused, so a replaced document moves sqlite_sequence on
        return tuple(self._fetch("SELECT (SELECT count(*) FROM documents), "
                                 "(SELECT coalesce(max(seq), 0) FROM sqlite_sequence), "
                                 "(SELECT coalesce(max(id), 0) FROM mentions)")[0])

    def untagged_documents(self, tagger: str) -> list[int]:
        """Documents without gold mentions that `tagger` (a checksum) has not tagged yet, by id."""
        return [r[0] for r in self._fetch(
            "SELECT d.id FROM documents d WHERE NOT EXISTS (SELECT 1 FROM mentions m WHERE m.document_id = d.id "
            "AND m.origin = 'gold') AND NOT EXISTS (SELECT 1 FROM taggings t WHERE t.document_id = d.id "
            "AND t.tagger = ?) ORDER BY d.id", (tagger,))]

    def document_ids(self, collection: str | None = None) -> list[int]:
        """Store ids of the documents of a collection (all when None)."""
        with self.session() as s:
            q = select(DocumentRow.id).order_by(DocumentRow.id)
            if collection is not None:
                q = q.where(DocumentRow.collection_id == self.collection_id(s, collection, create=False))
            return list(s.scalars(q))

    def external_ids(self, collection: str) -> list[str]:
        """Corpus ids of the documents of a collection."""
        with self.session() as s:
            cid = self.collection_id(s, collection, create=False)
            return list(s.scalars(select(DocumentRow.external_id).where(DocumentRow.collection_id == cid)))

    def content_hashes(self, collection: str, external_ids: Sequence[str]) -> dict[str, str]:
        """Corpus id -> content hash of those given documents the collection holds (unknown ones are absent)."""
        ids = list(dict.fromkeys(str(i) for i in external_ids))
        out: dict[str, str] = {}
        for start in range(0, len(ids), MAX_IDS):
            part = ids[start:start + MAX_IDS]
            out.update(self._fetch("SELECT d.external_id, d.content_hash FROM documents d JOIN collections c ON "
                                   f"c.id = d.collection_id WHERE c.name = ? AND d.external_id IN "
                                   f"({', '.join('?' * len(part))})", (collection, *part)))
        return out

    def chunk_ids(self) -> list[int]:
        """Ids of every chunk, ascending."""
        with self.session() as s:
            return list(s.scalars(select(ChunkRow.id).order_by(ChunkRow.id)))

    # ---- documents, chunks and mentions by id --------------------------------------------
    def chunk_texts(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """chunk id -> (document title, chunk text)."""
        rows = self.rows_for_ids("SELECT c.id, d.title, c.text FROM chunks c JOIN documents d "
                                 "ON d.id = c.document_id WHERE c.id IN ({ids})", ids)
        return {i: (t, x) for i, t, x in rows}

    def doc_infos(self, doc_ids: Sequence[int]) -> dict[int, DocInfo]:
        """Document id -> external id, collection, title and metadata columns (not the text)."""
        rows = self.rows_for_ids("SELECT d.id, d.external_id, c.name, d.title, d.meta, d.source, d.doc_type, "
                                 "d.court, d.date, d.year FROM documents d JOIN collections c "
                                 "ON c.id = d.collection_id WHERE d.id IN ({ids})", doc_ids)
        out: dict[int, DocInfo] = {}
        for i, ext, coll, title, meta, source, doc_type, court, date, year in rows:
            meta = meta if isinstance(meta, dict) else json.loads(meta) if meta else {}  # psycopg decodes JSON itself
            meta = {**meta, "source": source, "doc_type": doc_type,
                    "court": court, "date": date, "year": year}
            out[i] = DocInfo(i, ext, coll, title or "", meta)
        return out

    def chunk_rows(self, chunk_ids: Sequence[int]) -> dict[int, tuple[int, int, int, str]]:
        """Chunk id -> (document id, start, end, text)."""
        rows = self.rows_for_ids('SELECT id, document_id, start, "end", text FROM chunks WHERE id IN ({ids})',
                                 chunk_ids)
        return {r[0]: r[1:] for r in rows}

    def chunk_documents(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        """Chunk id -> document id (deleted chunks are absent)."""
        return dict(self.rows_for_ids("SELECT id, document_id FROM chunks WHERE id IN ({ids})", chunk_ids))

    def document_chunk_ids(self, doc_id: int) -> list[int]:
        """Ids of a document's chunks, in reading order."""
        return [r[0] for r in self._fetch("SELECT id FROM chunks WHERE document_id = ? ORDER BY ordinal",
                                          (int(doc_id),))]

    def document_text(self, doc_id: int) -> str | None:
        """The full text of a document, or None when there is no such document."""
        rows = self._fetch("SELECT text FROM documents WHERE id = ?", (int(doc_id),))
        return rows[0][0] if rows else None

    def document_texts(self, doc_ids: Sequence[int], batch_size: int) -> Iterator[list[tuple[int, str]]]:
        """(document id, text) in batches of `batch_size`, in the order given; deleted documents are left out."""
        for start in range(0, len(doc_ids), batch_size):
            part = [int(i) for i in doc_ids[start:start + batch_size]]
            texts = dict(self.rows_for_ids("SELECT id, text FROM documents WHERE id IN ({ids})", part))
            yield [(i, texts[i]) for i in part if i in texts]

    def legal_documents(self, doc_ids: Sequence[int]) -> set[int]:
        """The given documents a legal reader imported (`indexer.legal_filter.is_legal_document`: a court or a
        legal doc_type); the tagger reads them as legal text whatever a passage says."""
        from indexer.legal_filter import is_legal_document

        rows = self.rows_for_ids("SELECT id, court, doc_type FROM documents WHERE id IN ({ids})",
                                 [int(i) for i in doc_ids])
        return {i for i, court, doc_type in rows if is_legal_document({"court": court, "doc_type": doc_type})}

    def mentions_of(self, doc_ids: Sequence[int]) -> dict[int, list[tuple[str, str, str, int, int, str]]]:
        """Document id -> its mentions as (label, norm id, norm name, start, end, negation), by start."""
        out: dict[int, list] = {d: [] for d in doc_ids}
        # each document's mentions come in one batch, so ordering within a batch is enough
        for r in self.rows_for_ids('SELECT document_id, label, norm_id, norm_name, start, "end", negation '
                                   "FROM mentions WHERE document_id IN ({ids}) ORDER BY document_id, start",
                                   doc_ids):
            out[r[0]].append(tuple(r[1:]))
        return out

    # ---- keyword search ------------------------------------------------------------------
    def keyword_chunks(self, match: str, deadline: float | None = None) -> np.ndarray:
        """Ids of every chunk matching the FTS5 expression, unscored (what keyword mode finds)."""
        # one concatenated string crosses the driver instead of a tuple per chunk
        if self.postgres:
            q, params = tsquery_sql(match)
            joined = self._fetch(f"SELECT string_agg(id::text, ',' ORDER BY id) FROM chunks WHERE tsv @@ {q}", params,
                                 deadline)[0][0]
            return np.array(joined.split(","), dtype=np.int64) if joined else np.zeros(0, dtype=np.int64)
        joined = self._fetch("SELECT group_concat(rowid) FROM chunks_fts WHERE chunks_fts MATCH ?", (match,),
                             deadline)[0][0]
        return np.fromstring(joined, dtype=np.int64, sep=",") if joined else np.zeros(0, dtype=np.int64)

    def phrase_counts(self, phrases: Sequence[str], deadline: float | None = None) -> list[int]:
        """Number of chunks containing each FTS5 phrase (a quoted string): BM25's document frequency."""
        if self.postgres:
            return [self._fetch(f"SELECT count(*) FROM chunks WHERE tsv @@ {q}", params, deadline)[0][0]
                    for q, params in map(tsquery_sql, phrases)]
        return [self._fetch("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (p,), deadline)[0][0]
                for p in phrases]

    def term_counts(self, terms: Sequence[str], deadline: float | None = None) -> dict[str, int]:
        """Chunks holding each FTS5 token (lower case, as the tokenizer indexes it), from the FTS5 vocabulary.

        One lookup per term in an fts5vocab table over the index (a temp table of the connection:
        the schema is unchanged), where `phrase_counts` would walk each term's whole posting list.
        Terms the index has never seen are absent from the result.
        """
        if not terms:
            return {}
        if self.postgres:  # a tsquery of one lexeme, counted over the GIN index
            counts = [self._fetch("SELECT count(*) FROM chunks WHERE tsv @@ ?::tsquery", ("'" + t.replace("'", "''") + "'",),
                                  deadline)[0][0] for t in terms]
            return {t: n for t, n in zip(terms, counts) if n}
        with self.reading(deadline) as conn:
            raw = conn.connection.driver_connection
            raw.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.chunks_vocab USING fts5vocab(main, chunks_fts, row)")
            out: dict[str, int] = {}
            for start in range(0, len(terms), 500):  # bound the statement's parameter count
                part = list(terms[start:start + 500])
                marks = ",".join("?" * len(part))
                out.update(raw.execute(f"SELECT term, doc FROM temp.chunks_vocab WHERE term IN ({marks})", part).fetchall())
            return out

    def keyword_scored(self, match: str, among: np.ndarray | None = None, weights: Sequence[float] = (1.0, 1.0),
                       deadline: float | None = None, within: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(chunk ids ascending, BM25 of `match`, higher is better) of the matching chunks, only those in `among`
        and, with `within` (an expression whose phrases are some of `match`'s), only those matching it too.

        `weights`: one per FTS column (title, text), FTS5's bm25() column weights. FTS5 computes
        bm25() only for the rows a statement returns. `within` bounds the rows FTS5 walks: it
        seeks through "within AND match" driven by within's rare phrases, and BM25 sums over phrases,
        so the score of `match` is that of "within AND match" less that of "within" alone.
        `among` filters rows before the select list is evaluated (`+rowid IN (...)`: the `+` keeps
        SQLite from handing the list to FTS5 as one lookup per id, each of which would recount every
        phrase), and `rowid BETWEEN` its first and last id lets FTS5 skip the rest of every doclist.
        Scores are rounded to 1e-9, which keeps equal scores equal.
        """
        if len(weights) != len(FTS_COLUMNS):
            raise ValueError(f"bm25 needs {len(FTS_COLUMNS)} column weights ({', '.join(FTS_COLUMNS)}), got {weights}")
        if among is not None and len(among) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        if self.postgres:
            return self._ts_rank_scored(match, among, weights, deadline, within)
        marks = ", ".join("?" * len(weights))
        sql = f"SELECT rowid, -bm25(chunks_fts, {marks}) FROM chunks_fts WHERE chunks_fts MATCH ?"
        tail: tuple = ()
        if among is not None:
            ids = np.asarray(among, dtype=np.int64)
            sql += " AND rowid BETWEEN ? AND ? AND +rowid IN (SELECT value FROM json_each(?))"
            tail = (int(ids.min()), int(ids.max()), "[" + ",".join(map(str, ids.tolist())) + "]")
        sql += " ORDER BY rowid"
        w = tuple(float(x) for x in weights)
        if within is None:
            both = np.asarray(self._fetch(sql, (*w, match, *tail), deadline), dtype=np.float64).reshape(-1, 2)
            return both[:, 0].astype(np.int64), np.round(both[:, 1], 9)
        # both statements in one read transaction (WAL: one snapshot), so a write between them cannot
        # leave rows of `both` missing from `alone`
        with self.reading(deadline) as conn:
            raw = conn.connection.driver_connection
            raw.execute("SAVEPOINT keyword_scored")
            try:
                both = np.asarray(raw.execute(sql, (*w, f"({within}) AND ({match})", *tail)).fetchall(),
                                  dtype=np.float64).reshape(-1, 2)
                alone = np.asarray(raw.execute(sql, (*w, within, *tail)).fetchall(), dtype=np.float64).reshape(-1, 2)
            finally:
                raw.execute("RELEASE keyword_scored")
        ids = both[:, 0].astype(np.int64)
        extra = alone[np.searchsorted(alone[:, 0], both[:, 0]), 1]  # rows of `both` are rows of `alone`
        return ids, np.round(both[:, 1] - extra, 9)

    def _ts_rank_scored(self, match: str, among: np.ndarray | None, weights: Sequence[float],
                        deadline: float | None, within: str | None) -> tuple[np.ndarray, np.ndarray]:
        """keyword_scored on PostgreSQL: ts_rank_cd of `match` over chunks.tsv, title words weighted apart.

        ts_rank_cd's weights must lie in [0, 1]: (title, text) are scaled by the larger, which scales
        every score alike and leaves the ranking as the weights' ratio makes it.
        """
        top = max(float(w) for w in weights) or 1.0
        rank_weights = [0.0, 0.0, float(weights[1]) / top, float(weights[0]) / top]  # {D, C, B = text, A = title}
        q, params = tsquery_sql(match)
        sql = f"SELECT id, ts_rank_cd(?::float4[], tsv, {q}) FROM chunks WHERE tsv @@ {q}"
        params = [rank_weights, *params, *params]
        if within is not None:
            wq, wparams = tsquery_sql(within)
            sql += f" AND tsv @@ {wq}"
            params += wparams
        if among is not None:
            sql += " AND id = ANY(?)"
            params.append(np.asarray(among, dtype=np.int64).tolist())
        both = np.asarray(self._fetch(sql + " ORDER BY id", params, deadline), dtype=np.float64).reshape(-1, 2)
        return both[:, 0].astype(np.int64), np.round(both[:, 1], 9)

    def term_highlights(self, match: str, chunk_ids: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
        """Chunk id -> character spans (in the chunk text) of the tokens FTS5 matched for `match`."""
        if self.postgres:  # ts_headline marks the matched words of the whole text (HighlightAll)
            q, params = tsquery_sql(match)
            rows = self.rows_for_ids(f"SELECT id, ts_headline('medlex', text, {q}, 'HighlightAll=true, StartSel=' "
                                     "|| chr(1) || ', StopSel=' || chr(2)) FROM chunks WHERE tsv @@ "
                                     f"{q} AND id IN ({{ids}})", chunk_ids, before=(*params, *params))
            return {rowid: _marker_spans(marked) for rowid, marked in rows}
        rows = self.rows_for_ids("SELECT rowid, highlight(chunks_fts, 1, char(1), char(2)) FROM chunks_fts "
                                 "WHERE chunks_fts MATCH ? AND rowid IN ({ids})", chunk_ids, before=(match,))
        return {rowid: _marker_spans(marked) for rowid, marked in rows}

    # ---- whole-store reads ---------------------------------------------------------------
    def load_snapshot(self, version: tuple | None = None) -> StoreSnapshot:
        """Read the in-memory filter and facet arrays of the store as it is now, tagged with `version`."""
        version = self.version() if version is None else version
        # the three reads share one read transaction, so a writer committing meanwhile (another process on
        # PostgreSQL, the indexer beside searchd on SQLite) cannot leave chunks whose document is not read
        with self.reading() as conn:
            raw = None if self.postgres else conn.connection.driver_connection
            if raw is not None:
                raw.execute("SAVEPOINT load_snapshot")
            try:
                docs = self.fetch(conn, "SELECT d.id, c.name, d.source, d.doc_type, d.court, d.year FROM documents d "
                                  "JOIN collections c ON c.id = d.collection_id ORDER BY d.id")
                chunks = self.fetch(conn, "SELECT id, document_id FROM chunks ORDER BY id")
                mentions = self.fetch(conn, "SELECT document_id, label, norm_id, norm_name, negation, count(*) "
                                      "FROM mentions GROUP BY document_id, label, norm_id, norm_name, negation")
            finally:
                if raw is not None:
                    raw.execute("RELEASE load_snapshot")
        return StoreSnapshot(version, docs, chunks, mentions)

    def mention_forms(self, labels: Sequence[str]) -> list[tuple[str, str, str]]:
        """Distinct (lower-cased text, label, norm id) of the affirmed mentions with the given labels."""
        marks = ", ".join("?" * len(labels)) or "NULL"
        return self._fetch("SELECT DISTINCT lower(text), label, norm_id FROM mentions "
                           f"WHERE negation = 'affirmed' AND label IN ({marks})", labels)

    def document_frequencies(self, label: str) -> list[tuple[str, int]]:
        """(norm id, number of documents with a mention of it) for every value of one mention label."""
        return self._fetch("SELECT norm_id, count(DISTINCT document_id) FROM mentions WHERE label = ? "
                           "GROUP BY norm_id", (label,))

    def median_year(self) -> int | None:
        """The year of the middle document in year order (documents without a year sort first)."""
        rows = self._fetch("SELECT year FROM documents ORDER BY year NULLS FIRST LIMIT 1 OFFSET (SELECT count(*) / 2 "
                           "FROM documents)")
        return rows[0][0] if rows else None


_MARKERS = re.compile("[\x01\x02]")


def _marker_spans(marked: str) -> list[tuple[int, int]]:
    """Spans between \\x01 and \\x02 markers, as offsets into the text without them (only the markers are
    visited: a per-character loop cost 0.17 ms per 3,700-character chunk, docs/benchmarks.md)."""
    spans, start = [], None
    for seen, m in enumerate(_MARKERS.finditer(marked)):
        plain = m.start() - seen  # offset in the text without the markers before this one
        if m.group() == "\x01":
            start = plain
        elif start is not None:
            spans.append((start, plain))
            start = None
    return spans
