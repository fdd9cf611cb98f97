"""Embedder training: pair building on the sample corpus, the model layout, a few real training steps."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from indexer.errors import ConfigError
from indexer.readers.beir import load_qrels, load_queries
from indexer.settings import TrainEmbedderSettings
from indexer.train.pairs import (DevSet, Pair, beir_pairs, beir_text, bva_pair, check_sources, dev_triplets, docs_of,
                                 entity_ids, entity_pairs, make_dev, mine_triplets, title_pairs)

_WORD = re.compile(r"[a-z]+")


def keyword_encode(texts):
    """A fake encoder: hashed bag of words, unit norm (similar texts share words)."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in _WORD.findall(t.lower()):
            out[i, hash(w) % 64] += 1.0
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return out


@pytest.fixture(scope="module")
def sample_docs(sample_dir):
    return docs_of("beir", sample_dir)


def test_title_pairs_strip_a_leading_title():
    from indexer.documents import Document

    doc = Document("1", "Aspirin and ulcers.", "Aspirin and ulcers. We studied 40 patients.")
    (pair,) = title_pairs([doc], "bc5cdr")
    assert pair.anchor == "Aspirin and ulcers." and pair.positive == "We studied 40 patients."


def test_entity_pairs_share_ids_on_the_sample(sample_docs):
    pairs = entity_pairs(sample_docs)
    by_id = {d.id: entity_ids(d) for d in sample_docs}
    assert pairs, "the sample has documents sharing MeSH ids (PTSD in bva-001 and bva-002)"
    for p in pairs:
        assert p.ids & by_id[p.group], p
        assert p.anchor not in {d.title for d in sample_docs if d.id == p.group}  # never a document with itself


def test_beir_pairs_take_the_top_grade(sample_dir, sample_docs):
    corpus = {d.id: beir_text(d) for d in sample_docs}
    pairs = beir_pairs(load_qrels(sample_dir, "test"), load_queries(sample_dir), corpus, "sample")
    # q1 judges bva-001 at 2 and bva-002 at 1: only the grade-2 document is a positive
    q1 = [p for p in pairs if p.anchor.startswith("veteran denied")]
    assert [p.group for p in q1] == ["bva-001"]
    assert len(pairs) == 6  # one top-graded document for each of the 6 queries
    assert q1[0].known == {"bva-001", "bva-002"}  # the grade-1 document is no negative either


def vocab_encode(texts):
    """A deterministic bag-of-words encoder over the words of `texts` (unit norm)."""
    words = sorted({w for t in texts for w in _WORD.findall(t.lower())})
    index = {w: i for i, w in enumerate(words)}
    out = np.zeros((len(texts), len(words)), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in _WORD.findall(t.lower()):
            out[i, index[w]] = 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_mining_skips_known_positives_and_searches_the_pool():
    texts = {"pos": "aspirin heart attack risk trial", "known": "aspirin heart attack study cohort outcome",
             "pooled": "aspirin heart failure dose registry data", "far": "tax appeal denied remand",
             "other": "insulin glucose control"}
    vocab = list(texts.values()) + ["aspirin heart attack", "insulin"]

    def encode(batch):  # one vocabulary for every call, so anchors and documents share a space
        every = vocab_encode(list(batch) + vocab)
        return every[:len(batch)]

    pool = {"s": [("known", texts["known"]), ("pooled", texts["pooled"]), ("far", texts["far"])]}
    pairs = [Pair("aspirin heart attack", texts["pos"], "s", "pos", known=frozenset({"known"})),
             Pair("insulin", texts["other"], "s", "other")]
    mined = {t[0]: t[2] for t in mine_triplets(pairs, encode, 1.0, seed=0, pools=pool)}
    assert mined["aspirin heart attack"] == texts["pooled"]  # the nearest admissible candidate, from the pool
    unknown = [dataclasses.replace(pairs[0], known=frozenset()), pairs[1]]
    mined = {t[0]: t[2] for t in mine_triplets(unknown, encode, 1.0, seed=0, pools=pool)}
    assert mined["aspirin heart attack"] == texts["known"]  # nearer, and chosen once it is not known relevant


def test_make_dev_keeps_relevant_documents(sample_dir, sample_docs):
    corpus = {d.id: beir_text(d) for d in sample_docs}
    qrels = load_qrels(sample_dir, "test")
    dev = make_dev("s", load_queries(sample_dir), corpus, {q: set(r) for q, r in qrels.items()}, 3, 8, 0)
    assert len(dev.queries) == 3 and len(dev.corpus) == 8
    for q, rel in dev.relevant.items():
        assert rel and rel <= dev.corpus.keys()


def test_mined_negatives_are_not_positives_and_share_no_entity(sample_docs):
    pairs = title_pairs(sample_docs, "sample") + entity_pairs(sample_docs)
    triplets = mine_triplets(pairs, keyword_encode, hard_ratio=1.0, seed=0)
    assert len(triplets) == len(pairs)
    text_ids = {beir_text(d): entity_ids(d) for d in sample_docs} | {d.text: entity_ids(d) for d in sample_docs}
    assert sorted(t[:2] + t[3:] for t in triplets) == sorted((p.anchor, p.positive, p.source) for p in pairs)
    ids = {(p.anchor, p.positive, p.source): p.ids for p in pairs}
    for anchor, positive, negative, source in triplets:
        assert negative != positive
        if source == "entity":
            assert not (ids[anchor, positive, source] & text_ids[negative])


def test_dev_triplets_negative_is_not_relevant(sample_dir, sample_docs):
    corpus = {d.id: beir_text(d) for d in sample_docs}
    rel = {q: set(r) for q, r in load_qrels(sample_dir, "test").items()}
    dev = DevSet("s", load_queries(sample_dir), corpus, rel)
    trips = dev_triplets(dev, keyword_encode)
    assert len(trips) == 6
    for q, pos, neg in trips:
        qid = next(k for k, v in dev.queries.items() if v == q)
        assert neg not in {corpus[d] for d in rel[qid]} and pos in {corpus[d] for d in rel[qid]}


def test_bva_pair_uses_issue_findings_and_reasons():
    text = ("Citation Nr: 1\n\nTHE ISSUE\n\nEntitlement to service connection for PTSD.\n\nFINDINGS OF FACT\n\n"
            "1. The veteran served in Vietnam.\n\nCONCLUSION OF LAW\n\nPTSD was incurred in service.\n\n"
            "REASONS AND BASES FOR FINDINGS AND CONCLUSION\n\nThe stressor was verified by the\nunit history.\n")
    pair = bva_pair("1", text)
    assert pair.anchor == "Entitlement to service connection for PTSD. 1. The veteran served in Vietnam."
    assert pair.positive == "The stressor was verified by the unit history."
    assert bva_pair("2", "THE ISSUE\n\nEntitlement.\n\nREMAND\n\nMore evidence.\n") is None


def test_unknown_source_and_loss_are_named():
    with pytest.raises(ConfigError, match=r"'pubmed'.*'bc5cdr'"):
        check_sources(["bc5cdr", "pubmed"])
    from indexer.train.embedder import fit
    from indexer.train.pairs import TrainingData

    with pytest.raises(ConfigError, match=r"'infonce'.*'mnrl\+triplet'"):
        fit(None, TrainingData([], [], []), TrainEmbedderSettings(loss="infonce"), None, "cpu")


def test_stages_split_at_remine_epochs():
    from indexer.train.embedder import stages

    assert stages(7, [3, 6]) == [(0, 3), (3, 6), (6, 7)]
    assert stages(1, [3, 6, 9, 12]) == [(0, 1)]


def tiny_settings(tmp_path, **kw) -> TrainEmbedderSettings:
    base = dict(dimension=16, max_length=64, batch_size=4, mini_batch_size=2, learning_rate=1e-3, batching="mixed",
                weight_decay=0.0, projection_dropout=0.1, epochs=6, remine_epochs=[3], eval_steps=1,
                output_dir=tmp_path / "model", device="cpu")
    return dataclasses.replace(TrainEmbedderSettings(), **{**base, **kw})


def test_projection_dimension_and_save_load(tiny_bert, tmp_path, sample_docs):
    from sentence_transformers import SentenceTransformer

    from indexer.embedder import SentenceTransformerEmbedder
    from indexer.settings import EmbedderSettings
    from indexer.train.embedder import build_model, save

    ts = tiny_settings(tmp_path)
    model = build_model(tiny_bert, ts, "cpu", [d.text for d in sample_docs])  # too few texts: orthogonal init
    model.eval()
    texts = [d.title for d in sample_docs]
    before = model.encode(texts, convert_to_numpy=True)
    assert before.shape == (len(texts), 16)
    assert np.allclose(np.linalg.norm(before, axis=1), 1.0, atol=1e-5)
    save(model, ts.output_dir)
    after = SentenceTransformer(str(ts.output_dir), device="cpu").encode(texts, convert_to_numpy=True)
    assert np.allclose(before, after, atol=1e-5)
    embedder = SentenceTransformerEmbedder(ts.output_dir, EmbedderSettings(device="cpu", max_length=64))
    assert embedder.dim == 16
    assert np.allclose(embedder.embed_documents(texts), before, atol=1e-5)


def test_projection_starts_from_principal_directions(tiny_bert, tmp_path, sample_docs):
    from indexer.train.embedder import build_model

    ts = tiny_settings(tmp_path, dimension=8)
    texts = [d.text for d in sample_docs] + [d.title for d in sample_docs]
    model = build_model(tiny_bert, ts, "cpu", texts)
    weight = model[3].linear.weight.detach().numpy()
    assert weight.shape == (8, 32)
    assert np.allclose(weight @ weight.T, np.eye(8), atol=1e-4)  # orthonormal rows, as SVD gives


@pytest.mark.parametrize("mini_batch_size", [2, 4])  # cached MNRL + triplet; plain MNRL with in-batch hard negatives
def test_a_few_steps_lower_the_loss(tiny_bert, tmp_path, sample_docs, mini_batch_size):
    from indexer.train.embedder import build_model, fit
    from indexer.train.pairs import TrainingData

    ts = tiny_settings(tmp_path, mini_batch_size=mini_batch_size)
    model = build_model(tiny_bert, ts, "cpu")
    data = TrainingData(title_pairs(sample_docs, "sample"), entity_pairs(sample_docs), [])
    run = fit(model, data, ts, tmp_path / "work", "cpu")
    losses = [h["loss"] for h in run["history"] if "loss" in h]
    assert run["steps"] >= 12 and len(losses) >= 12
    # an even window: with two objectives the logged losses alternate between them (cached MNRL, triplet),
    # so each window holds as many of each; three steps against three were at the mercy of one noisy step
    k = max(2, len(losses) // 3 // 2 * 2)
    assert np.mean(losses[-k:]) < np.mean(losses[:k]), losses


@pytest.mark.slow
def test_real_dev_folds_are_held_out(shared_data):
    from indexer.train.pairs import collect

    data = collect(shared_data, ["scifact", "medquad", "bva", "bc5cdr"], 0, 0.2, 50, 300, 42)
    anchors = {p.anchor for p in data.pairs}
    for dev in data.dev:
        if dev.name != "bc5cdr-dev":  # BC5CDR dev is its own split; the others are held-out folds
            assert not anchors & set(dev.queries.values()), dev.name
    assert {d.name for d in data.dev} == {"bc5cdr-dev", "scifact-dev", "medquad-dev", "bva-dev"}
    assert any(d.domain == "legal" for d in data.dev)
    assert all(isinstance(p, Pair) for p in data.pairs)


def test_triplet_scores_by_hand():
    from indexer.train.ir_eval import triplet_scores

    vecs = {"a": [1.0, 0.0], "p": [0.8, 0.6], "n": [0.0, 1.0], "m": [0.6, 0.8]}
    encode = lambda texts: np.array([vecs[t] for t in texts], dtype=np.float32)  # noqa: E731
    # (a, p, n): 0.8 - 0.0 = 0.8 > 0; (a, m, p): 0.6 - 0.8 = -0.2 -> accuracy 1/2, mean gap 0.3
    scores = triplet_scores(encode, [("a", "p", "n"), ("a", "m", "p")])
    assert scores["accuracy"] == pytest.approx(0.5) and scores["mean_gap"] == pytest.approx(0.3)


def test_floors_by_hand():
    from indexer.train.ir_eval import floors

    def row(domain, base, tuned):
        return {"domain": domain, "base": {"ndcg@10": base}, "tuned": {"ndcg@10": tuned}}

    ok = floors({"a": row("medical", 0.5, 0.55), "b": row("medical", 0.7, 0.72), "l": row("legal", 0.6, 0.595)})
    # medical gains 0.05 and 0.02: mean 0.035 >= 0.03; legal loses 0.005 <= 0.01
    assert ok["every_medical_gains"] and ok["mean_medical_gain_ok"] and ok["legal_ok"]
    assert ok["mean_medical_gain"] == pytest.approx(0.035)
    bad = floors({"a": row("medical", 0.5, 0.6), "b": row("medical", 0.7, 0.69), "l": row("legal", 0.6, 0.58)})
    assert not bad["every_medical_gains"] and not bad["legal_ok"]
    # the mean floor averages the issue's three sets; MedQuAD counts for "every set gains" only
    named = floors({"bc5cdr-dev": row("medical", 0.9, 0.91), "scifact-dev": row("medical", 0.7, 0.76),
                    "nfcorpus-dev": row("medical", 0.3, 0.32), "medquad-dev": row("medical", 0.8, 0.81)})
    assert named["mean_medical_gain"] == pytest.approx(0.03) and named["mean_medical_gain_ok"]
    assert named["mean_all_medical_gain"] == pytest.approx(0.025) and named["every_medical_gains"]


def test_cli_refuses_an_unknown_loss():
    from click.testing import CliRunner

    from indexer.cli import main

    result = CliRunner().invoke(main, ["train-embedder", "--set", "train_embedder.loss=infonce"])
    assert result.exit_code == 1
    assert "train_embedder.loss 'infonce' is not one of" in result.output


def test_only_the_hard_share_of_pairs_becomes_triplets(sample_docs):
    pairs = title_pairs(sample_docs, "sample")
    assert mine_triplets(pairs, keyword_encode, hard_ratio=0.0, seed=0) == []
    half = mine_triplets(pairs, keyword_encode, hard_ratio=0.5, seed=0)
    assert 0 < len(half) < len(pairs)
    group = {p.positive: p.group for p in pairs}
    for anchor, positive, negative, _ in half:
        assert group[negative] != group[positive]
    assert half == mine_triplets(pairs, keyword_encode, hard_ratio=0.5, seed=0)  # seeded


@pytest.mark.slow
def test_per_source_caps_override_the_default(shared_data):
    from indexer.train.pairs import collect

    data = collect(shared_data, ["bc5cdr", "scifact"], 7, 0.2, 5, 50, 42, caps={"scifact": 3})
    counts = {s: sum(p.source == s for p in data.pairs) for s in ("bc5cdr", "scifact")}
    assert counts == {"bc5cdr": 7, "scifact": 3}


def test_mixed_precision_setting():
    from indexer.train.embedder import check_settings, use_bf16

    assert use_bf16("bf16", "cpu") and not use_bf16("no", "cpu")
    with pytest.raises(ConfigError, match=r"mixed_precision 'fp8' is not one of"):
        check_settings(TrainEmbedderSettings(mixed_precision="fp8"))


def test_the_cache_is_used_only_below_the_batch_size(tiny_bert, tmp_path):
    from sentence_transformers.sentence_transformer.losses import (CachedMultipleNegativesRankingLoss,
                                                                   MultipleNegativesRankingLoss)

    from indexer.train.embedder import build_model, losses_for

    model = build_model(tiny_bert, tiny_settings(tmp_path), "cpu")
    cached = losses_for(model, tiny_settings(tmp_path, batch_size=4, mini_batch_size=2), ["pairs"])["pairs"]
    plain = losses_for(model, tiny_settings(tmp_path, batch_size=4, mini_batch_size=4), ["pairs"])["pairs"]
    assert isinstance(cached, CachedMultipleNegativesRankingLoss)
    assert type(plain) is MultipleNegativesRankingLoss


def test_report_plot_is_written(tmp_path):
    from indexer.train.ir_eval import plot

    row = lambda b, t: {"domain": "medical", "base": {"ndcg@10": b}, "tuned": {"ndcg@10": t}}  # noqa: E731
    report = {"dev_sets": {"a-dev": row(0.5, 0.6), "b-dev": row(0.7, 0.71)}}
    history = [{"eval_sequential_score": 0.6, "total_step": s, "eval_a-dev_cosine_ndcg@10": 0.5 + s / 1000,
                "eval_b-dev_cosine_ndcg@10": 0.7} for s in (100, 200)]
    plot(report, history, tmp_path / "r.png")
    plot(report, [], tmp_path / "empty.png")  # no evaluation during training: bars only
    for name in ("r.png", "empty.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_by_source_batching_names_one_dataset_per_source(sample_docs):
    from indexer.train.embedder import datasets_for
    from indexer.train.pairs import TrainingData

    pairs = title_pairs(sample_docs, "a") + title_pairs(sample_docs, "b")[:2]
    data = TrainingData(pairs, [], [])
    assert set(datasets_for(data, [], "mnrl")) == {"pairs"}
    sets = datasets_for(data, [("q", "p", "n", "a")], "mnrl+triplet", "by-source")
    assert set(sets) == {"pairs-a", "pairs-b", "triplets"}
    assert len(sets["pairs-b"]) == 2 and len(sets["pairs-a"]) == len(pairs) - 2


def test_by_source_batching_trains(tiny_bert, tmp_path, sample_docs):
    from indexer.train.embedder import build_model, fit
    from indexer.train.pairs import TrainingData

    ts = tiny_settings(tmp_path, batching="by-source", epochs=1, remine_epochs=[])
    pairs = title_pairs(sample_docs, "a") + [dataclasses.replace(p, source="b") for p in title_pairs(sample_docs, "b")]
    run = fit(build_model(tiny_bert, ts, "cpu"), TrainingData(pairs, [], []), ts, tmp_path / "work", "cpu")
    assert run["steps"] > 0 and all(np.isfinite(h["loss"]) for h in run["history"] if "loss" in h)


def test_history_steps_run_on_across_stages(tmp_path):
    import json

    from indexer.train.ir_eval import _history

    log = [{"step": 100, "eval_sequential_score": 0.1}, {"step": 474}, {"step": 100, "eval_sequential_score": 0.2}]
    (tmp_path / "training.json").write_text(json.dumps({"history": log}))
    assert [h["total_step"] for h in _history(tmp_path)] == [100, 474, 574]
    assert _history(tmp_path / "absent") == []


def test_triplets_train_infonce_and_the_margin_in_one_pass(tiny_bert, tmp_path):
    import torch
    from sentence_transformers.sentence_transformer.losses import TripletLoss

    from indexer.train.embedder import InfoNCEAndTriplet, build_model, losses_for

    ts = tiny_settings(tmp_path, batch_size=3, mini_batch_size=3)
    model = build_model(tiny_bert, ts, "cpu")
    model.eval()  # no dropout: separate forward passes give the same embeddings
    losses = losses_for(model, ts, ["pairs", "triplets"])
    both = losses["triplets"]
    assert isinstance(both, InfoNCEAndTriplet)
    columns = [["fever in children", "statin myopathy", "ptsd stressor"],
               ["pediatric fever management", "muscle pain on statins", "stressor verification for ptsd"],
               ["adult fever", "statin dosing", "ptsd treatment"]]
    features = [model.tokenize(c) for c in columns]
    labels = torch.zeros(3)
    with torch.no_grad():
        expected = losses["pairs"](features, labels) + TripletLoss(
            model, distance_metric=both.triplet.distance_metric, triplet_margin=ts.triplet_margin)(features, labels)
        assert torch.allclose(both(features, labels), expected, atol=1e-5)
    alone = losses_for(model, dataclasses.replace(ts, hard_negatives_in_batch=False), ["pairs", "triplets"])
    assert type(alone["triplets"]) is TripletLoss


def test_the_primary_score_is_the_medical_mean():
    from indexer.train.embedder import make_evaluator

    sets = [DevSet("m1", {"q": "a"}, {"d": "a"}, {"q": {"d"}}), DevSet("law", {"q": "a"}, {"d": "a"}, {"q": {"d"}}, "legal"),
            DevSet("m2", {"q": "a"}, {"d": "a"}, {"q": {"d"}})]
    assert make_evaluator(sets).main_score_function([0.2, 0.9, 0.4]) == pytest.approx(0.3)
    legal_only = make_evaluator(sets[1:2])
    assert legal_only.main_score_function([0.9]) == pytest.approx(0.9)
