"""The store of an index (store.sqlite, or PostgreSQL with store.url): the only code that runs SQL.

    schema.py    tables (SQLAlchemy 2.0), FTS5 and PostgreSQL full-text DDL, the engine
    tsquery.py   keyword expressions (FTS5 syntax) -> PostgreSQL tsquery SQL
    database.py  Database: engine, transactions, read deadlines, batched id reads, close()
    writes.py    StoreWrites: upserts with chunks and gold mentions, model mentions, deletes
    reads.py     StoreReads: counts, document views, BM25, highlights, snapshot and lexicon reads
    impacts.py   StoreImpacts: per-term impact lists (the best chunks of each common term) for exact BM25 top k
    filters.py   DocFilter, which documents a search may return (as data)
    snapshot.py  StoreSnapshot, the in-memory read model; its `mask` is the one filter implementation

DocumentStore is one class whose two halves live in writes.py and reads.py: callers across
indexer, searchd and web use one flat object, and splitting by concern keeps each module small
without a layer of forwarding methods.
"""
from __future__ import annotations

from indexer.store.database import MAX_IDS, MissingStore, StoreTimeout
from indexer.store.filters import METADATA_FILTERS, DocFilter
from indexer.store.impacts import ImpactLists, StoreImpacts
from indexer.store.reads import DocInfo, StoreReads
from indexer.store.schema import make_engine
from indexer.store.snapshot import StoreSnapshot
from indexer.store.writes import Chunker, ImportStats, StoreWrites, content_hash, norm_value, year_of


class DocumentStore(StoreReads, StoreWrites, StoreImpacts):
    """Documents, chunks and mentions in SQLite or PostgreSQL; `with DocumentStore(location) as store:` closes it after."""


__all__ = ["MAX_IDS", "METADATA_FILTERS", "Chunker", "DocFilter", "DocInfo", "DocumentStore", "ImpactLists", "ImportStats", "MissingStore",
           "StoreSnapshot", "StoreTimeout", "content_hash", "make_engine", "norm_value", "year_of"]
