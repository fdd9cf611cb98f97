from indexer.documents import Document, Mention, chunk_text
from indexer.store import DocumentStore


def chunker(doc):
    return chunk_text(doc.text, max_tokens=16, overlap_tokens=4)


def make_doc(text="The veteran has PTSD. He was prescribed sertraline for depression.", **meta):
    mentions = [Mention(16, 20, "PTSD", "Disease", norm_id="MESH:D013313"),
                Mention(40, 50, "sertraline", "Drug", source_label="Chemical")]
    return Document("d1", "Title", text, {"source": "bva", "date": "2015-12-31", **meta}, mentions)


def test_reimport_updates_in_place(store_location):
    store = DocumentStore(store_location)
    stats = store.upsert_documents("c", [make_doc()], chunker)
    assert (stats.added, stats.updated) == (1, 0)
    first_chunks = store.chunk_ids()
    assert store.upsert_documents("c", [make_doc()], chunker).unchanged == 1
    stats = store.upsert_documents("c", [make_doc(court="BVA")], chunker)
    assert (stats.added, stats.updated) == (0, 1)
    counts = store.counts()
    assert counts["documents"] == 1 and counts["mentions"] == 2
    assert set(store.chunk_ids()).isdisjoint(first_chunks), "chunk ids are never reused"
    assert store.raw("select court, year from documents") == [("BVA", 2015)]


def test_fts_follows_chunks(store_location):
    store = DocumentStore(store_location)
    store.upsert_documents("c", [make_doc()], chunker)
    hits = store.keyword_chunks('"sertraline"')
    assert len(hits) >= 1 and set(hits.tolist()) <= set(store.chunk_ids())
    store.apply_changes("c", [], ["d1"], chunker, lambda added, removed: None)
    assert len(store.keyword_chunks('"sertraline"')) == 0
    assert store.counts() == {"collections": 1, "documents": 0, "chunks": 0, "mentions": 0}


def test_mentions_attach_to_chunks_and_norm_values(store_location):
    store = DocumentStore(store_location)
    store.upsert_documents("c", [make_doc()], chunker)
    rows = store.raw("select m.norm_id, m.norm_name, c.start <= m.start and m.\"end\" <= c.\"end\" "
                     "from mentions m join chunks c on c.id = m.chunk_id order by m.start")
    assert rows == [("MESH:D013313", "PTSD", 1), ("text:sertraline", "sertraline", 1)]


def test_failed_batch_writes_nothing(store_location):
    store = DocumentStore(store_location)

    def exploding(doc):
        if doc.id == "bad":
            raise RuntimeError("boom")
        return chunker(doc)

    good = make_doc()
    bad = Document("bad", "", "text")
    try:
        store.upsert_documents("c", [good, bad], exploding)
    except RuntimeError:
        pass
    assert store.counts()["documents"] == 0


def test_reads_by_id_cover_more_ids_than_sqlite_binds(store_location):
    """Lists longer than one batch of bound parameters are read whole (term_highlights used to stop at 900)."""
    from indexer.documents import Chunk
    from indexer.store import MAX_IDS

    words = ["sertraline"] * (2 * MAX_IDS + 50)
    text = " ".join(words)

    def one_chunk_per_word(doc):
        return [Chunk(i, 11 * i, 11 * i + 10, w) for i, w in enumerate(doc.text.split())]

    with DocumentStore(store_location) as store:
        store.upsert_documents("c", [Document("long", "", text)], one_chunk_per_word)
        ids = store.chunk_ids()
        assert len(ids) == len(words)
        assert sorted(store.term_highlights('"sertraline"', ids)) == ids
        for read in (store.chunk_rows, store.chunk_documents, store.chunk_texts):
            assert sorted(read(ids)) == ids
        doc_ids = store.document_ids("c")
        assert list(store.document_texts(doc_ids, 2)) == [[(doc_ids[0], text)]]
