"""Shards on Ray Serve replicas (cluster.serve_shards): the merged top k equals the single index's exact top k.

The Ray tests start a local cluster of 2 CPUs (about 20-40 s with Serve's controller and the replicas), so
they are slow; without ray[serve] they are skipped.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from search_fixtures import KeywordEmbedder, build_sample_index

from indexer import pipeline
from indexer.errors import ConfigError
from indexer.shards import ShardedIndex, open_search_index, plan_bounds, split
from searchd.service import SearchService
from tests.test_shards import N, brute, dense_ranking, filters, record, unit, with_shards

needs_serve = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("ray", "fastapi", "uvicorn")),
    reason="ray[serve] is not installed (pip install -e .[cluster])")


def on_serve(settings, replicas=1, cpus=0.5):
    """Settings that serve shards from a local 2-CPU cluster."""
    return settings.replace(cluster=dataclasses.replace(settings.cluster, serve_shards=True, local_cpus=2,
                                                        replicas_per_shard=replicas, cpus_per_replica=cpus))


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(23)
    ids = np.sort(rng.choice(10**8, N, replace=False)).astype(np.int64)
    return unit(rng, N), ids


@needs_serve
@pytest.mark.slow
def test_replicas_merge_to_the_single_index_top_k(corpus, settings, tmp_path):
    import ray

    from indexer.shard_serve import serve_shards

    vectors, ids = corpus
    single, index_settings = record("flat", vectors, ids)
    files = []
    for i, (_, shard) in enumerate(split(single, plan_bounds(ids, 3), index_settings)):
        shard.save(tmp_path / f"{i}.faiss")
        files.append((tmp_path / f"{i}.faiss", shard.description))
        shard.close()
    # 3 shards x 2 replicas: each shard's calls go to either of its two replicas
    served = ShardedIndex(serve_shards(on_serve(settings, replicas=2, cpus=0.25), files))
    try:
        assert served.ntotal == N and served.exact and np.array_equal(served.ids(), ids)
        assert served.description == "3 shards x Flat on Ray Serve (2 replicas)"
        rng = np.random.default_rng(3)
        asked = []
        for q in unit(rng, 12):
            for allowed in filters(rng, ids):
                rows = None if allowed is None else np.isin(served.row_ids(), allowed)
                for k in (1, 10, 100):
                    want = single.search(q, k, allowed)
                    got = served.search_rows(q, k, rows)
                    assert np.array_equal(got[1], want[1]), (k, None if allowed is None else len(allowed))
                    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-6)
                    np.testing.assert_array_equal(got[1], brute(vectors, ids, q, k, allowed)[1])
                    asked.append((q, k, rows, want[1]))
        assert len(asked) == 12 * 13 * 3
        # four client threads at once, as searchd's request threads: every answer still the exact one
        with ThreadPoolExecutor(max_workers=4) as pool:
            found = list(pool.map(lambda a: served.search_rows(a[0], a[1], a[2])[1], asked[::5]))
        assert all(np.array_equal(f, a[3]) for f, a in zip(found, asked[::5]))
        ask = np.array([ids[-1], 12345678901, ids[0], ids[2000]])
        np.testing.assert_array_equal(served.vectors(ask), single.vectors(ask))
    finally:
        served.close()
        single.close()
    assert not ray.is_initialized(), "closing the last served shard stops the local cluster it started"


@needs_serve
@pytest.mark.slow
def test_searchd_on_served_shards_ranks_as_unsharded(settings, sample_dir, tmp_path):
    import ray

    plain = build_sample_index(settings.replace(index=dataclasses.replace(settings.index, dir=tmp_path / "plain")),
                               sample_dir)
    sharded_settings = with_shards(settings, 3)
    build_sample_index(sharded_settings, sample_dir).close()
    store, index, manifest = open_search_index(on_serve(sharded_settings))
    assert index.description == "3 shards x Flat on Ray Serve (1 replica)"
    with SearchService(store, index, KeywordEmbedder(), on_serve(sharded_settings), manifest) as service:
        assert dense_ranking(service) == dense_ranking(plain)
        assert dense_ranking(service, "warfarin bleeding", source="pubmed") == \
            dense_ranking(plain, "warfarin bleeding", source="pubmed")
        assert service.stats()["vectors"] == plain.stats()["vectors"]
    plain.close()
    assert not ray.is_initialized()


def test_bad_serve_settings_and_a_missing_extra_are_clear_errors(settings, sample_dir, monkeypatch):
    from indexer import cluster
    from indexer.shard_serve import check_serve

    for knob, value in (("replicas_per_shard", 0), ("cpus_per_replica", 0.0), ("gpus_per_replica", -1.0)):
        bad = settings.replace(cluster=dataclasses.replace(settings.cluster, **{knob: value}))
        with pytest.raises(ConfigError, match=f"{knob}={value}"):
            check_serve(bad)
    build_sample_index(with_shards(settings, 2), sample_dir).close()
    real = importlib.import_module

    def no_serve(name, *args, **kwargs):
        if name == "ray.serve":
            raise ImportError("No module named 'fastapi'", name="fastapi")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(cluster.importlib, "import_module", no_serve)
    with pytest.raises(ConfigError, match=r"cluster.serve_shards needs Ray Serve \(fastapi is not installed\).*"
                                          r"pip install -e \.\[cluster\]"):
        open_search_index(on_serve(with_shards(settings, 2)))


def test_the_embedded_default_does_not_import_ray(settings, sample_dir, tmp_path):
    """searchd on threads (serve_shards false, the default) never imports ray, even over a sharded index."""
    sharded_settings = with_shards(settings, 2)
    build_sample_index(sharded_settings, sample_dir).close()
    assert json.loads((settings.index.dir / pipeline.MANIFEST).read_text())["shards"]
    (tmp_path / "settings.pickle").write_bytes(pickle.dumps(sharded_settings))
    code = ("import pickle, sys; import searchd.server, searchd.service; from indexer.shards import open_search_index; "
            f"store, index, _ = open_search_index(pickle.load(open({str(tmp_path / 'settings.pickle')!r}, 'rb'))); "
            "assert type(index).__name__ == 'ShardedIndex', index; index.close(); store.close(); "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@needs_serve
@pytest.mark.slow
def test_shard_benchmark_serve_rows_agree_with_one_shard(settings):
    import ray

    from indexer.settings import IndexSettings
    from searchd.eval.shard_bench import format_shard_table, run_shard_bench

    rows = run_shard_bench(IndexSettings(), [1, 2], n=3000, dim=16, n_queries=8, clients=2, echo=lambda _: None,
                           serve=on_serve(settings, cpus=1.0))  # 2 shards x 1 CPU on 2 CPUs: the bench fits them
    assert [(r[0], r[6]) for r in rows[::3]] == [(1, "threads"), (1, "Ray Serve"), (2, "threads"), (2, "Ray Serve")]
    assert all(r[5] for r in rows) and all(r[2] <= r[3] and r[4] > 0 for r in rows)
    assert "| 2 | Ray Serve | 1% allowed |" in format_shard_table(rows, 3000, 16, 8, 2)
    assert not ray.is_initialized()
