"""`indexer build --engine ray` on a local 2-CPU Ray cluster equals the local build (tiny real models)."""
from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
from search_fixtures import sample_chunker, sample_documents

from indexer import pipeline
from indexer.errors import ConfigError
from indexer.settings import StoreSettings
from tests.conftest import SAMPLE

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install -e .[cluster])")


@pytest.fixture
def tiny_models(tiny_bert, tmp_path, settings):
    """Settings that load the tiny random BERT as the embedder and a tiny BERT+BiLSTM+CRF tagger saved beside it."""
    from tests.test_ner import tiny_tagger

    tiny_tagger(tiny_bert).save(tmp_path / "tagger")
    return settings.replace(
        embedder=dataclasses.replace(settings.embedder, model=str(tiny_bert), device="cpu"),
        ner=dataclasses.replace(settings.ner, model=str(tmp_path / "tagger"), device="cpu", build_batch=3,
                                min_confidence=0.0, legal_min_confidence=0.0),  # the random tagger is never sure
        index=dataclasses.replace(settings.index, checkpoint_every=6, build_batch=4),
        cluster=dataclasses.replace(settings.cluster, local_cpus=2, workers=2, cpus_per_worker=1.0, batch_size=5,
                                    block_size=7))


def imported(settings, where, store_url):
    """The sample corpus without gold mentions (so the tagger tags every document) in index dir `where` (and `store_url`)."""
    s = settings.replace(index=dataclasses.replace(settings.index, dir=where), store=StoreSettings(url=store_url))
    store = pipeline.open_store(s)
    store.upsert_documents("sample", [dataclasses.replace(d, mentions=[]) for d in sample_documents(SAMPLE)], sample_chunker)
    return s, store


def built(s):
    store, index, manifest = pipeline.open_index(s)
    ids = index.ids()
    docs = store.document_ids("sample")
    out = ids, index.vectors(ids), store.mentions_of(docs), manifest
    index.close()
    store.close()
    return out


@needs_ray
@pytest.mark.slow
def test_ray_build_equals_the_local_build_and_resumes_a_local_checkpoint(tiny_models, tmp_path, more_store_urls):
    from indexer.cluster import sync_on_ray
    from indexer.embedder import load_embedder
    from indexer.ner import load_tagger

    embedder, tagger = load_embedder(tiny_models), load_tagger(tiny_models)
    local, store = imported(tiny_models, tmp_path / "local", more_store_urls())
    pipeline.sync(local, store, embedder, tagger=tagger)
    store.close()

    ray_settings, store = imported(tiny_models, tmp_path / "ray", more_store_urls())
    manifest = sync_on_ray(ray_settings, store, embedder, tagger=tagger)
    store.close()
    assert manifest["engine"] == "ray" and manifest["tagged_last_build"] == len(sample_documents(SAMPLE))
    want_ids, want_vectors, want_mentions, want = built(local)
    got_ids, got_vectors, got_mentions, got = built(ray_settings)
    assert np.array_equal(got_ids, want_ids)
    assert np.min(np.sum(got_vectors * want_vectors, axis=1)) >= 0.9999
    assert got_mentions == want_mentions and sum(map(len, got_mentions.values())) > 0
    assert got["mentions_last_build"] == want["mentions_last_build"]
    assert (got["chunks"], got["mentions"], got["embedder"]) == (want["chunks"], want["mentions"], want["embedder"])

    # nothing pending: no job, and the index is unchanged
    store = pipeline.open_store(ray_settings, create=False)
    again = sync_on_ray(ray_settings, store, embedder, tagger=tagger)
    assert again["encoded_last_build"] == 0 and again["tagged_last_build"] == 0
    # a rebuild killed midway (local) resumes from its checkpoint on Ray
    from tests.test_pipeline import ExplodingEmbedder

    class Killed(ExplodingEmbedder):
        def __init__(self):
            super().__init__(fail_on=3)
            self.name, self.dim, self.checksum = embedder.name, embedder.dim, embedder.checksum
            self.backend, self.precision = embedder.backend, embedder.precision

        def embed_documents(self, texts):
            if self.calls + 1 == self.fail_on:
                raise KeyboardInterrupt("killed")
            self.calls += 1
            return embedder.embed_documents(texts)

    with pytest.raises(KeyboardInterrupt):
        pipeline.sync(ray_settings, store, Killed(), rebuild=True)
    assert (ray_settings.index.dir / pipeline.PARTIAL).is_file()
    resumed = sync_on_ray(ray_settings, store, embedder, rebuild=True)
    store.close()
    assert 0 < resumed["encoded_last_build"] < want["chunks"], "only the chunks after the checkpoint"
    ids, vectors, _, _ = built(ray_settings)
    assert np.array_equal(ids, want_ids) and np.min(np.sum(vectors * want_vectors, axis=1)) >= 0.9999


def test_bad_cluster_settings_and_a_missing_extra_are_clear_errors(settings, monkeypatch):
    from indexer import cluster

    bad = settings.replace(cluster=dataclasses.replace(settings.cluster, workers=0))
    with pytest.raises(ConfigError, match="cluster.workers.*got workers=0"):
        cluster.check_cluster(bad)
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ConfigError, match=r"pip install -e \.\[cluster\]"):
        cluster.import_ray()


def test_bench_engines_parse():
    from indexer.build_bench import parse_engines

    assert parse_engines("local,ray:1, ray:2") == [("local", 0), ("ray", 1), ("ray", 2)]
    for bad in ("ray", "ray:0", "spark:2", "local:1"):
        with pytest.raises(ConfigError, match="is not 'local' or 'ray:WORKERS'"):
            parse_engines(bad)
