"""Eval sets read from the data directory (eval/legal-queries) and the long-query sets: loader, format errors, spans."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from indexer.errors import ReaderError
from searchd.eval import long_sets, reader_sets

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_settings(settings, tmp_path, sample_dir):
    """Settings whose data directory holds the sample corpus as `sample/`."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample").symlink_to(sample_dir)
    return settings.replace(data=dataclasses.replace(settings.data, dir=data),
                            eval=dataclasses.replace(settings.eval, evalsets_dir=tmp_path / "evalsets"))


def write_set(folder: Path, corpora=None, queries=None, qrels="query-id\tcorpus-id\tscore\nq1\ts:bva-001\t2\n"):
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    manifest = {"name": "tiny", "corpora": corpora or [{"prefix": "s", "format": "beir", "path": "sample"}]}
    (folder / "corpora.json").write_text(json.dumps(manifest) if not isinstance(corpora, str) else corpora)
    (folder / "queries.jsonl").write_text(queries if queries is not None else
                                          json.dumps({"_id": "q1", "text": "PTSD stressor not verified"}) + "\n")
    (folder / "qrels" / "dev.tsv").write_text(qrels)
    return folder


def test_materialise_reads_the_corpus_from_the_data_directory(data_settings, tmp_path, sample_dir):
    folder = write_set(tmp_path / "set")
    assert reader_sets.is_reader_set(folder) and not reader_sets.is_reader_set(sample_dir)
    out = reader_sets.materialise(folder, "dev", data_settings)
    docs = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    sample = [json.loads(line) for line in (sample_dir / "corpus.jsonl").read_text().splitlines()]
    assert [d["_id"] for d in docs] == [f"s:{d['_id']}" for d in sample] and docs[0]["text"] == sample[0]["text"]
    assert (out / "qrels" / "dev.tsv").read_text() == (folder / "qrels" / "dev.tsv").read_text()
    stamp = (out / "corpus.jsonl").stat().st_mtime_ns
    reader_sets.materialise(folder, "dev", data_settings)  # unchanged manifest: the corpus is not rewritten
    assert (out / "corpus.jsonl").stat().st_mtime_ns == stamp


def test_doc_types_and_limit_select_documents(data_settings, tmp_path):
    folder = write_set(tmp_path / "set", [{"prefix": "s", "format": "beir", "path": "sample", "doc_types": ["decision"]},
                                          {"prefix": "t", "format": "beir", "path": "sample", "limit": 2}])
    docs = list(reader_sets.records(folder, data_settings))
    decisions = [d for d in docs if d["_id"].startswith("s:")]
    assert decisions and all(d["metadata"]["doc_type"] == "decision" for d in decisions)
    assert len([d for d in docs if d["_id"].startswith("t:")]) == 2


@pytest.mark.parametrize("corpora, qrels, queries, message", [
    ("{not json", None, None, "invalid JSON"),
    ([{"prefix": "s", "format": "nope", "path": "sample"}], None, None, "unknown format 'nope'"),
    ([{"prefix": "s", "format": "beir", "path": "sample"}, {"prefix": "s", "format": "beir", "path": "sample"}],
     None, None, "prefix 's' must be unique"),
    ([{"prefix": "s", "format": "beir"}], None, None, "corpora entry 1"),
    ([{"prefix": "s", "format": "beir", "path": "missing"}], None, None, "not in the data directory"),
    (None, "query-id\tcorpus-id\tscore\nq1\ts:bva-001\t3\n", None, "line 2"),
    (None, "q1\ts:bva-001\t1\nq1\ts:bva-001\t2\n", None, "judged twice"),
    (None, "q1\ts:nowhere\t1\n", None, "judges 's:nowhere'"),
    (None, "q9\ts:bva-001\t1\n", None, "query 'q9' is judged"),
    (None, None, '{"_id": "q1"}\n', "line 1"),
    (None, None, '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n', "appears twice"),
])
def test_format_errors_name_the_problem(data_settings, tmp_path, corpora, qrels, queries, message):
    kwargs = {"qrels": qrels} if qrels is not None else {}
    folder = write_set(tmp_path / "set", corpora, queries, **kwargs)
    with pytest.raises(ReaderError, match=message):
        reader_sets.materialise(folder, "dev", data_settings)


def test_the_legal_query_set_in_the_repository_is_well_formed():
    folder = REPO / "eval" / "legal-queries"
    manifest = reader_sets.read_manifest(folder)
    queries, qrels = reader_sets.read_queries(folder), reader_sets.read_qrels(folder, "dev")
    assert {c["prefix"] for c in manifest["corpora"]} == {"bva", "nv", "nm"}
    assert set(qrels) <= set(queries) and len(queries) >= 40
    with_relevant = [q for q, docs in qrels.items() if any(g > 0 for g in docs.values())]
    assert len(with_relevant) >= 40
    for prefix in ("bva", "nv", "nm"):  # queries written for each corpus
        assert sum(q.startswith(prefix) for q in queries) >= 10
    for docs in qrels.values():  # ids stable across imports: <prefix>:<reader id>, never text
        assert all(d.split(":", 1)[0] in {"bva", "nv", "nm"} and len(d) < 80 for d in docs)


BVA = ("THE ISSUE\nEntitlement to service connection for PTSD.\n\nFINDING OF FACT\nThe stressor is not verified.\n\n"
       "REASONS AND BASES FOR FINDING AND CONCLUSION\n"
       + "The Veteran served as a cook in Germany and reports a fire in his barracks. " * 40
       + "\n\nORDER\nService connection for PTSD is denied.\n")


def test_long_query_spans_end_at_a_sentence_and_leave_the_rest():
    start, end = long_sets.bva_span(BVA, max_chars=1000)
    passage = BVA[start:end]
    assert passage.lstrip().startswith("The Veteran served") and passage.endswith(".") and len(passage) <= 1000
    nm = "OPINIONX, Judge.{1} We reverse.FACTS{2} " + "Worker fell from a ladder at work. " * 60 + "DISCUSSION{3} We hold."
    start, end = long_sets.nm_span(nm, max_chars=5000)
    assert nm[start:end].strip().startswith("Worker fell") and nm[end:].lstrip().startswith("DISCUSSION")
    assert long_sets.nm_span("OPINION without a statement of facts.") is None


def test_the_query_passage_is_removed_from_its_own_document(tmp_path):
    folder = tmp_path / "bva"
    folder.mkdir()
    (folder / "0012345.txt").write_text(BVA)
    (folder / "0012346.txt").write_text(BVA.replace("REASONS AND BASES", "REMAND"))  # no passage: a distractor
    data = long_sets.long_query_set("bva", folder, "bva-long", min_chars=500)
    assert list(data.queries) == ["bva:0012345"] and data.qrels == {"bva:0012345": {"bva:0012345": 1}}
    target = next(d for d in data.corpus if d["_id"] == "bva:0012345")
    assert data.queries["bva:0012345"][:200] not in " ".join(target["text"].split())
    assert "Service connection for PTSD is denied" in target["text"] and len(data.corpus) == 2
    with pytest.raises(ReaderError, match="long-query sets are made from"):
        long_sets.long_query_set("beir", folder, "x")


def test_pool_lists_each_systems_unjudged_top_hits(data_settings, tmp_path):
    from searchd.eval.pool import pool, write_pool

    folder = write_set(tmp_path / "set", queries=json.dumps({"_id": "q1", "text": "PTSD stressor veteran"}) + "\n")
    beir = reader_sets.materialise(folder, "dev", data_settings)
    s = data_settings.replace(eval=dataclasses.replace(data_settings.eval, index_dir=tmp_path / "eval-index"))
    candidates = pool(beir, "dev", s, ["bm25"], depth=3)  # keyword only: the store is built, nothing encoded
    assert 0 < len(candidates) <= 3 and all(c["query_id"] == "q1" for c in candidates)
    assert "s:bva-001" not in {c["doc"] for c in candidates}  # already judged in qrels/dev.tsv
    assert all(c["ranks"]["bm25"] >= 1 and c["passages"] and c["title"] is not None for c in candidates)
    lines = write_pool(candidates, tmp_path / "out").read_text().splitlines()
    assert [json.loads(line)["doc"] for line in lines] == [c["doc"] for c in candidates]
