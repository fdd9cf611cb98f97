"""indexer.importing: the record reader (limit, skip-bad, one skip report) and the batched import into a store."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from indexer import readers
from indexer.documents import Chunk, Document, Mention
from indexer.errors import ReaderError
from indexer.importing import (CorpusReader, StoppedAtBadRecord, add_stats, import_corpus, import_documents,
                               open_store)
from indexer.store import ImportStats

FORMATS_DIR = Path(__file__).parent / "data" / "formats"
BRAT_BAD = FORMATS_DIR / "brat_bad"  # a_offsets and b_ref are malformed, c_good is not


def one_chunk(doc: Document) -> list[Chunk]:
    return [Chunk(0, 0, len(doc.text), doc.text)]


def docs(n: int, prefix: str = "d") -> list[Document]:
    return [Document(f"{prefix}{i}", "", f"Document {i} mentions fever.", {"source": "t"},
                     [Mention(21, 26, "fever", "Disease")]) for i in range(n)]


@pytest.fixture
def fake_reader(monkeypatch):
    """Make every format read the given records (Documents and ReaderErrors) in order; returns the setter."""
    def use(records: list, then: BaseException | None = None) -> list[int]:
        pulled = [0]

        def read(path, options):
            for record in records:
                pulled[0] += 1
                yield record
            if then is not None:
                raise then
        monkeypatch.setattr(readers, "reader_for", lambda fmt: read)
        return pulled
    return use


def test_a_malformed_record_stops_with_the_readers_message():
    with pytest.raises(StoppedAtBadRecord) as stop:
        list(CorpusReader("brat", BRAT_BAD))
    assert isinstance(stop.value, ReaderError)
    assert str(stop.value) == str(stop.value.record) and "a_offsets.ann:line 2" in str(stop.value)
    noted = stop.value.with_note("one").with_note("two")
    assert str(noted) == f"{stop.value.record.path}:line 2: {stop.value.record.reason} (one; two)"


def test_skip_bad_reports_each_record_once_on_stderr_and_counts_it(capsys):
    corpus = CorpusReader("brat", BRAT_BAD, skip_bad=True)
    assert [d.id for d in corpus] == ["c_good"]
    assert len(corpus.skipped) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("warning: skipped ") for line in err)
    assert "a_offsets.ann:line 2" in err[0] and "b_ref.ann:line 2" in err[1]


def test_a_custom_reporter_replaces_the_warning(capsys):
    seen: list[ReaderError] = []
    corpus = CorpusReader("brat", BRAT_BAD, skip_bad=True, report=seen.append)
    list(corpus)
    assert seen == corpus.skipped and capsys.readouterr().err == ""


def test_limit_counts_documents_and_stops_reading(fake_reader):
    bad = ReaderError("broken", "f.txt", "line 1")
    pulled = fake_reader([bad, *docs(5)], then=AssertionError("read past the limit"))
    corpus = CorpusReader("text", ".", limit=3, skip_bad=True, report=lambda r: None)
    assert [d.id for d in corpus] == ["d0", "d1", "d2"]
    assert pulled[0] == 4 and corpus.skipped == [bad]
    assert CorpusReader("text", ".", limit=0).expected() == 0


def test_several_paths_read_in_order_and_expected_adds_their_counts():
    one = FORMATS_DIR / "brat"
    corpus = CorpusReader("brat", [one, one])
    ids = [d.id for d in corpus]
    assert len(ids) == 2 * len(set(ids)) and ids[:len(ids) // 2] == ids[len(ids) // 2:]
    assert corpus.expected() in (None, len(ids))
    assert CorpusReader("brat", [one, one], limit=1).expected() in (None, 1)


class RecordingStore:
    """Stands in for DocumentStore.upsert_documents: records each transaction's batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def upsert_documents(self, collection: str, batch, chunker) -> ImportStats:
        self.batches.append([d.id for d in batch])
        return ImportStats(added=len(batch), chunks=sum(len(chunker(d)) for d in batch),
                           mentions=Counter(m.label for d in batch for m in d.mentions))


def test_import_writes_batches_of_n_and_sums_their_stats():
    store = RecordingStore()
    stats = import_documents(store, "c", docs(5), one_chunk, batch_size=2)
    assert [len(b) for b in store.batches] == [2, 2, 1]
    assert (stats.added, stats.chunks, stats.mentions) == (5, 5, Counter(Disease=5))


def test_a_stop_during_import_names_what_earlier_batches_stored(fake_reader):
    fake_reader([*docs(3), ReaderError("broken", "f.txt", "line 9")])
    store = RecordingStore()
    with pytest.raises(StoppedAtBadRecord, match=r"f.txt:line 9: broken \(import stopped: 2 documents of earlier "
                                                 r"batches are stored, nothing of this batch was written\)"):
        import_documents(store, "c", CorpusReader("text", "."), one_chunk, batch_size=2)
    assert store.batches == [["d0", "d1"]]


def test_add_stats_adds_every_count():
    total = ImportStats(added=1, mentions=Counter(Drug=1))
    add_stats(total, ImportStats(added=2, updated=1, unchanged=3, deleted=4, chunks=5, mentions=Counter(Drug=2, Disease=1)))
    assert total == ImportStats(3, 1, 3, 4, 5, Counter(Drug=3, Disease=1))


def test_import_corpus_fills_the_configured_store(settings, sample_dir):
    stats = import_corpus(settings, "sample", CorpusReader("beir", sample_dir), batch_size=4)
    store = open_store(settings, create=False)
    try:
        assert stats.added == store.counts()["documents"] == len(list(CorpusReader("beir", sample_dir)))
        assert stats.chunks == store.counts()["chunks"]
    finally:
        store.close()
