"""FaissIndex: filtered search equals brute force at every selectivity, removal, tombstones, save/load."""
from __future__ import annotations

import numpy as np
import pytest

from indexer.errors import ConfigError, IndexMismatchError
from indexer.settings import IndexSettings
from indexer.vector_index import FaissIndex, factory_string

DIM = 32


def unit(rng, n):
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(vectors, ids, q, k, allowed):
    """Exact top k over the allowed rows, by score then id."""
    keep = np.isin(ids, allowed)
    scores, kept = vectors[keep] @ q, ids[keep]
    order = np.lexsort((kept, -scores))[:k]
    return scores[order], kept[order]


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    n = 3000
    ids = np.sort(rng.choice(10**9, n, replace=False)).astype(np.int64)  # sparse, large ids
    return rng, unit(rng, n), ids


def make(kind, vectors, ids, **knobs):
    settings = IndexSettings(**knobs)
    index = FaissIndex.create(DIM, kind, settings, len(ids))
    index.train(vectors)
    index.add(vectors, ids)
    return index


@pytest.mark.parametrize("fraction", [1 / 3000, 0.001, 0.01, 0.03, 0.05, 0.3, 0.9, 1.0])
def test_flat_filtered_search_is_exact_at_every_selectivity(data, fraction):
    rng, vectors, ids = data
    index = make("flat", vectors, ids)
    for _ in range(5):
        allowed = rng.choice(ids, max(1, int(fraction * len(ids))), replace=False)
        q = unit(rng, 1)[0]
        scores, got = index.search(q, 10, allowed)
        want_scores, want = brute(vectors, ids, q, 10, allowed)
        assert set(got) <= set(allowed), "every hit is in the allowed set"
        assert got.tolist() == want.tolist(), "none of the allowed top k is missing"
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_both_plans_are_used_and_agree(data):
    rng, vectors, ids = data
    scan = make("flat", vectors, ids, exact_below_fraction=1.0)  # always the numpy scan
    bitmap = make("flat", vectors, ids, exact_below_fraction=0.0)  # always the IDSelectorBitmap
    allowed = rng.choice(ids, 500, replace=False)
    q = unit(rng, 1)[0]
    a, b = scan.search(q, 20, allowed), bitmap.search(q, 20, allowed)
    assert a[1].tolist() == b[1].tolist()


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_a_split_flat_search_gives_the_one_thread_top_k(data, monkeypatch, threads):
    """Row ranges searched at once and merged: brute force's top k, unfiltered, filtered, and skewed filters."""
    import indexer.vector_index as vector_index

    rng, vectors, ids = data
    monkeypatch.setattr(vector_index, "PARALLEL_SCAN_ROWS", 400)  # split these 3,000 rows as 100,000 would be
    split = make("flat", vectors, ids, scan_threads=threads, exact_below_fraction=0.0)
    calls = []
    real = split._parallel_flat
    monkeypatch.setattr(split, "_parallel_flat", lambda *a: calls.append(a[3]) or real(*a))
    late = ids[int(0.8 * len(ids)):]  # every allowed row in the last fifth: ranges by allowed count, not by row
    for allowed in (None, rng.choice(ids, 2000, replace=False), rng.choice(ids, 500, replace=False), late):
        for _ in range(3):
            q = unit(rng, 1)[0]
            got_scores, got = split.search(q, 25, allowed)
            want_scores, want = brute(vectors, ids, q, 25, ids if allowed is None else allowed)
            assert got.tolist() == want.tolist()
            np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
    assert len(calls) == 12, "every one of these searches was split"
    one = make("flat", vectors, ids, scan_threads=1)
    monkeypatch.setattr(one, "_parallel_flat", lambda *a: pytest.fail("scan_threads = 1 never splits"))
    one.search(unit(rng, 1)[0], 5)
    with pytest.raises(ConfigError, match="index.scan_threads"):
        make("flat", vectors, ids, scan_threads=-1).search(unit(rng, 1)[0], 5)


def test_unfiltered_and_k_larger_than_allowed(data):
    rng, vectors, ids = data
    index = make("flat", vectors, ids)
    q = unit(rng, 1)[0]
    assert index.search(q, 5)[1].tolist() == brute(vectors, ids, q, 5, ids)[1].tolist()
    few = ids[:3]
    assert sorted(index.search(q, 10, few)[1].tolist()) == sorted(few.tolist())
    assert len(index.search(q, 10, np.array([12345], dtype=np.int64))[1]) == 0  # an id not in the index


def test_remove_and_save_load(tmp_path, data):
    rng, vectors, ids = data
    index = make("flat", vectors, ids)
    gone = ids[::2]
    index.remove(gone)
    assert index.ntotal == len(ids) - len(gone)
    q = unit(rng, 1)[0]
    live = ids[1::2]
    assert index.search(q, 10)[1].tolist() == brute(vectors, ids, q, 10, live)[1].tolist()
    index.save(tmp_path / "v.faiss")
    again = FaissIndex.load(tmp_path / "v.faiss", IndexSettings(), "Flat")
    assert again.ids().tolist() == live.tolist()
    np.testing.assert_allclose(again.vectors(live[:3]), vectors[1::2][:3])
    with pytest.raises(IndexMismatchError, match="already in the index"):
        again.add(vectors[1:2], ids[1:2])


def test_hnsw_tombstones_never_returned_and_compact(data):
    rng, vectors, ids = data
    index = make("hnsw", vectors, ids, hnsw_m=16)
    assert not index.can_remove and not index.exact
    gone = ids[:1500]
    index.remove(gone)
    assert len(index.tombstones) == 1500 and index.ntotal == 1500
    for _ in range(5):
        q = unit(rng, 1)[0]
        got = index.search(q, 10)[1]
        assert not set(got) & set(gone)
        small = rng.choice(ids[1500:], 5, replace=False)  # a narrow filter is scanned exactly, even on HNSW
        assert index.search(q, 10, small)[1].tolist() == brute(vectors, ids, q, 10, small)[1].tolist()
    fresh = index.compact()
    assert len(fresh.tombstones) == 0 and fresh.ids().tolist() == ids[1500:].tolist()


def test_hnsw_recall_against_exact(data):
    """ANN is reported against exact search rather than assumed: recall@10 stays high on this data."""
    rng, vectors, ids = data
    hnsw, flat = make("hnsw", vectors, ids, hnsw_m=16, hnsw_ef_search=64), make("flat", vectors, ids)
    found = 0
    for _ in range(20):
        q = unit(rng, 1)[0]
        found += len(set(hnsw.search(q, 10)[1]) & set(flat.search(q, 10)[1]))
    assert found / 200 >= 0.9


def test_ivf_trains_removes_and_scans(data):
    rng, vectors, ids = data
    index = make("ivf", vectors, ids, ivf_nprobe=64)
    assert index.can_remove and index.description.startswith("IVF")
    index.remove(ids[:10])
    small = ids[10:20]
    q = unit(rng, 1)[0]
    assert index.search(q, 5, small)[1].tolist() == brute(vectors, ids, q, 5, small)[1].tolist()


def test_factory_strings_and_bad_type():
    s = IndexSettings(auto_flat_below=100)
    assert factory_string("auto", 50, s) == "Flat" and factory_string("auto", 500, s) == "HNSW32"
    assert factory_string("IVF4,Flat", 10, s) == "IVF4,Flat"
    with pytest.raises(ConfigError, match="'nonsense'"):
        FaissIndex.create(DIM, "nonsense", s, 10)


def test_close_frees_the_vectors_and_a_with_block_closes(data):
    rng, vectors, ids = data
    with make("hnsw", vectors, ids) as index:
        index.remove(ids[:3])  # HNSW keeps tombstones; closing drops them too
        assert index.ntotal == len(ids) - 3
    assert index.ntotal == 0 and len(index.ids()) == 0
    scores, got = index.search(vectors[0], 5)
    assert len(got) == 0
    index.close()  # closing twice is harmless


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("fraction", [0.001, 0.03, 0.3, 1.0])
def test_row_masks_plan_like_ids(data, kind, fraction):
    """search_rows with a boolean row mask answers what search with the same ids does, on every plan."""
    rng, vectors, ids = data
    index = make(kind, vectors, ids, hnsw_m=16, ivf_nprobe=64)
    index.remove(ids[:7])  # tombstones on HNSW, real removal elsewhere: masks must exclude both
    for _ in range(3):
        allowed = rng.choice(ids, max(1, int(fraction * len(ids))), replace=False)
        q = unit(rng, 1)[0]
        rows = np.isin(index.row_ids(), allowed)
        by_rows, by_ids = index.search_rows(q, 10, rows), index.search(q, 10, allowed)
        assert by_rows[1].tolist() == by_ids[1].tolist()
        live = np.setdiff1d(allowed, ids[:7])
        assert set(by_rows[1]) <= set(live), "every hit is in the allowed set"
        assert len(by_rows[1]) == min(10, len(live)), "never short of the allowed set"
        exact_share = index.settings.exact_below_fraction if kind != "hnsw" else \
            max(index.settings.exact_below_fraction, index.settings.graph_exact_below_fraction)
        if kind == "flat" or len(live) <= exact_share * index.ntotal:
            assert by_rows[1].tolist() == brute(vectors, ids, q, 10, live)[1].tolist(), "exact plans are exact"


def test_row_ids_are_fixed_per_version(data):
    rng, vectors, ids = data
    index = make("flat", vectors, ids)
    before, version = index.row_ids(), index.version
    assert not before.flags.writeable
    index.remove(ids[:2])
    assert index.version != version and len(index.row_ids()) == len(ids) - 2
    hnsw = make("hnsw", vectors, ids, hnsw_m=16)
    version = hnsw.version
    hnsw.remove(ids[:2])  # a tombstone changes which rows are live, so the version moves too
    assert hnsw.version != version


def test_a_stranded_hnsw_walk_falls_back_to_the_exact_scan(data):
    """A bitmap HNSW walk through a graph whose allowed nodes are cut off returns fewer than k: scan instead."""
    rng, vectors, ids = data
    index = make("hnsw", vectors, ids, hnsw_m=4, hnsw_ef_search=4, exact_below_fraction=0.0,
                 graph_exact_below_fraction=0.0)  # the walk, never the storage scan
    far = np.argsort(vectors @ vectors[0])[:40]  # the rows least like the query
    rows = np.zeros(len(ids), dtype=bool)
    rows[far] = True
    got = index.search_rows(vectors[0], 30, rows)[1]
    assert got.tolist() == brute(vectors, ids, vectors[0], 30, ids[far])[1].tolist()


@pytest.mark.parametrize("threads", [1, 2])
def test_hnsw_scores_a_filter_up_to_its_share_exactly_in_the_flat_storage(data, monkeypatch, threads):
    """Up to graph_exact_below_fraction allowed, an HNSW search is brute force's top k (one thread or split), and
    never walks the graph; above it, the walk runs."""
    import indexer.vector_index as vector_index

    rng, vectors, ids = data
    monkeypatch.setattr(vector_index, "PARALLEL_SCAN_ROWS", 400)  # split these 3,000 rows as 100,000 would be
    index = make("hnsw", vectors, ids, hnsw_m=4, hnsw_ef_search=8, exact_below_fraction=0.01,
                 graph_exact_below_fraction=0.4, scan_threads=threads)
    walks = []
    real = index.search_bitmap
    monkeypatch.setattr(index, "search_bitmap", lambda *a: walks.append(len(a)) or real(*a))
    index.remove(ids[:5])  # tombstones stay excluded
    for share in (0.05, 0.2, 0.39):
        allowed = rng.choice(ids, int(share * len(ids)), replace=False)
        q = unit(rng, 1)[0]
        scores, got = index.search(q, 30, allowed)
        want_scores, want = brute(vectors, ids, q, 30, np.setdiff1d(allowed, ids[:5]))
        assert got.tolist() == want.tolist()
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)
    assert not walks, "no graph walk at or under the share"
    index.search(unit(rng, 1)[0], 30, rng.choice(ids, int(0.6 * len(ids)), replace=False))
    assert walks, "above the share the graph is walked"


def _cuda() -> bool:
    from indexer.torch_scan import cuda_available

    return cuda_available()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not _cuda(), reason="no CUDA device (no GPU was lent to this machine)"))])
@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_torch_scan_gives_the_cpu_index_top_k(data, kind, device):
    """The GPU copy without faiss-gpu (an exact torch scan) returns what the exact CPU plan returns."""
    rng, vectors, ids = data
    cpu = make(kind, vectors, ids)
    scan = make(kind, vectors, ids)
    if device == "cuda":
        assert scan.to_gpu() in ("torch", "faiss")
    else:
        scan.use_torch_scan("cpu")
    dead = ids[:50]
    cpu.remove(dead)
    scan.remove(dead)  # a change drops the copy (stale); make it again over the live rows
    scan.use_torch_scan(device)
    for fraction in (None, 0.001, 0.03, 0.3, 1.0):
        q = unit(rng, 1)[0]
        allowed = None if fraction is None else rng.choice(ids, max(1, int(fraction * len(ids))), replace=False)
        want_scores, want = brute(vectors, ids, q, 10, np.setdiff1d(ids if allowed is None else allowed, dead))
        scores, got = scan.search(q, 10, allowed)
        assert got.tolist() == want.tolist()
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
        if kind == "flat":  # the CPU flat index is exact: the same top k
            assert cpu.search(q, 10, allowed)[1].tolist() == got.tolist()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_a_memory_mapped_index_searches_refuses_changes_and_closes(tmp_path, data, kind):
    rng, vectors, ids = data
    index = make(kind, vectors, ids)
    index.save(tmp_path / "v.faiss")
    mapped = FaissIndex.load(tmp_path / "v.faiss", IndexSettings(), index.description, mmap=True)
    q = unit(rng, 1)[0]
    allowed = rng.choice(ids, 900, replace=False)
    assert mapped.search(q, 10)[1].tolist() == index.search(q, 10)[1].tolist()
    assert mapped.search(q, 10, allowed)[1].tolist() == index.search(q, 10, allowed)[1].tolist()
    np.testing.assert_array_equal(mapped.vectors(ids[:5]), vectors[:5])  # read in place, no copy
    with pytest.raises(IndexMismatchError, match="memory-mapped read-only"):
        mapped.add(vectors[:1], np.array([1], dtype=np.int64))
    with pytest.raises(IndexMismatchError, match="memory-mapped read-only"):
        mapped.remove(ids[:1])
    mapped.close()  # FAISS would abort the process on reset() of mapped vectors
    assert mapped.ntotal == 0 and len(mapped.search(q, 10)[1]) == 0
