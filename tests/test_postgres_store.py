"""Several processes writing and reading one PostgreSQL store at once (`pytest --store-backend postgres`).

SQLite keeps one writer (indexer/writer_lock.py); PostgreSQL takes writes from many. Here real
processes (multiprocessing, spawned) open a new store at the same moment (its schema is made
once, under an advisory lock), import collections of their own in many small transactions and
write model mentions, while another process searches and reads snapshots; two processes import
the same ids at once; then a build runs while one more process imports, and a second build catches up. Every count is checked at the end.
"""
from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from indexer.documents import Document, Mention, chunk_text

pytestmark = pytest.mark.postgres_only("several processes writing one store at once is what PostgreSQL adds")
WRITERS, DOCS, BATCH = 3, 40, 4


def chunker(doc):
    return chunk_text(doc.text, max_tokens=16, overlap_tokens=4)


def documents(collection: str, n: int) -> list[Document]:
    """n documents whose chunks are alike in number and in which of them match "warfarin" (PER_DOC, WARFARIN)."""
    return [Document(f"{collection}-{i}", f"Report {i:03d}",
                     f"The veteran number {i:03d} was prescribed warfarin and reports bleeding after surgery. "
                     f"A second sentence about the appeal makes more chunks of document {i:03d} for the index.",
                     {"source": collection, "date": f"{2000 + i % 10}-06-01"}) for i in range(n)]


PER_DOC = len(chunker(documents("x", 1)[0]))
WARFARIN = sum("warfarin" in c.text for c in chunker(documents("x", 1)[0]))


def _writer(url: str, collection: str, barrier, results) -> None:
    """Import `collection` in small batches, then write a model mention per document (as a tagger would)."""
    from indexer.store import DocumentStore

    barrier.wait()  # every writer opens the new store at once
    store = DocumentStore(url)
    docs = documents(collection, DOCS)
    for start in range(0, DOCS, BATCH):
        store.upsert_documents(collection, docs[start:start + BATCH], chunker)
    ids = store.document_ids(collection)
    store.replace_model_mentions({d: [Mention(4, 11, "veteran", "Person")] for d in ids}, tagger="t")
    results.put((collection, len(ids)))
    store.close()


def _reader(url: str, barrier, stop, results) -> None:
    """Search and read snapshots while the writers write; report what was seen."""
    import time

    from indexer.store import DocumentStore, MissingStore

    barrier.wait()
    seen, broken = [], 0
    while not stop.is_set():
        try:
            store = DocumentStore(url, create=False)
        except MissingStore:  # the writers have not made the tables yet
            time.sleep(0.01)
            continue
        snap = store.load_snapshot()
        # one REPEATABLE READ snapshot: every chunk's document is in it, every count agrees
        broken += int(np.count_nonzero(snap.chunk_doc < 0))
        seen.append((len(snap.doc_ids), len(snap.chunk_ids), len(store.keyword_chunks('"warfarin"'))))
        store.close()
    results.put(("reader", seen, broken))


def test_processes_import_tag_and_search_one_store_at_once(pg_database):
    from indexer.store import DocumentStore

    ctx = mp.get_context("spawn")
    barrier, stop, results = ctx.Barrier(WRITERS + 1), ctx.Event(), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(pg_database, f"c{i}", barrier, results)) for i in range(WRITERS)]
    reader = ctx.Process(target=_reader, args=(pg_database, barrier, stop, results))
    for p in writers + [reader]:
        p.start()
    for p in writers:
        p.join(timeout=300)
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"
    stop.set()
    reader.join(timeout=60)
    assert reader.exitcode == 0
    got = dict(results.get(timeout=10)[:2] for _ in range(WRITERS))
    _, seen, broken = results.get(timeout=10)
    assert got == {f"c{i}": DOCS for i in range(WRITERS)}
    assert broken == 0 and len(seen) > 0
    # each snapshot saw every chunk of its documents and no other; a later read matched at least theirs
    assert all(chunks == PER_DOC * docs and WARFARIN * docs <= found <= WARFARIN * WRITERS * DOCS
               for docs, chunks, found in seen), seen[:5]
    with DocumentStore(pg_database, create=False) as store:
        counts = store.counts()
        assert counts == {"collections": WRITERS, "documents": WRITERS * DOCS, "chunks": PER_DOC * WRITERS * DOCS,
                          "mentions": WRITERS * DOCS}
        snap = store.load_snapshot()
        facet, _ = snap.facet("collection", np.ones(len(snap.doc_ids), dtype=bool), 10)
        assert facet == [(f"c{i}", f"c{i}", DOCS) for i in range(WRITERS)]
        assert store.untagged_documents("t") == []


def _late_import(url: str, barrier) -> None:
    from indexer.store import DocumentStore

    barrier.wait()
    with DocumentStore(url) as store:
        docs = documents("late", DOCS)
        for start in range(0, DOCS, BATCH):
            store.upsert_documents("late", docs[start:start + BATCH], chunker)


def test_a_build_runs_while_another_process_imports(settings):
    from search_fixtures import KeywordEmbedder

    from indexer import pipeline
    from searchd.query import Query
    from searchd.service import SearchService

    assert settings.store.url, "the settings name the test's PostgreSQL database"
    embedder = KeywordEmbedder()
    with pipeline.open_store(settings) as store:
        store.upsert_documents("first", documents("first", DOCS), chunker)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    importer = ctx.Process(target=_late_import, args=(settings.store.url, barrier))
    importer.start()
    with pipeline.open_store(settings, create=False) as store:
        barrier.wait()
        pipeline.sync(settings, store, embedder)  # encodes what it finds; the other import goes on meanwhile
    importer.join(timeout=300)
    assert importer.exitcode == 0
    with pipeline.open_store(settings, create=False) as store:
        pipeline.sync(settings, store, embedder)  # catches up with the late collection
    store, index, manifest = pipeline.open_index(settings)
    service = SearchService(store, index, embedder, settings, manifest)
    try:
        assert manifest["chunks"] == 2 * PER_DOC * DOCS and index.ntotal == 2 * PER_DOC * DOCS
        result = service.search(Query("warfarin bleeding", "keyword", k=5))
        assert result.total == 2 * DOCS
        hybrid = service.search(Query("veteran late warfarin", "hybrid", k=5, filters={"collection": ("late",)}))
        assert hybrid.total > 0 and all(h.external_id.startswith("late-") for h in hybrid.hits)
    finally:
        service.close()


def _same_ids(url: str, version: str, order: int, barrier, results) -> None:
    """Import documents "same-0".."same-N" (text `version`) in small batches, in `order` (1 or -1); report the stats."""
    from indexer.store import DocumentStore, ImportStats

    docs = [Document(f"same-{i}", f"Same {i}", f"Version {version} of document {i}: the veteran was prescribed "
                     f"warfarin. A second sentence about the appeal makes more chunks of it.", {"source": "same"})
            for i in range(DOCS)][::order]
    barrier.wait()
    total = ImportStats()
    with DocumentStore(url) as store:
        for start in range(0, DOCS, BATCH):
            stats = store.upsert_documents("same", docs[start:start + BATCH], chunker)
            total.added, total.updated, total.unchanged = (total.added + stats.added, total.updated + stats.updated,
                                                           total.unchanged + stats.unchanged)
    results.put((version, total.added, total.updated, total.unchanged))


@pytest.mark.parametrize("versions", [("a", "a"), ("a", "b")], ids=["same-text", "other-text"])
def test_two_processes_importing_the_same_ids_serialise_per_document(pg_database, versions):
    """One import adds each id, the other then finds it: unchanged (same text) or updated (its text wins); no error, no twin."""
    from indexer.store import DocumentStore

    DocumentStore(pg_database).close()  # the schema exists: both writers race on the documents, not the DDL
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_same_ids, args=(pg_database, v, order, barrier, results))
             for v, order in zip(versions, (1, -1))]  # opposite orders: every batch of one meets the other's
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"an importer exited with {p.exitcode}"
    got = [results.get(timeout=10) for _ in procs]
    assert sum(added for _, added, _, _ in got) == DOCS  # each id was added by exactly one of them
    seconds = sum(updated + unchanged for _, _, updated, unchanged in got)
    assert seconds == DOCS  # and found by the other, which updated it (other text) or left it (same text)
    if versions[0] == versions[1]:
        assert all(updated == 0 for _, _, updated, _ in got)
    with DocumentStore(pg_database, create=False) as store:
        assert store.raw("SELECT count(*), count(DISTINCT external_id) FROM documents") == [(DOCS, DOCS)]
        per_doc = store.raw("SELECT d.external_id, count(c.id) FROM documents d JOIN chunks c ON c.document_id = d.id "
                            "GROUP BY d.external_id")
        want = len(chunker(Document("x", "", f"Version {versions[0]} of document 0: the veteran was prescribed "
                                             "warfarin. A second sentence about the appeal makes more chunks of it.")))
        assert len(per_doc) == DOCS and all(n == want for _, n in per_doc)  # one document's chunks, never both
