"""The write half of DocumentStore: upserts with chunks and gold mentions, model mentions, deletes.

Each public method is one transaction, so a batch that fails half-way writes nothing.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from indexer.documents import META_COLUMNS, Chunk, Document, Mention, chunk_of
from indexer.store.database import Database
from indexer.store.schema import ChunkRow, DocumentRow, MentionRow, TaggingRow


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
    """What one import or change did: documents added, updated, unchanged and deleted; chunks; mentions by label."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0
    mentions: Counter = field(default_factory=Counter)


Chunker = Callable[[Document], list[Chunk]]


def _no_nul(text: str) -> str:
    """PostgreSQL text cannot hold NUL: it becomes U+FFFD, one character for one, so every offset still holds."""
    return text.replace("\x00", "\ufffd")


class StoreWrites(Database):
    """Writes: documents with their chunks and gold mentions, model mentions, and deletes."""

    def upsert_documents(self, collection: str, docs: Sequence[Document], chunker: Chunker) -> ImportStats:
        """Add or update documents (by external id) with their chunks and gold mentions, in one transaction."""
        stats = ImportStats()
        with self.session() as s:
            cid = self.collection_id(s, collection)
            self._lock_external_ids(s, cid, [d.id for d in docs])
            for doc in docs:
                self._upsert_one(s, cid, doc, chunker, stats)
        return stats

    def _lock_external_ids(self, s: Session, cid: int, external_ids: Iterable[str]) -> None:
        """On PostgreSQL, hold a transaction lock per (collection, external id) before reading or writing them.

        Two processes importing one id at once would otherwise both find it missing and both insert: the unique
        key then fails one of them, or deadlocks them when their batches meet in opposite orders. Locked first,
        in one sorted order (no deadlock), the second waits for the first to commit, then sees its row and updates
        it (other text: the later import wins) or leaves it (the same text). SQLite has one writer at a time.
        """
        if not self.postgres:
            return
        # advisory keys (collection id, crc32 of the id as int4): the two-int key space, apart from the schema lock's
        keys = sorted({zlib.crc32(i.encode("utf-8")) - 2**31 for i in external_ids})
        if keys:  # unnest keeps the array's order, and locks are taken row by row in it
            s.execute(text("SELECT count(pg_advisory_xact_lock(:cid, k)) FROM unnest(CAST(:keys AS integer[])) AS k"),
                      {"cid": cid, "keys": keys})

    def _upsert_one(self, s: Session, cid: int, doc: Document, chunker: Chunker, stats: ImportStats,
                    moved: tuple[list[int], list[int]] | None = None) -> None:
        """Write one document; `moved` collects the ids of the chunks it adds and of those it removes."""
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
            if moved is not None:
                moved[1].extend(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id == row.id)))
            s.execute(delete(MentionRow).where(MentionRow.document_id == row.id))
            s.execute(delete(ChunkRow).where(ChunkRow.document_id == row.id))
            s.execute(delete(TaggingRow).where(TaggingRow.document_id == row.id))  # new text: tag it again
            stats.updated += 1
        title, body = (_no_nul(doc.title), _no_nul(doc.text)) if self.postgres else (doc.title, doc.text)
        row.title, row.text, row.meta, row.content_hash = title, body, meta, digest
        row.source, row.doc_type, row.court, row.date = cols["source"], cols["doc_type"], cols["court"], cols["date"]
        row.year = year_of(row.date)
        s.flush()
        chunks = chunker(doc)
        chunk_rows = [ChunkRow(document_id=row.id, ordinal=c.ordinal, start=c.start, end=c.end,
                               text=_no_nul(c.text) if self.postgres else c.text) for c in chunks]
        s.add_all(chunk_rows)
        s.flush()
        stats.chunks += len(chunk_rows)
        if moved is not None:
            moved[0].extend(r.id for r in chunk_rows)
        self._add_mentions(s, row.id, chunks, [r.id for r in chunk_rows], doc.mentions, "gold")
        stats.mentions.update(m.label for m in doc.mentions)

    def _add_mentions(self, s: Session, doc_id: int, chunks: Sequence[Chunk], chunk_ids: Sequence[int],
                      mentions: Iterable[Mention], origin: str) -> None:
        rows = []
        for m in mentions:
            ordinal = chunk_of(chunks, m.start, m.end)
            nid, name = norm_value(m)
            rows.append(dict(document_id=doc_id, chunk_id=chunk_ids[ordinal] if ordinal is not None else None,
                             label=m.label, source_label=m.source_label,
                             text=_no_nul(m.text) if self.postgres else m.text, start=m.start, end=m.end,
                             norm_id=nid, norm_name=name, negation=m.negation, origin=origin))
        if rows:
            s.execute(MentionRow.__table__.insert(), rows)

    def apply_changes(self, collection: str, upserts: Sequence[Document], deletes: Sequence[str], chunker: Chunker,
                      before_commit: Callable[[list[tuple[int, str, str]], list[int]], None] | None = None
                      ) -> ImportStats:
        """Upsert and delete documents in one transaction; `before_commit(added, removed)` runs inside it.

        `added` holds (chunk id, document title, chunk text) of new chunks and `removed` the ids of
        chunks that went away. If the hook raises, nothing is written. Keep the hook short: the
        transaction holds SQLite's write lock (the pipeline encodes before calling this).
        """
        stats = ImportStats()
        # this transaction's own chunk ids, not a diff of the table: on PostgreSQL other writers commit meanwhile
        moved: tuple[list[int], list[int]] = ([], [])
        with self.session() as s:
            cid = self.collection_id(s, collection, create=bool(upserts))
            self._lock_external_ids(s, cid, [d.id for d in upserts] + list(deletes))
            for doc in upserts:
                self._upsert_one(s, cid, doc, chunker, stats, moved)
            if deletes:
                doc_ids = self._document_ids(s, cid, deletes)
                moved[1].extend(s.scalars(select(ChunkRow.id).where(ChunkRow.document_id.in_(doc_ids))))
                self._delete(s, doc_ids)
                stats.deleted = len(doc_ids)
            if before_commit is None:
                return stats
            s.flush()
            added = set(moved[0])
            rows = s.execute(select(ChunkRow.id, DocumentRow.title, ChunkRow.text)
                             .join(DocumentRow, ChunkRow.document_id == DocumentRow.id)
                             .where(ChunkRow.id >= min(added)).order_by(ChunkRow.id)).all() if added else []
            before_commit([tuple(r) for r in rows if r[0] in added], sorted(set(moved[1])))
        return stats

    def replace_model_mentions(self, mentions_by_doc: dict[int, list[Mention]], tagger: str | None = None) -> Counter:
        """Swap the model mentions of the given documents (by store id) in one transaction.

        With `tagger` (its checksum), the documents are also recorded as tagged by it, in the same
        transaction, so a build that stops between batches resumes at the first untagged one.
        """
        counts: Counter = Counter()
        with self.session() as s:
            if tagger is not None and mentions_by_doc:
                s.execute(delete(TaggingRow).where(TaggingRow.document_id.in_(list(mentions_by_doc))))
                s.execute(TaggingRow.__table__.insert(), [{"document_id": d, "tagger": tagger} for d in mentions_by_doc])
            for doc_id, mentions in mentions_by_doc.items():
                s.execute(delete(MentionRow).where(MentionRow.document_id == doc_id, MentionRow.origin == "model"))
                chunk_rows = s.scalars(select(ChunkRow).where(ChunkRow.document_id == doc_id)
                                       .order_by(ChunkRow.ordinal)).all()
                chunks = [Chunk(c.ordinal, c.start, c.end, c.text) for c in chunk_rows]
                self._add_mentions(s, doc_id, chunks, [c.id for c in chunk_rows], mentions, "model")
                counts.update(m.label for m in mentions)
        return counts

    @staticmethod
    def _document_ids(s: Session, cid: int, external_ids: Iterable[str]) -> list[int]:
        return list(s.scalars(select(DocumentRow.id).where(DocumentRow.collection_id == cid,
                                                           DocumentRow.external_id.in_(list(external_ids)))))

    @staticmethod
    def _delete(s: Session, doc_ids: Sequence[int]) -> None:
        """Delete documents with their mentions and chunks (FTS5 follows through its trigger)."""
        s.execute(delete(MentionRow).where(MentionRow.document_id.in_(doc_ids)))
        s.execute(delete(TaggingRow).where(TaggingRow.document_id.in_(doc_ids)))
        s.execute(delete(ChunkRow).where(ChunkRow.document_id.in_(doc_ids)))
        s.execute(delete(DocumentRow).where(DocumentRow.id.in_(doc_ids)))
