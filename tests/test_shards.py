"""Sharded exact search: the merged top k of N shards equals the single index's exact top k; shards in index dirs."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from search_fixtures import KeywordEmbedder, build_sample_index, sample_chunker

from indexer import pipeline
from indexer.documents import Document
from indexer.errors import ConfigError, IndexMismatchError
from indexer.settings import IndexSettings
from indexer.shards import ShardedIndex, merge_top_k, open_search_index, plan_bounds, reshard, split
from indexer.vector_index import FaissIndex
from searchd.cli import main as searchd_main
from searchd.query import Query
from searchd.service import SearchService

DIM = 32
N = 4000


def unit(rng, n):
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(11)
    ids = np.sort(rng.choice(10**8, N, replace=False)).astype(np.int64)  # sparse ids, like a store's after deletions
    return unit(rng, N), ids


def record(kind, vectors, ids, **knobs):
    settings = IndexSettings(**knobs)
    index = FaissIndex.create(DIM, kind, settings, len(ids))
    index.add(vectors, ids)
    return index, settings


def sharded(index, n, settings):
    return ShardedIndex([shard for _, shard in split(index, plan_bounds(index.ids(), n), settings)])


def filters(rng, ids):
    """Random allowed sets from one id to all of them, some inside one id range (one shard), some spread out."""
    out = [None, ids]
    for share in (1 / N, 0.0005, 0.002, 0.01, 0.03, 0.1, 0.4, 0.9):
        out.append(rng.choice(ids, max(1, int(share * N)), replace=False))
    start = int(rng.integers(0, N - 60))
    out += [ids[start:start + 3], ids[start:start + 60], ids[: N // 3]]  # contiguous: one or two shards only
    return out


def brute(vectors, ids, q, k, allowed):
    keep = np.ones(len(ids), bool) if allowed is None else np.isin(ids, allowed)
    scores, kept = vectors[keep] @ q, ids[keep]
    order = np.lexsort((kept, -scores))[:k]
    return scores[order], kept[order]


@pytest.mark.parametrize("n_shards", [2, 3, 4])
def test_merged_flat_top_k_equals_the_single_index(corpus, n_shards):
    vectors, ids = corpus
    single, settings = record("flat", vectors, ids)
    shards = sharded(single, n_shards, settings)
    assert shards.ntotal == N and shards.exact and np.array_equal(np.sort(shards.row_ids()), ids)
    rng = np.random.default_rng(n_shards)
    checked = 0
    for q in unit(rng, 40):
        for allowed in filters(rng, ids):
            for k in (1, 10, 100):
                want = single.search(q, k, allowed)
                got = shards.search(q, k, allowed)
                rows = None if allowed is None else np.isin(shards.row_ids(), allowed)
                by_rows = shards.search_rows(q, k, rows)
                truth = brute(vectors, ids, q, k, allowed)
                for found in (got, by_rows):
                    assert np.array_equal(found[1], want[1]) and np.array_equal(found[1], truth[1])
                    np.testing.assert_allclose(found[0], want[0], rtol=0, atol=1e-6)
                checked += 1
    assert checked == 40 * 13 * 3
    shards.close()


def test_hnsw_shards_are_exact_on_the_exact_paths(corpus):
    """HNSW shards scan exactly when few rows are allowed; the merge is then the exact top k."""
    vectors, ids = corpus
    single, settings = record("hnsw", vectors, ids, exact_below_fraction=0.1)
    shards = sharded(single, 4, settings)
    rng = np.random.default_rng(5)
    for q in unit(rng, 30):
        # at most k allowed, or 1% spread over every shard (well under 10% of each): both scan exactly
        for allowed in (rng.choice(ids, 1), rng.choice(ids, 7), rng.choice(ids, 40, replace=False), ids[100:108]):
            want = brute(vectors, ids, q, 10, allowed)
            got = shards.search(q, 10, allowed)
            assert np.array_equal(got[1], want[1])
            np.testing.assert_allclose(got[0], want[0], atol=1e-6)
            assert np.array_equal(single.search(q, 10, allowed)[1], want[1])


def test_merge_breaks_ties_by_smaller_id_and_handles_empty_shards():
    scores, ids = merge_top_k([(np.array([0.5, 0.4], np.float32), np.array([9, 3])),
                               (np.zeros(0, np.float32), np.zeros(0, np.int64)),
                               (np.array([0.5, 0.1], np.float32), np.array([2, 8]))], 3)
    assert ids.tolist() == [2, 9, 3] and scores.tolist() == pytest.approx([0.5, 0.5, 0.4])
    assert plan_bounds(np.array([5, 6, 7, 8], np.int64), 2) == [0, 7]
    assert plan_bounds(np.array([5], np.int64), 3) == [0, 5, 5]  # more shards than chunks: empty shards


def test_vectors_come_back_in_the_order_asked(corpus):
    vectors, ids = corpus
    single, settings = record("flat", vectors, ids)
    shards = sharded(single, 3, settings)
    ask = np.array([ids[-1], 12345678901, ids[0], ids[2000]])  # one id not in the index: skipped
    np.testing.assert_array_equal(shards.vectors(ask), single.vectors(ask))
    with pytest.raises(IndexMismatchError, match="row mask of 3 rows"):
        shards.search_rows(vectors[0], 5, np.ones(3, bool))


def with_shards(settings, n, **knobs):
    return settings.replace(index=dataclasses.replace(settings.index, shards=n, **knobs))


def dense_ranking(service, q="veteran PTSD warfarin doctor", **filters):
    """Hits by rank; the keyword fake scores unrelated chunks 0, a tie FAISS leaves in any order, so those are a set."""
    query = Query(q, "dense", k=12, filters={key: [v] for key, v in filters.items()})
    hits = [(h.external_id, round(h.score, 6)) for h in service.search(query).hits]
    return [h for h in hits if h[1] > 0], sorted(h for h in hits if h[1] <= 0)


def test_build_writes_shards_and_searchd_answers_as_unsharded(settings, sample_dir, tmp_path):
    plain = build_sample_index(settings.replace(index=dataclasses.replace(settings.index, dir=tmp_path / "plain")),
                               sample_dir)
    sharded_settings = with_shards(settings, 3)
    build_sample_index(sharded_settings, sample_dir).close()
    manifest = json.loads((settings.index.dir / pipeline.MANIFEST).read_text())
    assert len(manifest["shards"]) == 3 and sum(s["vectors"] for s in manifest["shards"]) == manifest["vectors"]
    assert all((settings.index.dir / s["file"]).is_file() for s in manifest["shards"])
    store, index, manifest = open_search_index(sharded_settings)
    assert isinstance(index, ShardedIndex) and index.description == "3 shards x Flat"
    service = SearchService(store, index, KeywordEmbedder(), sharded_settings, manifest)
    assert dense_ranking(service) == dense_ranking(plain)
    assert dense_ranking(service, "warfarin bleeding", source="pubmed") == \
        dense_ranking(plain, "warfarin bleeding", source="pubmed")
    service.close()
    plain.close()


def test_changes_rewrite_only_the_shards_they_touch_and_reshard_cuts_afresh(settings, sample_dir):
    settings = with_shards(settings, 2)
    build_sample_index(settings, sample_dir).close()
    d = settings.index.dir
    before = json.loads((d / pipeline.MANIFEST).read_text())["shards"]
    new = Document("new-1", "Lithium toxicity", "Chronic lithium therapy caused kidney injury.", {"date": "2020"})
    pipeline.change(settings, KeywordEmbedder(), "sample", [new], [], sample_chunker)
    after = json.loads((d / pipeline.MANIFEST).read_text())["shards"]
    assert after[0] == before[0], "the first range did not change: its file is kept"
    assert after[1]["file"] != before[1]["file"] and after[1]["vectors"] == before[1]["vectors"] + 1
    assert not (d / before[1]["file"]).exists(), "the replaced shard file is pruned"
    store, index, manifest = open_search_index(settings)
    service = SearchService(store, index, KeywordEmbedder(), settings, manifest)
    assert service.search(Query("lithium kidney", "dense", k=1)).hits[0].external_id == "new-1"
    service.close()
    m = reshard(with_shards(settings, 4))
    assert len(m["shards"]) == 4 and len(list((d / "shards").glob("*.faiss"))) == 4
    m = reshard(with_shards(settings, 1))
    assert "shards" not in m and not list((d / "shards").glob("*.faiss"))
    store, index, _ = open_search_index(settings)
    assert isinstance(index, FaissIndex)
    store.close()


def test_load_refuses_missing_or_stale_shards(settings, sample_dir):
    settings = with_shards(settings, 2)
    build_sample_index(settings, sample_dir).close()
    d = settings.index.dir
    listed = json.loads((d / pipeline.MANIFEST).read_text())["shards"]
    store = pipeline.open_store(settings)
    store.apply_changes("sample", [], ["bva-001"], sample_chunker, lambda added, removed: None)  # store moves on
    store.close()
    with pytest.raises(IndexMismatchError, match="shards hold .* run `indexer build`"):
        open_search_index(settings)
    (d / listed[0]["file"]).unlink()
    with pytest.raises(IndexMismatchError, match="missing .*indexer reshard"):
        open_search_index(settings)
    with pytest.raises(ConfigError, match="index.shards must be .* at least 1"):
        reshard(with_shards(settings, 0))


def test_cli_reshard(settings, sample_dir):
    from indexer.cli import main
    from tests.conftest import REPO

    build_sample_index(settings, sample_dir).close()
    base = ["--config", str(REPO / "config.toml"), "--set", f'index.dir="{settings.index.dir}"']
    result = CliRunner().invoke(main, ["reshard", "3", *base])
    assert result.exit_code == 0, result.output
    assert "shard 2:" in result.output and "in 3 shards" in result.output
    assert "set index.shards = 3" in result.output
    result = CliRunner().invoke(main, ["reshard", "0", *base])
    assert result.exit_code == 1 and "index.shards must be" in result.output


def test_shard_benchmark_rows_agree_with_one_shard():
    from searchd.eval.shard_bench import format_shard_table, run_shard_bench

    rows = run_shard_bench(IndexSettings(), [1, 2, 4], n=3000, dim=16, n_queries=8, clients=2, echo=lambda _: None)
    assert [(r[0], r[1]) for r in rows[:3]] == [(1, "none"), (1, "10% allowed"), (1, "1% allowed")]
    assert len(rows) == 9 and all(r[5] for r in rows) and all(r[2] <= r[3] and r[4] > 0 for r in rows)
    table = format_shard_table(rows, 3000, 16, 8, 2)
    assert "| 4 | threads | 1% allowed |" in table and "load average" in table and "NO" not in table
    result = CliRunner().invoke(searchd_main, ["bench", "--shards", "1,x"])
    assert result.exit_code == 1 and "not a list of shard counts" in result.output
    result = CliRunner().invoke(searchd_main, ["bench", "--serve"])
    assert result.exit_code == 1 and "--serve goes with --shards" in result.output
