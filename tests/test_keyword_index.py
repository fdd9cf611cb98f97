"""The keyword index: Porter-stemmed title and text columns, kept in step with every write, migrated once."""
from __future__ import annotations

import sqlite3

import pytest

from indexer.documents import Document, chunk_text
from indexer.store import DocumentStore

OLD_LAYOUT = [  # the FTS table and triggers of stores made before the title column
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN INSERT INTO chunks_fts(rowid, text) "
    "VALUES (new.id, new.text); END",
]


def chunker(doc):
    return chunk_text(doc.text, max_tokens=16, overlap_tokens=4)


def docs():
    return [Document("w", "Warfarin and the elderly", "The patient bleeds after surgery. " * 3, {}),
            Document("p", "Stress disorder", "The veteran reported nightmares and was denied service connection.", {})]


def match(store, q, column=None):
    if store.postgres:  # a word of one column: the tsvector's weight label (title A, text B)
        expr = q if column is None else f"{q}:{dict(title='A', text='B')[column]}"
        return sorted(r[0] for r in store.raw("SELECT d.external_id FROM chunks c JOIN documents d ON d.id = c.document_id "
                                              "WHERE c.tsv @@ to_tsquery('medlex', :q)", q=expr))
    expr = q if column is None else f"{column}: {q}"
    return sorted(r[0] for r in store.raw("SELECT d.external_id FROM chunks_fts f JOIN chunks c ON c.id = f.rowid "
                                          "JOIN documents d ON d.id = c.document_id WHERE chunks_fts MATCH :q", q=expr))


def test_stemmed_words_match_other_forms_and_titles_match_on_their_own(store_location):
    store = DocumentStore(store_location)
    store.upsert_documents("c", docs(), chunker)
    assert set(match(store, "bleeding")) == {"w"}  # porter: bleeding, bleeds -> bleed
    assert set(match(store, "warfarin")) == {"w"}  # only in the title
    assert match(store, "warfarin", "text") == [] and set(match(store, "warfarin", "title")) == {"w"}
    assert set(match(store, "nightmare")) == {"p"}


def test_title_changes_and_deletes_keep_the_index_exact(store_location):
    store = DocumentStore(store_location)
    store.upsert_documents("c", docs(), chunker)
    renamed = Document("w", "Heparin in the elderly", docs()[0].text, {})
    store.upsert_documents("c", [renamed], chunker)
    assert match(store, "warfarin") == [] and set(match(store, "heparin")) == {"w"}
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE documents SET title = 'Aspirin' WHERE external_id = 'w'")
    assert match(store, "heparin") == [] and set(match(store, "aspirin")) == {"w"}
    with store.engine.begin() as conn:  # a document deleted without its chunks first (documents_bd)
        conn.exec_driver_sql("DELETE FROM documents WHERE external_id = 'w'")
    assert match(store, "aspirin") == [] and match(store, "bleeding") == []
    if store.postgres:  # every chunk's tsvector is the one its title and text give now
        assert store.raw("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.tsv IS "
                         "DISTINCT FROM setweight(to_tsvector('medlex', d.title), 'A') || "
                         "setweight(to_tsvector('medlex', c.text), 'B')") == [(0,)]
        return
    # FTS5's own consistency check: the index holds exactly what the content view holds
    with store.engine.begin() as conn:  # raises "database disk image is malformed" on any drift
        conn.exec_driver_sql("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")


@pytest.mark.sqlite_only("the FTS5 layout of stores made before the title column; PostgreSQL stores never had it")
def test_a_store_from_before_the_title_column_is_rebuilt_once_on_open(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    store = DocumentStore(path)
    store.upsert_documents("c", docs(), chunker)
    store.close()
    con = sqlite3.connect(path)
    for name in ("chunks_ai", "chunks_ad", "chunks_au", "documents_bd", "documents_au"):
        con.execute(f"DROP TRIGGER {name}")
    con.execute("DROP TABLE chunks_fts")
    for ddl in OLD_LAYOUT:
        con.execute(ddl)
    con.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('rebuild')")
    con.commit()
    con.close()
    reopened = DocumentStore(path, create=False)
    assert "rebuilding the keyword index" in capsys.readouterr().err
    assert set(match(reopened, "warfarin")) == {"w"} and set(match(reopened, "bleeding")) == {"w"}
    reopened.close()
    DocumentStore(path, create=False).close()
    assert "rebuilding" not in capsys.readouterr().err  # once
