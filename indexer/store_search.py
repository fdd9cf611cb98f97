"""Read queries behind search, mixed into DocumentStore: filters as SQL, BM25, documents, mentions.

Everything here is plain SQL over the tables of indexer/store.py, so the module needs none of
its models. A read can carry a deadline: SQLite's progress handler interrupts it once the
deadline passes and the caller gets a StoreTimeout.
"""
from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import Engine

from indexer.errors import StoreError

METADATA_FILTERS = ("collection", "source", "doc_type", "court")


class StoreTimeout(StoreError):
    """A read ran past its deadline and was interrupted."""


@dataclass(frozen=True)
class DocFilter:
    """Which documents a search may return: AND across keys, OR within the values of one key."""

    entities: dict[str, tuple[str, ...]] = field(default_factory=dict)  # mention label -> norm ids or names
    meta: dict[str, tuple[str, ...]] = field(default_factory=dict)  # collection/source/doc_type/court -> values
    year_from: int | None = None
    year_to: int | None = None
    include_negated: bool = False  # match negated mentions too (affirmed always match)

    def is_empty(self) -> bool:
        return not (self.entities or self.meta or self.year_from is not None or self.year_to is not None)

    def sql(self) -> tuple[str, dict[str, Any]]:
        """`SELECT id FROM documents WHERE ...` for this filter, and its bound parameters."""
        where, params = [], {}
        for i, (name, values) in enumerate(sorted(self.meta.items())):
            keys = _bind(params, f"m{i}", values)
            if name == "collection":
                where.append(f"collection_id IN (SELECT id FROM collections WHERE name IN ({keys}))")
            elif name in METADATA_FILTERS:
                where.append(f"{name} IN ({keys})")
            else:
                raise StoreError(f"unknown metadata filter {name!r}; known: {', '.join(METADATA_FILTERS)}")
        if self.year_from is not None:
            where.append("year >= :year_from")
            params["year_from"] = self.year_from
        if self.year_to is not None:
            where.append("year <= :year_to")
            params["year_to"] = self.year_to
        states = "'affirmed', 'negated'" if self.include_negated else "'affirmed'"
        for i, (label, values) in enumerate(sorted(self.entities.items())):
            params[f"l{i}"] = label
            ids = _bind(params, f"e{i}", values)
            names = _bind(params, f"n{i}", [v.lower() for v in values])
            texts = _bind(params, f"t{i}", [f"text:{v.lower()}" for v in values])
            # a name selects every norm id that some mention of this label gives that name
            where.append(f"id IN (SELECT document_id FROM mentions WHERE label = :l{i} AND negation IN ({states}) "
                         f"AND (norm_id IN ({ids}) OR norm_id IN ({texts}) OR norm_id IN (SELECT norm_id FROM "
                         f"mentions WHERE label = :l{i} AND lower(norm_name) IN ({names}))))")
        return "SELECT id FROM documents" + (" WHERE " + " AND ".join(where) if where else ""), params


def _bind(params: dict[str, Any], prefix: str, values: Sequence[Any]) -> str:
    """Add values as numbered parameters; the `:name` list for an IN clause."""
    names = []
    for j, v in enumerate(values):
        params[f"{prefix}_{j}"] = v
        names.append(f":{prefix}_{j}")
    return ", ".join(names) or "NULL"


@dataclass(frozen=True)
class DocInfo:
    id: int
    external_id: str
    collection: str
    title: str
    meta: dict[str, Any]


class SearchQueries:
    """Read queries behind search: allowed ids, BM25, facet counts, document views (mixed into DocumentStore)."""

    engine: Engine

    @contextmanager
    def reading(self, deadline: float | None = None) -> Iterator[Any]:
        """A connection whose statements are interrupted once time.monotonic() passes `deadline`."""
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            if deadline is not None:
                raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 2000)
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                if "interrupted" in str(exc):
                    raise StoreTimeout("the query ran out of time") from None
                raise
            except Exception as exc:  # SQLAlchemy wraps driver errors
                if "interrupted" in str(getattr(exc, "orig", "")):
                    raise StoreTimeout("the query ran out of time") from None
                raise
            finally:
                raw.set_progress_handler(None, 0)

    def keyword(self, match: str, flt: DocFilter, limit: int,
                deadline: float | None = None) -> list[tuple[int, int, float]]:
        """(chunk id, document id, BM25 score, higher is better) of the best-matching chunks."""
        sql, params = flt.sql()
        cond = "" if flt.is_empty() else f" AND c.document_id IN ({sql})"
        stmt = text("SELECT f.rowid, c.document_id, -bm25(chunks_fts) FROM chunks_fts f JOIN chunks c "
                    f"ON c.id = f.rowid WHERE chunks_fts MATCH :q{cond} ORDER BY bm25(chunks_fts) LIMIT :lim")
        with self.reading(deadline) as conn:
            return [tuple(r) for r in conn.execute(stmt, {**params, "q": match, "lim": limit})]

    def keyword_matches(self, match: str, flt: DocFilter,
                        deadline: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every chunk passing the filter that matches the FTS5 expression: (chunk ids, document ids, BM25)."""
        sql, params = flt.sql()
        cond = "" if flt.is_empty() else f" AND c.document_id IN ({sql})"
        sql = ("SELECT f.rowid, c.document_id, -bm25(chunks_fts) FROM chunks_fts f JOIN chunks c "
               f"ON c.id = f.rowid WHERE chunks_fts MATCH :q{cond}")
        with self.reading(deadline) as conn:
            # straight through sqlite3 (named parameters): a broad match returns tens of thousands of
            # rows, and SQLAlchemy row objects would cost more than the search
            rows = conn.connection.driver_connection.execute(sql, {**params, "q": match}).fetchall()
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
        return arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2]

    def doc_infos(self, doc_ids: Sequence[int]) -> dict[int, DocInfo]:
        """Document id -> external id, collection, title and metadata columns (not the text)."""
        out: dict[int, DocInfo] = {}
        with self.reading() as conn:
            for start in range(0, len(doc_ids), 900):
                part = [int(i) for i in doc_ids[start:start + 900]]
                rows = conn.exec_driver_sql(
                    "SELECT d.id, d.external_id, c.name, d.title, d.meta, d.source, d.doc_type, d.court, d.date, "
                    f"d.year FROM documents d JOIN collections c ON c.id = d.collection_id "
                    f"WHERE d.id IN ({', '.join('?' * len(part))})", tuple(part)).fetchall()
                for i, ext, coll, title, meta, source, doc_type, court, date, year in rows:
                    meta = {**(json.loads(meta) if meta else {}), "source": source, "doc_type": doc_type,
                            "court": court, "date": date, "year": year}
                    out[i] = DocInfo(i, ext, coll, title or "", meta)
        return out

    def chunk_rows(self, chunk_ids: Sequence[int]) -> dict[int, tuple[int, int, int, str]]:
        """Chunk id -> (document id, start, end, text)."""
        out = {}
        with self.reading() as conn:
            for start in range(0, len(chunk_ids), 900):
                part = list(chunk_ids[start:start + 900])
                marks = ", ".join("?" * len(part))
                rows = conn.exec_driver_sql(f'SELECT id, document_id, start, "end", text FROM chunks '
                                            f"WHERE id IN ({marks})", tuple(part)).fetchall()
                out.update({r[0]: (r[1], r[2], r[3], r[4]) for r in rows})
        return out

    def chunk_documents(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        """Chunk id -> document id (deleted chunks are absent)."""
        out = {}
        with self.reading() as conn:
            for start in range(0, len(chunk_ids), 900):
                part = [int(i) for i in chunk_ids[start:start + 900]]
                marks = ", ".join("?" * len(part))
                rows = conn.exec_driver_sql(f"SELECT id, document_id FROM chunks WHERE id IN ({marks})",
                                            tuple(part)).fetchall()
                out.update(dict(rows))
        return out

    def document_chunk_ids(self, doc_id: int) -> list[int]:
        with self.reading() as conn:
            return [r[0] for r in conn.exec_driver_sql("SELECT id FROM chunks WHERE document_id = ? ORDER BY ordinal",
                                                       (doc_id,))]

    def document_text(self, doc_id: int) -> str | None:
        with self.reading() as conn:
            return conn.exec_driver_sql("SELECT text FROM documents WHERE id = ?", (doc_id,)).scalar()

    def mentions_of(self, doc_ids: Sequence[int]) -> dict[int, list[tuple[str, str, str, int, int, str]]]:
        """Document id -> its mentions as (label, norm id, norm name, start, end, negation), by start."""
        out: dict[int, list] = {d: [] for d in doc_ids}
        with self.reading() as conn:
            for start in range(0, len(doc_ids), 900):
                part = [int(i) for i in doc_ids[start:start + 900]]
                marks = ", ".join("?" * len(part))
                rows = conn.exec_driver_sql(
                    f'SELECT document_id, label, norm_id, norm_name, start, "end", negation FROM mentions '
                    f"WHERE document_id IN ({marks}) ORDER BY document_id, start", tuple(part)).fetchall()
                for r in rows:
                    out[r[0]].append(tuple(r[1:]))
        return out

    def term_highlights(self, match: str, chunk_ids: Sequence[int]) -> dict[int, list[tuple[int, int]]]:
        """Chunk id -> character spans (in the chunk text) of the tokens FTS5 matched for `match`."""
        out: dict[int, list[tuple[int, int]]] = {}
        part = [int(i) for i in chunk_ids][:900]
        if not part:
            return out
        marks = ", ".join(f":c{j}" for j in range(len(part)))
        stmt = text(f"SELECT rowid, highlight(chunks_fts, 0, char(1), char(2)) FROM chunks_fts "
                    f"WHERE chunks_fts MATCH :q AND rowid IN ({marks})")
        with self.reading() as conn:
            for rowid, marked in conn.execute(stmt, {"q": match, **{f"c{j}": v for j, v in enumerate(part)}}):
                out[rowid] = _marker_spans(marked)
        return out


def _marker_spans(marked: str) -> list[tuple[int, int]]:
    """Spans between \\x01 and \\x02 markers, as offsets into the text without them."""
    spans, plain, start = [], 0, None
    for ch in marked:
        if ch == "\x01":
            start = plain
        elif ch == "\x02":
            if start is not None:
                spans.append((start, plain))
            start = None
        else:
            plain += 1
    return spans
