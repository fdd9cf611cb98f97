"""The store layout: SQLAlchemy 2.0 tables for collections, documents, chunks and mentions, and the keyword index.

The tables are the same on SQLite and PostgreSQL. The keyword index is FTS5 on SQLite (below)
and, on PostgreSQL, a tsvector column of chunks with a GIN index (PG_DDL).

Chunk ids are int64 AUTOINCREMENT keys that are never reused, so they double as FAISS ids: a
deleted chunk's id can never come back meaning something else. The FTS5 table `chunks_fts` is
an external-content index over each chunk's text and its document's title, kept in step by
triggers, so BM25 keyword search always sees exactly the stored chunks. Only modules of this package use these names.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (JSON, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        create_engine, event)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


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


class TaggingRow(Base):
    """Which tagger last tagged a document, so that an interrupted build resumes where it stopped."""

    __tablename__ = "taggings"
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    tagger: Mapped[str] = mapped_column(String(200))  # the tagger's checksum


FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"  # chunks_fts's tokenizer (impacts.py tokenizes queries with it too)
FTS_COLUMNS = ("title", "text")  # chunks_fts columns, in order: bm25() takes one weight per column
# The FTS5 table indexes each chunk with its document's title as a column of its own, so keyword
# search matches title words and BM25 weighs them apart (search.bm25_title_weight). Its external
# content is a view joining the two, and the triggers read the title while the document row still
# exists: chunks are deleted before their document (writes.py, and documents_bd for any other
# delete), and a changed title re-indexes the document's chunks (documents_au).
FTS_DDL = [
    # filters may name an entity by its readable name (case-insensitive)
    "CREATE INDEX IF NOT EXISTS ix_mentions_name ON mentions(label, lower(norm_name))",
    "CREATE VIEW IF NOT EXISTS chunks_fts_content AS SELECT c.id AS id, d.title AS title, c.text AS text "
    "FROM chunks c JOIN documents d ON d.id = c.document_id",
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(title, text, content='chunks_fts_content', "
    "content_rowid='id', tokenize='" + FTS_TOKENIZE + "')",
    "CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN "
    "INSERT INTO chunks_fts(rowid, title, text) VALUES (new.id, "
    "(SELECT title FROM documents WHERE id = new.document_id), new.text); END",
    "CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, title, text) VALUES ('delete', old.id, "
    "(SELECT title FROM documents WHERE id = old.document_id), old.text); END",
    "CREATE TRIGGER IF NOT EXISTS chunks_au AFTER UPDATE ON chunks BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, title, text) VALUES ('delete', old.id, "
    "(SELECT title FROM documents WHERE id = old.document_id), old.text); "
    "INSERT INTO chunks_fts(rowid, title, text) VALUES (new.id, "
    "(SELECT title FROM documents WHERE id = new.document_id), new.text); END",
    "CREATE TRIGGER IF NOT EXISTS documents_bd BEFORE DELETE ON documents BEGIN "
    "DELETE FROM chunks WHERE document_id = old.id; END",
    "CREATE TRIGGER IF NOT EXISTS documents_au AFTER UPDATE OF title ON documents "
    "WHEN old.title IS NOT new.title BEGIN "
    "INSERT INTO chunks_fts(chunks_fts, rowid, title, text) SELECT 'delete', id, old.title, text "
    "FROM chunks WHERE document_id = old.id; "
    "INSERT INTO chunks_fts(rowid, title, text) SELECT id, new.title, text FROM chunks "
    "WHERE document_id = new.id; END",
]
# What a store made before the title column has: dropped and rebuilt from the stored chunks on open
OLD_FTS = ["DROP TRIGGER IF EXISTS chunks_ai", "DROP TRIGGER IF EXISTS chunks_ad", "DROP TRIGGER IF EXISTS chunks_au",
           "DROP TABLE IF EXISTS chunks_fts"]
FTS_REBUILD = "INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')"
FTS_LAYOUT = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'chunks_fts'"


# PostgreSQL: chunks.tsv holds the chunk's title words (weight A) and text words (weight B), filled by
# a trigger that reads the document's title, as FTS5's triggers do; a changed title re-indexes the
# document's chunks. The `medlex` text search configuration is PostgreSQL's English one with the
# Snowball stemmer and no stop list: searchd/keyword.py drops stop words (search.stop_words), as
# it does for FTS5, and a quoted phrase keeps them. Accents are not folded (FTS5 folds them).
PG_CONFIG = "medlex"
PG_DDL = [
    "CREATE INDEX IF NOT EXISTS ix_mentions_name ON mentions(label, lower(norm_name))",
    "DO $$ BEGIN "
    "IF NOT EXISTS (SELECT 1 FROM pg_ts_dict WHERE dictname = 'medlex_stem') THEN "
    "CREATE TEXT SEARCH DICTIONARY medlex_stem (TEMPLATE = snowball, Language = english); END IF; "
    "IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'medlex') THEN "
    "CREATE TEXT SEARCH CONFIGURATION medlex (COPY = english); "
    "ALTER TEXT SEARCH CONFIGURATION medlex ALTER MAPPING REPLACE english_stem WITH medlex_stem; END IF; END $$",
    "ALTER TABLE chunks ADD COLUMN IF NOT EXISTS tsv tsvector",
    "CREATE INDEX IF NOT EXISTS ix_chunks_tsv ON chunks USING GIN (tsv)",
    "CREATE OR REPLACE FUNCTION chunks_tsv() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "NEW.tsv := setweight(to_tsvector('medlex', coalesce((SELECT title FROM documents WHERE id = NEW.document_id), "
    "'')), 'A') || setweight(to_tsvector('medlex', NEW.text), 'B'); RETURN NEW; END $$",
    "CREATE OR REPLACE TRIGGER chunks_tsv BEFORE INSERT OR UPDATE OF text, document_id ON chunks "
    "FOR EACH ROW EXECUTE FUNCTION chunks_tsv()",
    "CREATE OR REPLACE FUNCTION documents_title_tsv() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "UPDATE chunks SET text = text WHERE document_id = NEW.id; RETURN NULL; END $$",
    "CREATE OR REPLACE TRIGGER documents_title_tsv AFTER UPDATE OF title ON documents FOR EACH ROW "
    "WHEN (OLD.title IS DISTINCT FROM NEW.title) EXECUTE FUNCTION documents_title_tsv()",
]
# the last object PG_DDL makes: once it exists, the store's schema is complete
PG_READY = ("SELECT 1 FROM pg_trigger WHERE tgname = 'documents_title_tsv' "
            "AND tgrelid = to_regclass('documents')")
PG_SCHEMA_LOCK = 7_220_150  # pg_advisory_xact_lock key: processes opening a new store create its schema one at a time


def is_url(location: str | Path) -> bool:
    """True for a database URL (store.url), False for a path to an SQLite file."""
    return isinstance(location, str) and "://" in location


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(location: str | Path) -> Engine:
    """SQLite engine with WAL and foreign keys on every connection, or a PostgreSQL one (psycopg 3) for a URL."""
    if is_url(location):
        return _postgres_engine(str(location))
    engine = create_engine(f"sqlite:///{location}", future=True)
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _postgres_engine(url: str) -> Engine:
    from sqlalchemy.engine import make_url

    from indexer.errors import ConfigError

    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy's ArgumentError names no key
        raise ConfigError(f"store.url {url!r} is not a database URL; expected postgresql+psycopg://user@host/dbname") \
            from None
    if parsed.drivername != "postgresql+psycopg":
        raise ConfigError(f"store.url {parsed.render_as_string()!r} uses driver {parsed.drivername!r}; "
                          "valid: postgresql+psycopg (psycopg 3), or an empty store.url for the index's SQLite file")
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        raise ConfigError("store.url names PostgreSQL but psycopg is not installed; pip install -e '.[postgres]'")
    # pool_pre_ping: a connection the server dropped (restart, idle timeout) is replaced, not handed out
    return create_engine(parsed, future=True, pool_pre_ping=True)
