"""Evaluation: eval sets, paging through search, scoring a fake searcher by hand, significance, reports, end to end."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.documents import validate_mentions
from indexer.errors import ConfigError, ReaderError
from indexer.readers import ReadOptions, read
from indexer.readers.beir import load_qrels, load_queries
from searchd.eval import evalsets
from searchd.eval.indexes import ann_recall, entity_filters
from searchd.eval.report import compare, markdown, write_report
from searchd.eval.evaluate import EvalData, check_systems, fetch_ranking, load_eval_data, run_system, system_summary
from searchd.eval.metrics import Cutoffs

PUBTATOR = """111|t|Lithium toxicity in a newborn.
111|a|A newborn with lithium toxicity and atrial flutter is described.
111\t0\t7\tLithium\tChemical\tD008094
111\t8\t16\ttoxicity\tDisease\tD064420
111\t54\t62\ttoxicity\tDisease\tD064420
111\t67\t81\tatrial flutter\tDisease\tD001282

222|t|Warfarin and bleeding.
222|a|Bleeding after warfarin.
222\t0\t8\tWarfarin\tChemical\tD014859
222\t23\t31\tBleeding\tDisease\tD006470
"""


def test_pubtator_title_to_abstract(tmp_path):
    src = tmp_path / "tiny.PubTator.txt"
    src.write_text(PUBTATOR)
    data = evalsets.from_pubtator(src, "tiny", {"Chemical": "Drug"})
    counts = evalsets.write_beir(data, tmp_path / "out", "dev")
    assert counts == {"documents": 2, "queries": 2, "judgments": 2}
    out = tmp_path / "out"
    assert load_queries(out) == {"111": "Lithium toxicity in a newborn.", "222": "Warfarin and bleeding."}
    assert load_qrels(out, "dev") == {"111": {"111": 1}, "222": {"222": 1}}
    docs = {d.id: d for d in read("beir", out, ReadOptions())}
    assert docs["111"].text == "A newborn with lithium toxicity and atrial flutter is described."
    assert docs["111"].title == ""  # the query must not be inside its answer
    # title mentions (Lithium, the first toxicity) are dropped; abstract ones shifted by len(title) + 1 = 31
    assert [(m.text, m.start, m.label) for m in docs["111"].mentions] == [("toxicity", 23, "Disease"),
                                                                        ("atrial flutter", 36, "Disease")]
    assert all(not validate_mentions(d) for d in docs.values())


def _medquad_file(path: Path) -> Path:
    rows = []
    for page in range(20):
        for q in range(3):  # three questions per page; page 0 has one without an answer
            answer = "" if (page, q) == (0, 2) else f"answer {page}-{q}"
            rows.append({"doc_id": f"{page:04d}", "source": "S", "qid": f"{page:04d}-{q}", "focus": f"f{page}",
                         "qtype": "t", "question": f"question {page}-{q}?", "answer": answer})
    rows.append({"doc_id": "0019", "source": "S", "qid": "0019-9", "focus": "f", "qtype": "t",
                 "question": "same answer again?", "answer": "answer 19-0"})  # an identical answer is merged
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_medquad_folds_split_by_page_and_merge_identical_answers(tmp_path):
    src = _medquad_file(tmp_path / "mq.jsonl")
    dev = evalsets.from_medquad(src, "mq", "dev", 0.2, 42)
    train = evalsets.from_medquad(src, "mq", "train", 0.2, 42)
    pages = lambda s: {q.split(":")[1][:4] for q in s.queries}  # noqa: E731
    assert len(pages(dev)) == 4  # round(20 pages * 0.2)
    assert pages(dev).isdisjoint(pages(train)) and len(pages(dev) | pages(train)) == 20
    everything = evalsets.from_medquad(src, "mq", "all", 0.2, 42)
    assert len(everything.queries) == 60  # 61 questions, one unanswered
    assert len(everything.corpus) == 59  # 60 answered, two share one answer
    assert everything.qrels["S:0019-9"] == everything.qrels["S:0019-0"]
    assert evalsets.from_medquad(src, "mq", "dev", 0.2, 42).queries == dev.queries  # seeded: same every time
    with pytest.raises(ConfigError, match="unknown fold 'test'.*'dev'"):
        evalsets.from_medquad(src, "mq", "test", 0.2, 42)


def test_dev_fold_is_the_embedders_draw():
    from indexer.train.pairs import split_ids

    ids = [str(i) for i in range(809)]
    dev = evalsets.dev_fold(ids, 0.2, 42)
    assert len(dev) == 162  # int(round(809 * 0.2))
    train_side, dev_side = split_ids(reversed(ids), 0.2, 42)  # the order ids arrive in does not matter
    assert dev == dev_side and train_side == set(ids) - dev
    # pinned: a changed draw would silently move queries the embedder trained on into the dev fold
    assert sorted(dev, key=int)[:8] == ["6", "7", "9", "11", "12", "28", "29", "37"]
    with pytest.raises(ConfigError, match="dev fraction 1.5"):
        evalsets.dev_fold(ids, 1.5, 42)


def test_sample_and_fold_of_a_beir_split(sample_dir, settings):
    data = load_eval_data(sample_dir, "test", settings, max_queries=4)
    assert len(data.queries) == 4 and data.judged == 6
    assert data.queries == load_eval_data(sample_dir, "test", settings, max_queries=4).queries
    fold = load_eval_data(sample_dir, "test", settings, fold="dev")
    rest = load_eval_data(sample_dir, "test", settings, fold="train")
    assert len(fold.queries) == 1 and set(fold.queries).isdisjoint(rest.queries)  # round(6 * 0.2) = 1
    wider = settings.replace(train_embedder=dataclasses.replace(settings.train_embedder, dev_fraction=0.5))
    assert len(load_eval_data(sample_dir, "test", wider, fold="dev").queries) == 3  # the embedder's fraction
    with pytest.raises(ReaderError, match="no qrels for split 'dev'; available splits: test"):
        load_eval_data(sample_dir, "dev", settings)
    with pytest.raises(ConfigError, match="unknown eval system 'bm52'.*'bm25'"):
        check_systems(["bm52"])


@dataclass
class FakeHit:
    external_id: str


@dataclass
class FakeResult:
    hits: list


@dataclass
class FakeQuery:
    q: str
    mode: str
    k: int
    offset: int
    filters: dict


class FakeSearcher:
    """Answers each query text with a fixed ranking; records every call (the SearchService seam)."""

    def __init__(self, rankings: dict[str, list[str]]):
        self.rankings, self.calls = rankings, []

    def search(self, query):
        self.calls.append((query.q, query.k, query.offset, query.filters))
        docs = self.rankings[query.q][query.offset:query.offset + query.k]
        return FakeResult([FakeHit(d) for d in docs])


def test_fetch_ranking_pages_through_max_k():
    searcher = FakeSearcher({"q": [f"d{i}" for i in range(23)]})
    ids = fetch_ranking(searcher, FakeQuery, "q", "dense", depth=100, page=10, filters={})
    assert ids == [f"d{i}" for i in range(23)]
    # pages at offsets 0, 10, 20; the third came back short (3 < 10), so no fourth call
    assert [(k, off) for _, k, off, _ in searcher.calls] == [(10, 0), (10, 10), (10, 20)]


def test_run_system_scores_by_hand():
    # q1: relevant a (2), b (1); q2: relevant c (1)
    qrels = {"q1": {"a": 2, "b": 1}, "q2": {"c": 1}}
    data = EvalData("toy", Path("."), "test", None, {"q1": "one", "q2": "two"}, qrels, 2)
    searcher = FakeSearcher({"one": ["x", "a", "b"], "two": ["c"]})
    run = run_system("dense-base", searcher, FakeQuery, data, depth=100, page=100,
                     filters_for=lambda text: {"disease": ("D1",)} if text == "two" else {})
    assert run.filtered == 1 and searcher.calls[1][3] == {"disease": ("D1",)}
    s = system_summary(run, data, Cutoffs(), "base")
    # accuracy@1: q1 no (x), q2 yes -> 0.5; mrr@10: (1/2 + 1) / 2 = 0.75
    assert s["mean"]["accuracy@1"] == 0.5 and s["mean"]["mrr@10"] == 0.75
    # q1 ndcg@10: DCG = 2/log2(3) + 1/log2(4) = 1.261860 + 0.5 = 1.761860; IDCG = 2 + 1/log2(3) = 2.630930
    #   -> 1.761860 / 2.630930 = 0.669672; q2 = 1.0; mean 0.834836
    assert s["mean"]["ndcg@10"] == pytest.approx(0.834836, abs=1e-6)
    # q1 map@100: (1/2 + 2/3) / 2 = 0.583333; q2 = 1 -> mean 0.791667
    assert s["mean"]["map@100"] == pytest.approx(0.791667, abs=1e-6)


def test_paired_comparison_by_hand():
    a = {f"q{i}": 1.0 for i in range(5)} | {"q5": 0.5}
    b = {f"q{i}": 0.0 for i in range(5)} | {"q5": 0.5}
    c = compare("A", a, "B", b, "ndcg@10", permutations=10_000, seed=0)
    assert (c.wins, c.losses, c.ties, c.n) == (5, 0, 1, 6)
    # sign flips of 6 paired differences: 2^6 = 64 arrangements (exact). |mean| = 5/6 needs the five
    # non-zero differences all of one sign: 2 ways, times 2 for the sign of the zero -> 4/64 = 0.0625
    assert c.p_randomisation == pytest.approx(4 / 64)
    # Wilcoxon drops the tie: 5 positive ranks, exact two-sided p = 2 / 2^5 = 0.0625
    assert c.p_wilcoxon == pytest.approx(0.0625)
    same = compare("A", a, "A2", a, "ndcg@10")
    assert same.p_randomisation == 1.0 and same.p_wilcoxon is None and same.ties == 6


def test_entity_filters_from_query_text():
    lexicon = {"lithium": [("drug", "MESH:D008094")], "atrial flutter": [("disease", "MESH:D001282")],
               "flutter": [("disease", "text:flutter")]}
    assert entity_filters("Lithium and atrial flutter?", lexicon) == {
        "disease": ("text:flutter", "MESH:D001282"), "drug": ("MESH:D008094",)}
    assert entity_filters("nothing here", lexicon) == {}


def test_ann_recall_flat_is_exact_and_ivf_is_measured():
    from indexer.settings import IndexSettings
    from indexer.vector_index import FaissIndex

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(100, 2100, dtype=np.int64)
    queries = vectors[:50] + 0.3 * rng.standard_normal((50, 16)).astype(np.float32)
    flat = FaissIndex.create(16, "flat", IndexSettings(), 2000)
    flat.add(vectors, ids)
    assert ann_recall(flat, queries, 10) == {"k": 10, "queries": 50, "recall": 1.0, "exact": True,
                                             "description": "Flat"}
    ivf = FaissIndex.create(16, "IVF32,Flat", IndexSettings(ivf_nprobe=1), 2000)
    ivf.train(vectors)
    ivf.add(vectors, ids)
    got = ann_recall(ivf, queries, 10)
    assert not got["exact"] and 0.2 < got["recall"] < 1.0  # one probe of 32 lists misses some neighbours
    # duplicate passages tie: whichever of the equal vectors the index returns is a right answer
    dup = FaissIndex.create(16, "flat", IndexSettings(), 40)
    dup.add(np.vstack([vectors[:20], vectors[:20]]), np.arange(40, dtype=np.int64))
    assert ann_recall(dup, queries[:20], 5)["recall"] == 1.0


def test_report_files(tmp_path):
    per_query = {"bm25": {"q1": {"ndcg@10": 1.0, "map@100": 1.0}, "q2": {"ndcg@10": 0.0, "map@100": 0.0}},
                 "dense-base": {"q1": {"ndcg@10": 0.5, "map@100": 0.5}, "q2": {"ndcg@10": 0.5, "map@100": 0.5}}}
    system = lambda mode, q: {"mode": mode, "embedder_label": "base", "mean": {"ndcg@10": 0.5, "map@100": 0.5},  # noqa: E731
                              "seconds": 1.0, "latency_ms_mean": 2.0, "latency_ms_p95": 3.0, "errors": 0,
                              "entity_filtered_queries": 0}
    report = {"dataset": {"name": "toy", "split": "dev", "fold": None, "queries": 2, "judged_queries": 2,
                          "documents": 3},
              "depth": 100, "seconds": 4.2, "device": "cpu", "permutations": 100, "seed": 1,
              "systems": {"bm25": system("keyword", 1), "dense-base": system("dense", 1)},
              "comparisons": [vars(compare("bm25", {q: v["ndcg@10"] for q, v in per_query["bm25"].items()},
                                           "dense-base", {q: v["ndcg@10"] for q, v in per_query["dense-base"].items()},
                                           "ndcg@10", 100, 1))],
              "ann": {"index_type": "flat", "description": "Flat", "k": 10, "queries": 2, "recall": 1.0, "exact": True},
              "indexes": {}}
    paths = write_report(report, per_query, {"bm25": {"q1": ["a", "b"]}}, tmp_path)
    text = paths["markdown"].read_text()
    assert "| bm25 | keyword | base |" in text and "Total eval time 4.2 s" in text
    assert "| ndcg@10 | bm25 | dense-base | 0.5000 | 0.5000 | 1 | 1 | 0 |" in text
    assert json.loads(paths["json"].read_text())["systems"]["bm25"]["mode"] == "keyword"
    assert len(paths["per_query"].read_text().splitlines()) == 4
    assert (tmp_path / "runs" / "bm25.trec").read_text() == "q1 Q0 a 1 2 bm25\nq1 Q0 b 2 1 bm25\n"
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert markdown(report) == text


def _eval_args(sample_dir: Path, tmp_path: Path, *systems: str) -> list[str]:
    sets = [f'eval.index_dir="{tmp_path / "idx"}"', f'eval.cache_dir="{tmp_path / "cache"}"',
            f'train_embedder.output_dir="{tmp_path / "none"}"']
    return (["eval", "--dataset", str(sample_dir), "--split", "test", "--out", str(tmp_path / "out")]
            + [a for name in systems for a in ("--system", name)] + [a for s in sets for a in ("--set", s)])


def _results(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "results.json").read_text())


def test_eval_command_builds_reuses_and_rebuilds_from_cache(sample_dir, tmp_path, tiny_bert, monkeypatch):
    """The real path with a tiny random BERT: import, build, SearchService.search, report; reuse; another type."""
    import searchd.eval.evaluate
    from searchd.cli import main

    monkeypatch.setattr(searchd.eval.evaluate, "embedder_dirs",
                        lambda settings: {"base": tiny_bert, "tuned": None, "configured": tiny_bert})
    args = _eval_args(sample_dir, tmp_path, "bm25", "dense-base", "dense-tuned", "hybrid-entities")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    first = _results(tmp_path)
    assert set(first["systems"]) == {"bm25", "dense-base", "hybrid-entities"}
    assert "dense-tuned was not run" in first["notes"][0]
    assert first["dataset"]["queries"] == 6 and first["dataset"]["documents"] == 12
    (info,) = first["indexes"].values()
    assert info["reused"] is False and info["encoded"] == 12
    # q2 "malpractice warfarin bleeding" names the sample's gold Drug warfarin: it gets an entity filter
    assert first["systems"]["hybrid-entities"]["entity_filtered_queries"] >= 1
    assert (tmp_path / "out" / "metrics.png").is_file() and (tmp_path / "out" / "runs" / "bm25.trec").is_file()
    assert CliRunner().invoke(main, args).exit_code == 0
    second = _results(tmp_path)
    assert next(iter(second["indexes"].values()))["reused"] is True
    assert second["systems"]["dense-base"]["mean"] == first["systems"]["dense-base"]["mean"]
    # another index type: rebuilt from the vector cache without encoding anything
    hnsw = CliRunner().invoke(main, args + ["--set", "index.type=hnsw"])
    assert hnsw.exit_code == 0, hnsw.output
    third = _results(tmp_path)
    info = next(iter(third["indexes"].values()))
    assert info["reused"] is False and info["encoded"] == 0 and info["cache_hits"] == 12
    assert third["ann"]["index_type"] == "hnsw" and third["ann"]["exact"] is False


def test_keyword_only_eval_builds_a_store_and_encodes_nothing(sample_dir, tmp_path):
    from searchd.cli import main

    result = CliRunner().invoke(main, _eval_args(sample_dir, tmp_path, "bm25"))
    assert result.exit_code == 0, result.output
    report = _results(tmp_path)
    (info,) = report["indexes"].values()
    assert info["dir"].endswith("sample-store") and info["encoded"] == 0 and report["ann"] is None
    assert not any((tmp_path / "idx" / "sample-store").glob("*.faiss"))
    assert report["systems"]["bm25"]["mean"]["accuracy@1"] >= 5 / 6  # BM25 ranks a gold document first
    assert CliRunner().invoke(main, _eval_args(sample_dir, tmp_path, "bm25")).exit_code == 0
    assert next(iter(_results(tmp_path)["indexes"].values()))["reused"] is True


def test_eval_command_refuses_bad_input(sample_dir, tmp_path):
    from searchd.cli import main

    bad = CliRunner().invoke(main, _eval_args(sample_dir, tmp_path, "bm52"))
    assert bad.exit_code == 1 and "unknown eval system 'bm52'" in bad.output
    missing = CliRunner().invoke(main, ["eval", "--dataset", str(tmp_path), "--split", "dev"])
    assert missing.exit_code == 1 and "no queries.jsonl" in missing.output


@pytest.mark.slow
def test_eval_with_packaged_minilm(sample_dir, tmp_path):
    """The packaged MiniLM on the sample: BM25 and dense find a highly relevant document at rank 1 for most queries."""
    from searchd.cli import main

    result = CliRunner().invoke(main, _eval_args(sample_dir, tmp_path, "bm25", "dense-base", "hybrid"))
    assert result.exit_code == 0, result.output
    systems = _results(tmp_path)["systems"]
    for name in ("bm25", "dense-base", "hybrid"):
        assert systems[name]["mean"]["accuracy@1"] >= 5 / 6, name
        assert systems[name]["mean"]["recall@10"] == 1.0, name  # 12 documents: every judged one is in the top 10


class CountingEmbedder:
    """A fake at the Embedder seam: a fixed vector per text, and a log of what it was asked to encode."""

    name, dim = "counting", 4
    checksum, backend, precision = None, "torch", "fp32"

    def __init__(self):
        self.seen: list[str] = []

    def embed_documents(self, texts):
        self.seen += list(texts)
        return np.array([[len(t), 1, 0, 0] for t in texts], dtype=np.float32)

    embed_queries = embed_documents


def test_vector_cache_encodes_each_text_once_across_processes(tmp_path):
    from searchd.eval.cache import CachedEmbedder, VectorCache

    inner = CountingEmbedder()
    cached = CachedEmbedder(inner, VectorCache(tmp_path, 4))
    first = cached.embed_documents(["aa", "bbb"])
    cached.close()  # flushes a shard to disk
    again = CachedEmbedder(inner, VectorCache(tmp_path, 4))  # a new process would load the shard
    second = again.embed_documents(["bbb", "c", "aa"])
    assert inner.seen == ["aa", "bbb", "c"]  # only "c" was new the second time
    assert (again.hits, again.misses) == (2, 1)
    np.testing.assert_array_equal(second[[0, 2]], first[[1, 0]])
    assert len(VectorCache(tmp_path, 8)) == 0  # another dimension (another model) ignores the shards
