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

from sqlalchemy import (JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        create_engine, delete, event, func, select, text)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from indexer.documents import META_COLUMNS, Chunk, Document, Mention, chunk_of
from indexer.errors import StoreError
from indexer.store_search import METADATA_FILTERS, DocFilter, DocInfo, SearchQueries, StoreTimeout  # noqa: F401 (re-exported)


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


Chunker = Callable[[Document], list[Chunk]]


class DocumentStore(SearchQueries):
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

