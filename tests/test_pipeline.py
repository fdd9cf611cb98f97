"""Index directories: build, incremental sync, add/update/delete, crash safety, load-time checks, CLI."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from search_fixtures import KeywordEmbedder, build_sample_index, sample_chunker, sample_documents

from indexer import pipeline
from indexer.documents import Document
from indexer.errors import IndexMismatchError
from searchd.query import Query
from searchd.service import SearchService


class ExplodingEmbedder(KeywordEmbedder):
    """Fails on the n-th call to embed_documents, like a build killed midway."""

    def __init__(self, fail_on: int):
        super().__init__()
        self.fail_on = fail_on

    def embed_documents(self, texts):
        if self.calls + 1 == self.fail_on:
            self.calls += 1
            raise KeyboardInterrupt("killed")
        return super().embed_documents(texts)


def with_index(settings, **knobs):
    return settings.replace(index=dataclasses.replace(settings.index, **knobs))


def reopen(settings, embedder=None):
    store, index, manifest = pipeline.open_index(settings)
    return SearchService(store, index, embedder or KeywordEmbedder(), settings, manifest)


def ranking(service, q="veteran PTSD warfarin doctor", mode="dense"):
    return [(h.external_id, round(h.score, 6)) for h in service.search(Query(q, mode, k=12)).hits]


def test_manifest_records_the_build(settings, sample_dir):
    service = build_sample_index(settings, sample_dir)
    m = json.loads((settings.index.dir / pipeline.MANIFEST).read_text())
    counts = service.store.counts()
    assert (m["vectors"], m["chunks"], m["documents"]) == (counts["chunks"], counts["chunks"], counts["documents"])
    assert m["embedder"] == {"name": "keyword-fake", "checksum": "keyword-fake", "dim": 256, "backend": "torch",
                             "precision": "fp32"}
    assert m["index_type"] == "Flat" and m["metric"] == "inner_product" and m["built_at"]


def test_sync_is_incremental(settings, sample_dir):
    build_sample_index(settings, sample_dir)
    store = pipeline.open_store(settings)
    extra = Document("new-1", "Lithium and the kidney", "Lithium caused nephrogenic diabetes insipidus.", {"date": "2021"})
    store.upsert_documents("sample", [extra], sample_chunker)
    with pytest.raises(IndexMismatchError, match="1 chunks are not encoded.*indexer build"):
        pipeline.open_index(settings)
    emb = KeywordEmbedder()
    manifest = pipeline.sync(settings, store, emb)
    assert manifest["encoded_last_build"] == 1 and emb.calls == 1
    store.apply_changes("sample", [], ["new-1", "bva-001"], sample_chunker, lambda added, removed: None)
    manifest = pipeline.sync(settings, store, KeywordEmbedder())
    assert manifest["encoded_last_build"] == 0 and manifest["vectors"] == store.counts()["chunks"]
    assert "bva-001" not in {e for e, _ in ranking(reopen(settings))}


def test_add_update_delete_then_search(settings, sample_dir):
    build_sample_index(settings, sample_dir)
    emb = KeywordEmbedder()
    new = Document("new-1", "Lithium toxicity", "Chronic lithium therapy caused kidney injury in a bipolar patient.",
                   {"source": "pubmed", "doc_type": "abstract", "date": "2020"})
    stats = pipeline.change(settings, emb, "sample", [new], [], sample_chunker)
    assert stats.added == 1
    service = reopen(settings)
    assert service.search(Query("lithium kidney", "dense", k=1)).hits[0].external_id == "new-1"
    changed = dataclasses.replace(new, text="Warfarin overdose led to a retroperitoneal bleed in an elderly patient.")
    assert pipeline.change(settings, emb, "sample", [changed], [], sample_chunker).updated == 1
    service = reopen(settings)
    assert service.search(Query("retroperitoneal bleed", "dense", k=1)).hits[0].external_id == "new-1"
    # the old text's words are gone from the keyword index; the unchanged title still matches
    assert "new-1" not in {h.external_id for h in service.search(Query("bipolar", "keyword")).hits}
    assert "new-1" in {h.external_id for h in service.search(Query("lithium", "keyword")).hits}
    assert pipeline.change(settings, emb, "sample", [], ["new-1"], sample_chunker).deleted == 1
    service = reopen(settings)
    for mode in ("dense", "keyword", "hybrid"):
        assert "new-1" not in {h.external_id for h in service.search(Query("retroperitoneal bleed", mode, k=12)).hits}
    assert service.index.ntotal == service.store.counts()["chunks"]


def test_a_build_killed_midway_leaves_the_old_index_answering(settings, sample_dir):
    settings = with_index(settings, checkpoint_every=4, build_batch=2)
    build_sample_index(settings, sample_dir)
    before = ranking(reopen(settings))
    vectors_before = (settings.index.dir / pipeline.VECTORS).read_bytes()
    store = pipeline.open_store(settings)
    with pytest.raises(KeyboardInterrupt):
        pipeline.sync(settings, store, ExplodingEmbedder(fail_on=5), rebuild=True)  # after two checkpoints
    assert (settings.index.dir / pipeline.VECTORS).read_bytes() == vectors_before
    assert ranking(reopen(settings)) == before, "the old index still answers, unchanged"
    assert (settings.index.dir / pipeline.PARTIAL).is_file()
    emb = KeywordEmbedder()
    manifest = pipeline.sync(settings, store, emb, rebuild=True)  # resumes from the checkpoint
    total = store.counts()["chunks"]
    assert manifest["encoded_last_build"] == total - 8 and manifest["vectors"] == total
    assert not (settings.index.dir / pipeline.PARTIAL).exists()
    assert ranking(reopen(settings)) == before


def test_a_failed_update_changes_nothing(settings, sample_dir):
    build_sample_index(settings, sample_dir)
    before = ranking(reopen(settings))
    counts = pipeline.open_store(settings).counts()
    docs = [Document(f"new-{i}", "t", f"text number {i} about lithium", {}) for i in range(5)]
    with pytest.raises(KeyboardInterrupt):
        pipeline.change(settings, ExplodingEmbedder(fail_on=1), "sample", docs, ["bva-001"], sample_chunker)
    assert pipeline.open_store(settings).counts() == counts
    assert ranking(reopen(settings)) == before
    assert not list(settings.index.dir.glob(".*.tmp"))


def test_hnsw_deletes_become_tombstones_then_compact(settings, sample_dir):
    settings = with_index(settings, type="hnsw", hnsw_m=8)
    build_sample_index(settings, sample_dir)
    pipeline.change(settings, KeywordEmbedder(), "sample", [], ["bva-001"], sample_chunker)
    m = json.loads((settings.index.dir / pipeline.MANIFEST).read_text())
    assert m["tombstones"] and m["live_vectors"] == m["chunks"] < m["vectors"]
    service = reopen(settings)
    assert not service.search(Query("x", "dense")).exact
    assert "bva-001" not in {h.external_id for h in service.search(Query("PTSD stressor", "dense", k=12)).hits}
    store = pipeline.open_store(settings)
    store.apply_changes("sample", [], ["bva-002", "bva-003", "pm-003"], sample_chunker, lambda added, removed: None)
    m = pipeline.sync(settings, store, KeywordEmbedder())  # over 20% dead: rebuilt without tombstones
    assert m["tombstones"] == [] and m["vectors"] == m["chunks"]


def test_load_refuses_other_embedder_and_broken_files(settings, sample_dir):
    build_sample_index(settings, sample_dir)
    manifest = json.loads((settings.index.dir / pipeline.MANIFEST).read_text())
    with pytest.raises(IndexMismatchError, match="built with embedder 'keyword-fake'.*indexer build --rebuild"):
        pipeline.check_embedder(settings, manifest)
    (settings.index.dir / pipeline.MANIFEST).write_text(json.dumps({**manifest, "vectors": 3}))
    with pytest.raises(IndexMismatchError, match="manifest says 3"):
        pipeline.open_index(settings)
    (settings.index.dir / pipeline.MANIFEST).write_text("{not json")
    with pytest.raises(IndexMismatchError, match="not valid JSON"):
        SearchService.load(settings)
    (settings.index.dir / pipeline.MANIFEST).unlink()
    with pytest.raises(IndexMismatchError, match="run `indexer build`"):
        SearchService.load(settings)


def test_title_prefix_is_encoded(settings):
    assert pipeline.embed_text("A title.", "body", settings) == "A title. body"
    off = with_index(settings, embed_title=False)
    assert pipeline.embed_text("A title", "body", off) == "body"


def test_cli_build_add_update_delete(settings, sample_dir, monkeypatch, tmp_path):
    from indexer import cli, embedder

    monkeypatch.setattr(embedder, "load_embedder", lambda s, **_: KeywordEmbedder())
    opts = ["--set", f'index.dir="{settings.index.dir}"']
    run = CliRunner().invoke
    assert run(cli.main, ["import", "--format", "beir", "--collection", "sample", str(sample_dir), *opts]).exit_code == 0
    out = run(cli.main, ["build", "--collection", "sample", *opts])
    assert out.exit_code == 0 and "12 documents" in out.output
    bad = run(cli.main, ["build", "--collection", "nope", *opts])
    assert bad.exit_code == 1 and "unknown collection 'nope'" in bad.output
    extra = tmp_path / "extra"
    extra.mkdir()
    doc = sample_documents(sample_dir)[0]
    (extra / "corpus.jsonl").write_text(json.dumps({"_id": "x-1", "title": "New", "text": "Lithium and kidneys."}) + "\n")
    assert run(cli.main, ["add", "--format", "beir", "--collection", "sample", str(extra), *opts]).exit_code == 0
    (extra / "corpus.jsonl").write_text(json.dumps({"_id": "zz", "title": "", "text": "unknown"}) + "\n")
    out = run(cli.main, ["update", "--format", "beir", "--collection", "sample", str(extra), *opts])
    assert out.exit_code == 1 and "use `indexer add`" in out.output
    (extra / "corpus.jsonl").write_text(json.dumps({"_id": doc.id, "title": "T", "text": "Changed text."}) + "\n")
    out = run(cli.main, ["update", "--format", "beir", "--collection", "sample", str(extra), *opts])
    assert out.exit_code == 0 and "1 updated" in out.output
    out = run(cli.main, ["delete", "--collection", "sample", "x-1", *opts])
    assert out.exit_code == 0 and "1 deleted" in out.output
    assert run(cli.main, ["delete", "--collection", "sample", "x-1", *opts]).exit_code == 1
    service = reopen(settings)
    assert service.store.counts()["documents"] == 12 and service.index.ntotal == service.store.counts()["chunks"]
    assert np.isin(service.index.ids(), service.store.chunk_ids()).all()


class LockProbingEmbedder(KeywordEmbedder):
    """Checks, each time it encodes, that no connection holds the store's write lock (BEGIN IMMEDIATE, no wait)."""

    def __init__(self, store_path):
        super().__init__()
        self.store_path, self.texts = store_path, []

    def embed_documents(self, texts):
        import sqlite3

        probe = sqlite3.connect(self.store_path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")  # raises 'database is locked' while a writer's transaction is open
            probe.execute("ROLLBACK")
        finally:
            probe.close()
        self.texts += list(texts)
        return super().embed_documents(texts)


@pytest.mark.sqlite_only("probes SQLite's write lock from the embedder; PostgreSQL has no store-wide write lock")
def test_change_encodes_outside_the_store_transaction_and_each_new_chunk_once(settings, sample_dir):
    build_sample_index(settings, sample_dir)
    emb = LockProbingEmbedder(settings.index.dir / pipeline.STORE)
    docs = [Document(f"new-{i}", f"Title {i}", " ".join(f"Lithium level {i}.{j} was toxic." for j in range(30)), {}) for i in range(3)]
    pipeline.change(settings, emb, "sample", docs, ["bva-001"], sample_chunker)
    added = sum(len(sample_chunker(d)) for d in docs)
    assert len(emb.texts) == len(set(emb.texts)) == added
    again = LockProbingEmbedder(settings.index.dir / pipeline.STORE)
    assert pipeline.change(settings, again, "sample", docs, [], sample_chunker).unchanged == 3
    assert again.texts == [], "unchanged documents are not encoded again"
    service = reopen(settings)
    assert sorted(service.index.ids().tolist()) == service.store.chunk_ids()
