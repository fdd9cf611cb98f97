from indexer.documents import Document, Mention, chunk_text
from indexer.store import DocumentStore


def chunker(doc):
    return chunk_text(doc.text, max_tokens=16, overlap_tokens=4)


def make_doc(text="The veteran has PTSD. He was prescribed sertraline for depression.", **meta):
    mentions = [Mention(16, 20, "PTSD", "Disease", norm_id="MESH:D013313"),
                Mention(40, 50, "sertraline", "Drug", source_label="Chemical")]
    return Document("d1", "Title", text, {"source": "bva", "date": "2015-12-31", **meta}, mentions)


def test_reimport_updates_in_place(tmp_path):
    store = DocumentStore(tmp_path / "s.sqlite")
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


def test_fts_follows_chunks(tmp_path):
    store = DocumentStore(tmp_path / "s.sqlite")
    store.upsert_documents("c", [make_doc()], chunker)
    hits = store.raw("select rowid from chunks_fts where chunks_fts match 'sertraline'")
    assert len(hits) >= 1
    store.delete_documents("c", ["d1"])
    assert store.raw("select rowid from chunks_fts where chunks_fts match 'sertraline'") == []
    assert store.counts() == {"collections": 1, "documents": 0, "chunks": 0, "mentions": 0}


def test_mentions_attach_to_chunks_and_norm_values(tmp_path):
    store = DocumentStore(tmp_path / "s.sqlite")
    store.upsert_documents("c", [make_doc()], chunker)
    rows = store.raw("select m.norm_id, m.norm_name, c.start <= m.start and m.\"end\" <= c.\"end\" "
                     "from mentions m join chunks c on c.id = m.chunk_id order by m.start")
    assert rows == [("MESH:D013313", "PTSD", 1), ("text:sertraline", "sertraline", 1)]


def test_failed_batch_writes_nothing(tmp_path):
    store = DocumentStore(tmp_path / "s.sqlite")

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
