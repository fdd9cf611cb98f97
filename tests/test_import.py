"""`indexer import` through click's CliRunner: summary, re-import in place, --skip-bad, interruption."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import readers
from indexer.cli import main
from indexer.documents import Document
from indexer.store import DocumentStore, MissingStore

FORMATS_DIR = Path(__file__).parent / "data" / "formats"


@pytest.fixture
def run(tmp_path):
    """Invoke `indexer` with the index directory in tmp_path; returns (exit code, output)."""
    def invoke(*args: str):
        result = CliRunner().invoke(main, [args[0], "--set", f'index.dir="{tmp_path / "index"}"', *args[1:]])
        return result.exit_code, result.output
    return invoke


@pytest.fixture
def store_of(store_url):
    """tmp_path -> the store the commands wrote (MEDLEX_STORE_URL's database on postgres)."""
    return lambda tmp_path: DocumentStore(store_url or tmp_path / "index" / "store.sqlite", create=False)


def test_import_summary_and_reimport_in_place(run, store_of, tmp_path):
    corpus = tmp_path / "brat"
    shutil.copytree(FORMATS_DIR / "brat", corpus)
    code, out = run("import", "--format", "brat", "--collection", "notes", str(corpus))
    assert code == 0, out
    assert "notes: 2 added, 0 updated, 0 unchanged, 0 skipped" in out
    assert "gold mentions: Disease 3, Drug 1" in out
    code, out = run("import", "--format", "brat", "--collection", "notes", str(corpus))
    assert "0 added, 0 updated, 2 unchanged" in out
    # edit one document: it is updated in place, not duplicated
    (corpus / "notes" / "plain.txt").write_text("A note, now with more text about sepsis.\n")
    code, out = run("import", "--format", "brat", "--collection", "notes", str(corpus))
    assert "0 added, 1 updated, 1 unchanged" in out
    store = store_of(tmp_path)
    assert store.counts()["documents"] == 2 and store.counts()["mentions"] == 4
    assert len(store.keyword_chunks('"sepsis"')) == 1
    code, out = run("info")
    assert code == 0 and "documents    2" in out


def test_malformed_record_stops_the_import_naming_file_and_line(run, store_of, tmp_path):
    code, out = run("import", "--format", "brat", "--collection", "bad", str(FORMATS_DIR / "brat_bad"))
    assert code == 1
    assert "a_offsets.ann:line 2" in out and "--skip-bad" in out and "Traceback" not in out
    assert store_of(tmp_path).counts()["documents"] == 0


def test_skip_bad_counts_and_goes_on(run, tmp_path):
    code, out = run("import", "--format", "brat", "--collection", "bad", "--skip-bad", str(FORMATS_DIR / "brat_bad"))
    assert code == 0, out
    assert "warning: skipped" in out and "b_ref.ann:line 2" in out
    assert "bad: 1 added, 0 updated, 0 unchanged, 2 skipped" in out


def test_field_mapping_and_source_through_the_cli(run, store_of, tmp_path):
    code, out = run("import", "--format", "json", "--collection", "j", "--skip-bad", "--source", "rulings",
                    "--field", "records=results", "--field", "id=doc.key", "--field", "text=body.full",
                    "--field", "court=court.name", "--field", "date=decided", str(FORMATS_DIR / "json" / "nested.json"))
    assert code == 0, out
    assert "3 added" in out and "1 skipped" in out
    rows = store_of(tmp_path).raw("select external_id, source, court, year from documents order by external_id")
    assert rows[0] == ("r1", "rulings", "Nevada Supreme Court", 2019)
    code, out = run("import", "--format", "json", "--collection", "j", "--field", "text", "x.json")
    assert code == 1 and "not NAME=FIELD" in out


def test_interrupted_import_keeps_finished_batches_only(run, store_of, tmp_path, monkeypatch):
    def interrupted(path, options):
        for i in range(5):
            yield Document(f"d{i}", "", f"Document {i} mentions aspirin and fever.", {"source": "t"})
        raise KeyboardInterrupt

    monkeypatch.setattr(readers, "reader_for", lambda fmt: interrupted)
    code, out = run("import", "--format", "text", "--collection", "c", "--batch-size", "2", str(tmp_path))
    assert code == 130 and "interrupted" in out
    store = store_of(tmp_path)
    # two full batches (4 documents) were committed; the fifth, in an unfinished batch, was not
    assert store.counts()["documents"] == 4
    chunks = store.counts()["chunks"]
    assert len(store.keyword_chunks('"aspirin"')) == chunks


def test_limit_counts_documents_not_skipped_records(run, tmp_path):
    code, out = run("import", "--format", "brat", "--collection", "bad", "--skip-bad", "--limit", "1",
                    str(FORMATS_DIR / "brat_bad"))
    assert code == 0, out
    assert "bad: 1 added, 0 updated, 0 unchanged, 2 skipped" in out


def test_add_stops_at_a_malformed_record_before_changing_anything(run, store_of, tmp_path):
    code, out = run("add", "--format", "brat", "--collection", "bad", str(FORMATS_DIR / "brat_bad"))
    assert code == 1 and "Traceback" not in out
    assert "a_offsets.ann:line 2" in out and "(nothing was changed; --skip-bad skips such records)" in out
    assert not (tmp_path / "index" / "store.sqlite").exists()
    with pytest.raises(MissingStore):  # on postgres: no tables were made either
        store_of(tmp_path)


def test_a_malformed_field_option_is_a_config_error():
    from indexer.cli import field_map
    from indexer.errors import ConfigError

    assert field_map(("id=doc.key",)) == {"id": "doc.key"}
    with pytest.raises(ConfigError, match="--field 'text' is not NAME=FIELD"):
        field_map(("text",))
