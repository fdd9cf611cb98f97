"""searchd compare-runs: systems of two eval runs paired by query id."""
from __future__ import annotations

import json

import pytest

from indexer.errors import ReaderError
from searchd.eval.compare_runs import compare_runs, load_scores


def write_run(folder, system, scores):
    folder.mkdir()
    rows = [{"system": system, "query_id": q, "ndcg@10": s} for q, s in scores.items()]
    rows.append({"system": "other", "query_id": "q1", "ndcg@10": 0.0})
    (folder / "per_query.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_runs_are_paired_on_their_shared_queries(tmp_path):
    a = write_run(tmp_path / "a", "bm25", {"q1": 0.0, "q2": 0.5, "q3": 0.2})
    b = write_run(tmp_path / "b", "bm25", {"q1": 1.0, "q2": 0.5, "q4": 0.9})  # q3 and q4 are in one run only
    (c,) = compare_runs({"cut": (a, "bm25"), "long": (b, "bm25")}, ["ndcg@10"], 1000, 42)
    assert (c.a, c.b, c.n, c.wins, c.losses, c.ties) == ("cut", "long", 2, 0, 1, 1)
    assert c.mean_a == pytest.approx(0.25) and c.mean_b == pytest.approx(0.75)


def test_a_missing_system_or_folder_is_named(tmp_path):
    a = write_run(tmp_path / "a", "bm25", {"q1": 0.1})
    with pytest.raises(ReaderError, match="no system 'hybrid' in this run; it has bm25, other"):
        load_scores(a, "hybrid")
    with pytest.raises(ReaderError, match="not a `searchd eval` report folder"):
        load_scores(tmp_path, "bm25")
