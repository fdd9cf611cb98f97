"""The SQLite store: collections, documents, chunks, entity mentions, and an FTS5 index.

SQLAlchemy 2.0 typed models. Chunk ids are int64 AUTOINCREMENT keys that are never reused,
so they double as FAISS ids: a deleted chunk's id can never come back meaning something else.
The FTS5 table `chunks_fts` is an external-content index over chunks.text kept in step by
triggers, so BM25 keyword search always sees exactly the stored chunks.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from sqlalchemy import (JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        create_engine, delete, event, func, select, text)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from indexer.documents import META_COLUMNS, Chunk, Document, Mention, chunk_of
from indexer.errors import StoreError


class Base(DeclarativeBase):
    pass


class CollectionRow(Base):
    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=lambda: datetime.now(timezone.utc))


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection_id", "external_id"),
                      Index("ix_documents_year", "year"), Index("ix_documents_doc_type", "doc_type"),
                      Index("ix_documents_court", "court"), Index("ix_documents_source", "source"),
                      {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(500))
    title: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(200))
    doc_type: Mapped[str | None] = mapped_column(String(200))
    court: Mapped[str | None] = mapped_column(String(200))
    date: Mapped[str | None] = mapped_column(String(40))  # ISO 8601 (YYYY, YYYY-MM or YYYY-MM-DD)
    year: Mapped[int | None] = mapped_column(Integer)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    collection: Mapped[CollectionRow] = relationship()
    chunks: Mapped[list["ChunkRow"]] = relationship(back_populates="document", cascade="all, delete-orphan",
                                                    passive_deletes=True, order_by="ChunkRow.ordinal")


class ChunkRow(Base):
    __tablename__ = "chunks"
    __table_args__ = (Index("ix_chunks_document", "document_id", "ordinal"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    document: Mapped[DocumentRow] = relationship(back_populates="chunks")


class MentionRow(Base):
    __tablename__ = "mentions"
    __table_args__ = (Index("ix_mentions_facet", "label", "norm_id", "negation", "document_id"),
                      Index("ix_mentions_document", "document_id", "origin"),
                      Index("ix_mentions_chunk", "chunk_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    chunk_id: Mapped[int | None] = mapped_column(ForeignKey("chunks.id", ondelete="SET NULL"))
    label: Mapped[str] = mapped_column(String(100))
    source_label: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    norm_id: Mapped[str] = mapped_column(String(200))  # facet value; normalised surface form when no id
    norm_name: Mapped[str] = mapped_column(Text)  # readable facet value
    negation: Mapped[str] = mapped_column(String(20), default="affirmed")
    origin: Mapped[str] = mapped_column(String(10))  # gold | model


_FTS_DDL = [
    # filters may name an entity by its readable name (case-insensitive)
    "CREATE INDEX IF NOT EXISTS ix_mentions_name ON mentions(label, lower(norm_name))",
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(text, content='chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END",
]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(path: Path) -> Engine:
    """SQLite engine with WAL and foreign keys on every connection."""
    engine = create_engine(f"sqlite:///{path}", future=True)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def content_hash(doc: Document) -> str:
    """Hash of everything stored for a document, to skip unchanged re-imports."""
    payload = json.dumps([doc.title, doc.text, doc.meta, [m.__dict__ for m in doc.mentions]],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def year_of(date: str | None) -> int | None:
    """The year of an ISO-like date string, or None."""
    if date and len(date) >= 4 and date[:4].isdigit():
        return int(date[:4])
    return None


def norm_value(m: Mention) -> tuple[str, str]:
    """(facet id, display name) of a mention: its normalised id, else its lower-cased surface form."""
    surface = " ".join(m.text.split())
    if m.norm_id and m.norm_id not in ("-1", "-"):
        return m.norm_id, m.norm_name or surface
    return f"text:{surface.lower()}", m.norm_name or surface.lower()


@dataclass
class ImportStats:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0
    mentions: Counter = field(default_factory=Counter)


# ---- search-side queries (filters, facets, views) -------------------------------------------
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
    """Read queries behind search: allowed ids, BM25, facet counts, document views (mixed into FacetStore)."""

    engine: Engine

    @contextmanager
    def reading(self, deadline: float | None = None) -> Iterator[Any]:
        """A connection whose statements are interrupted once time.monotonic() passes `deadline`."""
        import sqlite3
        import time

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

    def labels(self) -> list[str]:
        """Entity labels present in the store."""
        return [r[0] for r in self.raw("SELECT DISTINCT label FROM mentions ORDER BY label")]

    def allowed_chunks(self, flt: DocFilter, deadline: float | None = None) -> tuple[np.ndarray, int]:
        """Chunk ids of the documents passing a filter, and the number of such documents."""
        sql, params = flt.sql()
        with self.reading(deadline) as conn:
            ids = conn.exec_driver_sql(f"SELECT id FROM chunks WHERE document_id IN ({_named(sql)})",
                                       _positional(sql, params)).fetchall()
            ndocs = conn.exec_driver_sql(f"SELECT count(*) FROM ({_named(sql)})", _positional(sql, params)).scalar()
        return np.fromiter((r[0] for r in ids), dtype=np.int64, count=len(ids)), int(ndocs)

    def keyword(self, match: str, flt: DocFilter, limit: int,
                deadline: float | None = None) -> list[tuple[int, int, float]]:
        """(chunk id, document id, BM25 score, higher is better) of the best-matching chunks."""
        sql, params = flt.sql()
        cond = "" if flt.is_empty() else f" AND c.document_id IN ({sql})"
        stmt = text("SELECT f.rowid, c.document_id, -bm25(chunks_fts) FROM chunks_fts f JOIN chunks c "
                    f"ON c.id = f.rowid WHERE chunks_fts MATCH :q{cond} ORDER BY bm25(chunks_fts) LIMIT :lim")
        with self.reading(deadline) as conn:
            return [tuple(r) for r in conn.execute(stmt, {**params, "q": match, "lim": limit})]

    def docset_sql(self, flt: DocFilter, match: str | None) -> tuple[str, dict[str, Any]]:
        """SQL of the whole result set: documents passing the filter (and the keyword match)."""
        sql, params = flt.sql()
        if match is None:
            return sql, params
        cond = "" if flt.is_empty() else f" AND c.document_id IN ({sql})"
        return ("SELECT DISTINCT c.document_id FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
                f"WHERE chunks_fts MATCH :q{cond}"), {**params, "q": match}

    def count_docs(self, docset: tuple[str, dict[str, Any]], deadline: float | None = None) -> int:
        """Number of documents in a result set."""
        with self.reading(deadline) as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM ({docset[0]})"), docset[1]).scalar())

    def facet_counts(self, name: str, docset: tuple[str, dict[str, Any]] | None, limit: int,
                     deadline: float | None = None) -> tuple[list[tuple[str, str, int]], bool]:
        """Top (value id, display name, documents) of one facet over a result set, and whether more exist."""
        sql, params = docset if docset is not None else ("", {})
        inside = f" AND {{col}} IN ({sql})" if sql else ""
        if name in METADATA_FILTERS or name == "year":
            if name == "collection":
                stmt = ("SELECT c.name, c.name, count(*) AS n FROM documents d JOIN collections c "
                        "ON c.id = d.collection_id WHERE 1" + inside.format(col="d.id") + " GROUP BY c.name")
            else:
                stmt = (f"SELECT CAST({name} AS TEXT), CAST({name} AS TEXT), count(*) AS n FROM documents "
                        f"WHERE {name} IS NOT NULL" + inside.format(col="id") + f" GROUP BY {name}")
        else:
            params = {**params, "facet_label": name}
            stmt = ("SELECT norm_id, max(norm_name), count(DISTINCT document_id) AS n FROM mentions "
                    "WHERE label = :facet_label AND negation = 'affirmed'" + inside.format(col="document_id")
                    + " GROUP BY norm_id")
        stmt += " ORDER BY n DESC, 1 LIMIT :facet_limit"
        with self.reading(deadline) as conn:
            rows = [tuple(r) for r in conn.execute(text(stmt), {**params, "facet_limit": limit + 1})]
        return rows[:limit], len(rows) > limit

    def doc_infos(self, doc_ids: Sequence[int]) -> dict[int, DocInfo]:
        """Document id -> external id, collection, title and metadata columns."""
        out: dict[int, DocInfo] = {}
        with self.session() as s:
            for start in range(0, len(doc_ids), 900):
                q = (select(DocumentRow, CollectionRow.name).join(CollectionRow)
                     .where(DocumentRow.id.in_(doc_ids[start:start + 900])))
                for d, coll in s.execute(q):
                    meta = {**(d.meta or {}), "source": d.source, "doc_type": d.doc_type, "court": d.court,
                            "date": d.date, "year": d.year}
                    out[d.id] = DocInfo(d.id, d.external_id, coll, d.title, meta)
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


def _named(sql: str) -> str:
    """Named parameters (:x) to qmark style for exec_driver_sql."""
    import re

    return re.sub(r":([A-Za-z_][A-Za-z0-9_]*)", "?", sql)


def _positional(sql: str, params: dict[str, Any]) -> tuple:
    import re

    return tuple(params[m] for m in re.findall(r":([A-Za-z_][A-Za-z0-9_]*)", sql))


Chunker = Callable[[Document], list[Chunk]]


class FacetStore(SearchQueries):
    """Documents, chunks and mentions in SQLite; the facet and filter queries over them."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"no store at {str(self.path)!r}; run `indexer import` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(self.path)
        Base.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            for ddl in _FTS_DDL:
                conn.exec_driver_sql(ddl)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self.sessions.begin() as s:
            yield s

    # ---- writing -------------------------------------------------------------------------
    def collection_id(self, s: Session, name: str, create: bool = True) -> int:
        """Id of a collection, created on first use."""
        row = s.scalar(select(CollectionRow).where(CollectionRow.name == name))
        if row is None:
            if not create:
                raise StoreError(f"unknown collection {name!r}; known: {', '.join(self.collections()) or 'none'}")
            row = CollectionRow(name=name)
            s.add(row)
            s.flush()
        return row.id

    def upsert_documents(self, collection: str, docs: Sequence[Document], chunker: Chunker) -> ImportStats:
        """Add or update documents (by external id) with their chunks and gold mentions, in one transaction."""
        stats = ImportStats()
        with self.session() as s:
            cid = self.collection_id(s, collection)
            for doc in docs:
                self._upsert_one(s, cid, doc, chunker, stats)
        return stats

    def _upsert_one(self, s: Session, cid: int, doc: Document, chunker: Chunker, stats: ImportStats) -> None:
        digest = content_hash(doc)
        row = s.scalar(select(DocumentRow).where(DocumentRow.collection_id == cid, DocumentRow.external_id == doc.id))
        if row is not None and row.content_hash == digest:
            stats.unchanged += 1
            return
        meta = {k: v for k, v in doc.meta.items() if k not in META_COLUMNS}
        cols = {k: (str(doc.meta[k]) if doc.meta.get(k) is not None else None) for k in META_COLUMNS}
        if row is None:
            row = DocumentRow(collection_id=cid, external_id=doc.id)
            s.add(row)
            stats.added += 1
        else:
            s.execute(delete(MentionRow).where(MentionRow.document_id == row.id))
            s.execute(delete(ChunkRow).where(ChunkRow.document_id == row.id))
            stats.updated += 1
        row.title, row.text, row.meta, row.content_hash = doc.title, doc.text, meta, digest
        row.source, row.doc_type, row.court, row.date = cols["source"], cols["doc_type"], cols["court"], cols["date"]
        row.year = year_of(row.date)
        s.flush()
        chunks = chunker(doc)
        chunk_rows = [ChunkRow(document_id=row.id, ordinal=c.ordinal, start=c.start, end=c.end, text=c.text)
                      for c in chunks]
        s.add_all(chunk_rows)
        s.flush()
        stats.chunks += len(chunk_rows)
        self._add_mentions(s, row.id, chunks, [r.id for r in chunk_rows], doc.mentions, "gold")
        stats.mentions.update(m.label for m in doc.mentions)

    def _add_mentions(self, s: Session, doc_id: int, chunks: Sequence[Chunk], chunk_ids: Sequence[int],
                      mentions: Iterable[Mention], origin: str) -> None:
        rows = []
        for m in mentions:
            ordinal = chunk_of(chunks, m.start, m.end)
            nid, name = norm_value(m)
            rows.append(dict(document_id=doc_id, chunk_id=chunk_ids[ordinal] if ordinal is not None else None,
                             label=m.label, source_label=m.source_label, text=m.text, start=m.start, end=m.end,
                             norm_id=nid, norm_name=name, negation=m.negation, origin=origin))
        if rows:
            s.execute(MentionRow.__table__.insert(), rows)

    def apply_changes(self, collection: str, upserts: Sequence[Document], deletes: Sequence[str], chunker: Chunker,
                      before_commit: Callable[[list[tuple[int, str, str]], list[int]], None]) -> ImportStats:
        """Upsert and delete documents in one transaction; `before_commit(added, removed)` runs inside it.

        `added` holds (chunk id, document title, chunk text) of new chunks and `removed` the ids of
        chunks that went away. If the hook raises, nothing is written, so the vector index and the
        store stay in step.
        """
        stats = ImportStats()
        with self.session() as s:
            before = set(s.scalars(select(ChunkRow.id)))
            cid = self.collection_id(s, collection, create=bool(upserts))
            for doc in upserts:
                self._upsert_one(s, cid, doc, chunker, stats)
            if deletes:
                doc_ids = list(s.scalars(select(DocumentRow.id).where(DocumentRow.collection_id == cid,
                                                                      DocumentRow.external_id.in_(list(deletes)))))
                s.execute(delete(MentionRow).where(MentionRow.document_id.in_(doc_ids)))
                s.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(doc_ids)))
                s.execute(delete(DocumentRow).where(DocumentRow.id.in_(doc_ids)))
                stats.deleted = len(doc_ids)
            s.flush()
            after = set(s.scalars(select(ChunkRow.id)))
            new = sorted(after - before)
            rows = s.execute(select(ChunkRow.id, DocumentRow.title, ChunkRow.text)
                             .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                             .where(ChunkRow.id >= new[0])).all() if new else []  # AUTOINCREMENT: new ids are the largest
            before_commit([tuple(r) for r in rows], sorted(before - after))
        return stats

    def replace_model_mentions(self, mentions_by_doc: dict[int, list[Mention]]) -> Counter:
        """Swap the model mentions of the given documents (by store id) in one transaction."""
        counts: Counter = Counter()
        with self.session() as s:
            for doc_id, mentions in mentions_by_doc.items():
                s.execute(delete(MentionRow).where(MentionRow.document_id == doc_id, MentionRow.origin == "model"))
                chunk_rows = s.scalars(select(ChunkRow).where(ChunkRow.document_id == doc_id)
                                       .order_by(ChunkRow.ordinal)).all()
                chunks = [Chunk(c.ordinal, c.start, c.end, c.text) for c in chunk_rows]
                self._add_mentions(s, doc_id, chunks, [c.id for c in chunk_rows], mentions, "model")
                counts.update(m.label for m in mentions)
        return counts

    def delete_documents(self, collection: str, external_ids: Iterable[str]) -> list[int]:
        """Delete documents by external id; returns the chunk ids that went with them."""
        with self.session() as s:
            cid = self.collection_id(s, collection, create=False)
            ids = list(external_ids)
            doc_ids = s.scalars(select(DocumentRow.id).where(DocumentRow.collection_id == cid,
                                                             DocumentRow.external_id.in_(ids))).all()
            chunk_ids = s.scalars(select(ChunkRow.id).where(ChunkRow.document_id.in_(doc_ids))).all()
            s.execute(delete(MentionRow).where(MentionRow.document_id.in_(doc_ids)))
            s.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(doc_ids)))
            s.execute(delete(DocumentRow).where(DocumentRow.id.in_(doc_ids)))
        return list(chunk_ids)

    # ---- reading -------------------------------------------------------------------------
    def collections(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(CollectionRow.name).order_by(CollectionRow.name)))

    def counts(self) -> dict[str, int]:
        """Numbers of collections, documents, chunks and mentions."""
        with self.session() as s:
            return {"collections": s.scalar(select(func.count()).select_from(CollectionRow)),
                    "documents": s.scalar(select(func.count()).select_from(DocumentRow)),
                    "chunks": s.scalar(select(func.count()).select_from(ChunkRow)),
                    "mentions": s.scalar(select(func.count()).select_from(MentionRow))}

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

    def chunk_ids(self) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(ChunkRow.id).order_by(ChunkRow.id)))

    def chunk_texts(self, ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """chunk id -> (document title, chunk text)."""
        out: dict[int, tuple[str, str]] = {}
        with self.session() as s:
            for start in range(0, len(ids), 900):  # SQLite caps bound parameters
                part = ids[start:start + 900]
                q = (select(ChunkRow.id, DocumentRow.title, ChunkRow.text)
                     .join(DocumentRow, ChunkRow.document_id == DocumentRow.id).where(ChunkRow.id.in_(part)))
                out.update({i: (t, x) for i, t, x in s.execute(q)})
        return out

    def raw(self, sql: str, **params: Any) -> list[tuple]:
        """Run a read-only SQL statement (for checks and tests)."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]

