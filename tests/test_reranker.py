"""The cross-encoder reranker: the model class, the search step, training, eval systems, the eval web page."""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.settings import Settings


@pytest.fixture(scope="module")
def tiny_cross_encoder(tiny_bert, tmp_path_factory) -> Path:
    """The tiny random BERT with a seeded one-logit head, saved as a sequence classifier."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-ce")
    torch.manual_seed(1)
    config = BertConfig.from_pretrained(tiny_bert, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(out)
    return out


def _logits_by_hand(model_dir: Path, query: str, passages: list[str], max_length: int) -> np.ndarray:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        enc = tok([query] * len(passages), passages, padding=True, truncation="longest_first", max_length=max_length,
                  return_tensors="pt")
        return model(**enc).logits[:, 0].numpy()


PASSAGES = ["warfarin and bleeding after hip surgery", "the veteran's tinnitus began after artillery duty",
            "a physician prescribed oxycodone without an examination " * 20]  # the last one is truncated


def test_cross_encoder_scores_are_the_models_logits(tiny_cross_encoder, tmp_path):
    from indexer.reranker import CrossEncoderReranker

    expected = _logits_by_hand(tiny_cross_encoder, "warfarin bleeding", PASSAGES, 32)
    torch_scores = CrossEncoderReranker(tiny_cross_encoder, max_length=32, batch_size=2).score("warfarin bleeding",
                                                                                                PASSAGES)
    assert torch_scores.dtype == np.float32 and torch_scores.shape == (3,)
    np.testing.assert_allclose(torch_scores, expected, atol=1e-5)
    assert CrossEncoderReranker(tiny_cross_encoder).score("q", []).shape == (0,)
    onnx = CrossEncoderReranker(tiny_cross_encoder, max_length=32, backend="onnx", precision="fp32",
                                exports=tmp_path / "exports", prepare=True)
    np.testing.assert_allclose(onnx.score("warfarin bleeding", PASSAGES), expected, atol=1e-4)


def test_a_directory_without_a_model_is_refused(tmp_path):
    from indexer.errors import ModelError
    from indexer.reranker import CrossEncoderReranker

    with pytest.raises(ModelError, match="no config.json"):
        CrossEncoderReranker(tmp_path)


def test_rerank_depth_without_a_reranker_says_how_to_get_one(settings):
    from indexer.errors import ModelError
    from indexer.reranker import load_reranker

    with pytest.raises(ModelError, match="indexer train-reranker"):
        load_reranker(settings)


class WordReranker:
    """Scores a passage by how often it contains `word` (a reranker whose order is known)."""

    name = "word"

    def __init__(self, word: str):
        self.word, self.calls = word, []

    def score(self, query, passages):
        self.calls.append(list(passages))
        return np.array([p.lower().count(self.word) for p in passages], dtype=np.float32)


@pytest.fixture(scope="module")
def sample_service(tmp_path_factory, sample_dir):
    from indexer.settings import load_settings
    from tests.conftest import REPO
    from tests.search_fixtures import build_sample_index

    settings = load_settings(REPO / "config.toml", [f'index.dir="{tmp_path_factory.mktemp("rerank") / "index"}"'])
    service = build_sample_index(settings, sample_dir)
    yield service
    service.close()


def test_rerank_reorders_the_top_n_by_score_and_keeps_the_rest(sample_service):
    from searchd.query import Query

    query = Query("warfarin bleeding malpractice", mode="hybrid", k=20)
    plain = sample_service.search(query)
    reranker = WordReranker("the")
    view = sample_service.with_reranker(reranker, 4)
    reranked = view.search(query)
    before = [h.doc_id for h in plain.hits]
    after = [h.doc_id for h in reranked.hits]
    assert len(before) > 4 and sorted(after[:4]) == sorted(before[:4]) and after[4:] == before[4:]
    (passages,) = reranker.calls
    scores = [p.lower().count("the") for p in passages]
    by_doc = dict(zip(before[:4], scores))
    assert [by_doc[d] for d in after[:4]] == sorted(scores, reverse=True)
    assert [h.score for h in reranked.hits[:4]] == sorted(scores, reverse=True)
    assert "rerank" in reranked.timings and reranked.total == plain.total
    titles = {h.doc_id: h.title for h in plain.hits}
    assert passages[0].startswith(f"{titles[before[0]]}. ")  # "Title. chunk", as the index encodes it
    assert sample_service.reranker is None  # the view leaves the service as it was


def test_rerank_depth_zero_and_keyword_mode_are_no_ops(sample_service):
    from searchd.query import Query

    reranker = WordReranker("the")
    for view, query in ((sample_service.with_reranker(reranker, 0), Query("warfarin bleeding", mode="hybrid", k=10)),
                        (sample_service.with_reranker(reranker, 5), Query("warfarin bleeding", mode="keyword", k=10))):
        got, want = view.search(query), sample_service.search(query)
        assert [(h.doc_id, h.score) for h in got.hits] == [(h.doc_id, h.score) for h in want.hits]
        assert "rerank" not in got.timings
    assert reranker.calls == []


def _pairs():
    from indexer.train.pairs import Pair

    topics = ["warfarin bleeding", "tinnitus artillery noise", "oxycodone prescribing", "asthma inhaler",
              "lithium toxicity", "hip fracture surgery"]
    return [Pair(f"query about {t}", f"a passage on {t} and its treatment", "scifact", f"d{i}")
            for i, t in enumerate(topics)]


def test_labelled_rows_have_positives_mined_and_random_negatives():
    from indexer.train.reranker import labelled_rows

    pairs = _pairs()
    mined = [(pairs[0].anchor, pairs[0].positive, pairs[1].positive, "scifact")]
    rows = labelled_rows(pairs, mined, 1, seed=3)
    assert sum(r[2] == 1.0 for r in rows) == 6 and len(rows) == 6 + 1 + 6
    by_anchor = {p.anchor: p.positive for p in pairs}
    assert all(r[1] != by_anchor[r[0]] for r in rows if r[2] == 0.0)  # a negative is never the pair's own positive
    assert rows == labelled_rows(pairs, mined, 1, seed=3)  # seeded


def _bow_encoder(texts):
    vocab = {}
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            out[i, vocab.setdefault(w, hash(w) % 64)] += 1
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def _train(settings: Settings, tiny_bert: Path, tmp_path: Path, monkeypatch) -> Path:
    import dataclasses

    import indexer.train.reranker as tr
    from indexer.train.pairs import DevSet, TrainingData

    pairs = _pairs()
    dev = DevSet("toy-dev", {"q": pairs[0].anchor}, {p.group: p.positive for p in pairs}, {"q": {"d0"}})
    monkeypatch.setattr(tr, "collect", lambda *a, **k: TrainingData(pairs, [], [dev]))
    monkeypatch.setattr(tr, "base_encoder", lambda device, bf16, max_length=128: _bow_encoder)
    out = tmp_path / "models" / "reranker"
    ts = dataclasses.replace(settings.train_reranker, base_model=str(tiny_bert), output_dir=out, max_steps=3,
                             batch_size=4, max_length=32, warmup_steps=1, dev_queries=1, dev_corpus=6,
                             mixed_precision="no", device="cpu")
    return settings.replace(train_reranker=ts)


def test_training_a_few_steps_writes_a_loadable_reranker_with_a_card(settings, tiny_bert, tmp_path, monkeypatch):
    import dataclasses

    from indexer import registry
    from indexer.reranker import load_reranker
    from indexer.train.models import reranker_card
    from indexer.train.reranker import train_reranker

    tuned = _train(settings, tiny_bert, tmp_path, monkeypatch)
    result = train_reranker(tuned)
    reranker_card(tuned, result, "indexer train-reranker")
    card = json.loads((result.model_dir / registry.CARD).read_text())
    assert card["kind"] == "reranker" and card["command"] == "indexer train-reranker"
    assert set(card["dev_metrics"]) == {"toy-dev_pairwise_accuracy"} and result.steps == 3
    record = json.loads((result.model_dir / "training.json").read_text())
    assert record["mined_negatives"] > 0 and record["rows"]["scifact"] == len(_pairs()) * 2 + record["mined_negatives"]
    found = registry.find(tuned, "reranker")
    assert found is not None and found.path == result.model_dir
    assert registry.detect_kind(result.model_dir) == "reranker"
    (result.model_dir / registry.CARD).unlink()  # without the card the directory is still recognised
    assert registry.detect_kind(result.model_dir) == "reranker"
    search = dataclasses.replace(tuned.search, rerank_backend="torch", rerank_precision="fp32", rerank_max_length=32)
    scores = load_reranker(tuned.replace(search=search)).score("query about warfarin bleeding", PASSAGES)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert train_reranker(tuned).steps == 3  # again, seeded: the same weights
    np.testing.assert_allclose(load_reranker(tuned.replace(search=search)).score("query about warfarin bleeding",
                                                                                PASSAGES), scores, atol=1e-6)


def test_training_refuses_bad_settings(settings):
    import dataclasses

    from indexer.errors import ConfigError
    from indexer.train.reranker import check_settings

    with pytest.raises(ConfigError, match="unknown training source 'pubmed'"):
        check_settings(dataclasses.replace(settings.train_reranker, sources=["pubmed"]))
    with pytest.raises(ConfigError, match="mixed_precision"):
        check_settings(dataclasses.replace(settings.train_reranker, mixed_precision="fp8"))


# ---- searchd eval with the rerank systems, and the web page on its report -------------------------
@pytest.fixture(scope="module")
def eval_report(sample_dir, tiny_bert, tiny_cross_encoder, tmp_path_factory):
    """A tiny eval run: hybrid and hybrid-rerank over the sample corpus, tiny embedder and reranker."""
    import searchd.eval.evaluate
    from searchd.cli import main

    tmp = tmp_path_factory.mktemp("rerank-eval")
    patch = pytest.MonkeyPatch()
    patch.setattr(searchd.eval.evaluate, "embedder_dirs",
                  lambda settings: {"base": tiny_bert, "tuned": None, "configured": tiny_bert})
    sets = [f'eval.index_dir="{tmp / "idx"}"', f'eval.cache_dir="{tmp / "cache"}"', f'eval.output_dir="{tmp / "reports"}"',
            f'train_embedder.output_dir="{tmp / "none"}"', f'search.rerank_model="{tiny_cross_encoder}"',
            "search.rerank_backend=torch", "search.rerank_precision=fp32", "eval.rerank_depth=5",
            "embedder.backend=torch", "embedder.precision=fp32", f'models.exports_dir="{tmp / "exports"}"']
    args = ["eval", "--dataset", str(sample_dir), "--split", "test", "--system", "hybrid", "--system", "hybrid-rerank",
            "--system", "dense-tuned-rerank"] + [a for s in sets for a in ("--set", s)]
    result = CliRunner().invoke(main, args)
    patch.undo()
    assert result.exit_code == 0, result.output
    return tmp / "reports"


def test_eval_runs_the_rerank_systems(eval_report):
    (folder,) = [p.parent for p in eval_report.rglob("results.json")]
    report = json.loads((folder / "results.json").read_text())
    assert set(report["systems"]) == {"hybrid", "hybrid-rerank"}
    assert "dense-tuned-rerank was not run" in report["notes"][0]
    assert "cross-encoder" in report["systems"]["hybrid-rerank"]["embedder_label"]
    assert report["systems"]["hybrid-rerank"]["errors"] == 0 and len(report["query_texts"]) == 6


def _app(reports: Path, settings: Settings):
    import dataclasses

    from web import create_app

    return create_app(settings.replace(eval=dataclasses.replace(settings.eval, output_dir=reports)),
                      search=object()).test_client()


def test_eval_pages_list_and_show_a_report(eval_report, settings):
    client = _app(eval_report, settings)
    index = client.get("/eval")
    assert index.status_code == 200 and "script-src 'self'" in index.headers["Content-Security-Policy"]
    html = index.get_data(as_text=True)
    (report_id,) = [p.parent.relative_to(eval_report).as_posix() for p in eval_report.rglob("results.json")]
    assert f'href="/eval/{report_id}"' in html and "hybrid-rerank" in html
    page = client.get(f"/eval/{report_id}")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "Paired significance" in text and f'src="/eval/{report_id}/metrics.png"' in text
    assert "<script>" not in text and "style=" not in text  # CSP: no inline script or style
    results = json.loads((eval_report / report_id / "results.json").read_text())
    ndcg = results["systems"]["hybrid-rerank"]["mean"]["ndcg@10"]
    assert f"{ndcg:.4f}" in text
    plot = client.get(f"/eval/{report_id}/metrics.png")
    assert plot.status_code == 200 and plot.data[:8] == b"\x89PNG\r\n\x1a\n"
    # every listed query links to its search results, in the winning system's mode
    links = [unescape(h) for h in re.findall(r'<a href="(/\?[^"]+)"', text)]
    per_query = [json.loads(line) for line in (eval_report / report_id / "per_query.jsonl").read_text().splitlines()]
    scores = {}
    for row in per_query:
        scores.setdefault(row["query_id"], {})[row["system"]] = row["ndcg@10"]
    differing = [q for q, s in scores.items() if abs(s["hybrid"] - s["hybrid-rerank"]) > 1e-12]
    assert len(links) == len(differing)
    texts = results["query_texts"]
    assert sorted(parse_qs(urlsplit(link).query)["q"][0] for link in links) == sorted(texts[q] for q in differing)
    assert all(parse_qs(urlsplit(link).query)["mode"] == ["hybrid"] for link in links)


def test_eval_page_comparison_is_chosen_by_get_and_checked(eval_report, settings):
    client = _app(eval_report, settings)
    (report_id,) = [p.parent.relative_to(eval_report).as_posix() for p in eval_report.rglob("results.json")]
    same = client.get(f"/eval/{report_id}?a=hybrid&b=hybrid&metric=map@100")
    assert same.status_code == 200 and "better on 0 queries" in same.get_data(as_text=True)
    assert client.get(f"/eval/{report_id}?a=nope").status_code == 400
    assert client.get("/eval/not-a-report").status_code == 404
    assert client.get("/eval/../../etc/passwd").status_code == 404
    assert client.get(f"/eval/{report_id}/../../x/metrics.png").status_code == 404


def test_eval_index_without_reports(tmp_path, settings):
    page = _app(tmp_path / "absent", settings).get("/eval")
    assert page.status_code == 200 and "No reports yet" in page.get_data(as_text=True)
