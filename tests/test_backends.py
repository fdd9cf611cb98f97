"""Inference backends: every variant of a tiny model against torch, the export cache, the gate, mixed builds."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from indexer import pipeline
from indexer.errors import ConfigError, IndexMismatchError, ModelError
from indexer.inference import TORCH, Variant, all_variants, available_variants, installed
from indexer.inference import exports as ex
from indexer.inference.gate import Measured, choose, gate, measured_from, write_record
from indexer.inference.select import choice_for, machine_id, resolve
from indexer.settings import EmbedderSettings
from tests.search_fixtures import KeywordEmbedder, build_sample_index

TEXTS = ["Warfarin raised the bleeding risk in elderly patients.", "The veteran was denied service connection for PTSD.",
         "No fever.", "Lithium toxicity presented with tremor, confusion and acute kidney injury after dehydration."]
EXPORTED = [v for v in all_variants() if v != TORCH]


def needs(variant: Variant):
    return pytest.mark.skipif(not installed(variant.backend), reason=f"{variant.backend} runtime not installed")


def embedder(model_dir, variant: Variant, exports, prepare=True):
    from indexer.embedder import SentenceTransformerEmbedder

    settings = EmbedderSettings(backend=variant.backend, precision=variant.precision, device="cpu")
    return SentenceTransformerEmbedder(model_dir, settings, exports, prepare, calibration=lambda: TEXTS * 8)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def torch_vectors(tiny_bert, exports):
    return embedder(tiny_bert, TORCH, exports).embed_documents(TEXTS)


@pytest.mark.parametrize("variant", [pytest.param(v, marks=needs(v), id=str(v)) for v in EXPORTED])
def test_each_backend_gives_torchs_vectors(tiny_bert, exports, torch_vectors, variant):
    model = embedder(tiny_bert, variant, exports)
    assert (model.backend, model.precision) == (variant.backend, variant.precision)
    vectors = model.embed_documents(TEXTS)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(vectors * torch_vectors, axis=1)) >= 0.99
    assert model.embed_queries([]).shape == (0, model.dim)


@pytest.mark.parametrize("variant", [pytest.param(v, marks=needs(v), id=str(v))
                                     for v in (Variant("onnx", "fp32"), Variant("openvino", "fp32"))])
def test_several_streams_give_one_streams_vectors_in_order(tiny_bert, exports, variant):
    from indexer.embedder import SentenceTransformerEmbedder

    texts = [f"{t} ({i})" for i, t in enumerate(TEXTS * 6)]  # 24 texts: 6 batches of 4
    one, two = (SentenceTransformerEmbedder(tiny_bert, EmbedderSettings(backend=variant.backend, device="cpu",
                                                                        precision=variant.precision, batch_size=4,
                                                                        threads=2, streams=n), exports, True)
                for n in (1, 2))
    assert (one.session.streams, two.session.streams) == (1, 2)
    assert np.allclose(two.embed_documents(texts), one.embed_documents(texts), atol=1e-5)
    queries = SentenceTransformerEmbedder(tiny_bert, EmbedderSettings(backend=variant.backend, device="cpu",
                                                                      precision=variant.precision, streams=2),
                                          exports, True, purpose="query")
    assert queries.session.streams == 1  # one query at a time wants every thread on it
    assert two.session.map(lambda x: x * x, range(7)) == [x * x for x in range(7)]
    with pytest.raises(ValueError, match="streams -1"):
        type(one.session)(one.session.path, variant, 1, -1)


@pytest.mark.skipif(not installed("openvino"), reason="openvino not installed")
def test_openvino_query_encoder_pads_one_query_to_a_fixed_shape(tiny_bert, exports):
    from indexer.embedder import QUERY_LENGTHS, SentenceTransformerEmbedder

    settings = EmbedderSettings(backend="openvino", precision="fp32", device="cpu")
    build = SentenceTransformerEmbedder(tiny_bert, settings, exports, True)
    query = SentenceTransformerEmbedder(tiny_bert, settings, exports, True, purpose="query")
    assert sorted(query.session._static) == list(QUERY_LENGTHS) and not build.session._static
    texts = ["PTSD", "nexus opinion for tinnitus from artillery noise " * 3, "warfarin bleeding " * 40]  # 3, ~35, >64
    widths = [len(ids) for ids in query.tokenizer(texts)["input_ids"]]
    assert widths[0] < 16 < widths[1] <= 64 < widths[2]
    for text in texts:  # one at a time, as searchd asks: padded to 16, to 32, and the dynamic graph
        want, got = build.embed_queries([text])[0], query.embed_queries([text])[0]
        assert float(want @ got) >= 0.9999
    assert len(query.session._local.requests) == 3  # one request per graph used: 16, 32 and the dynamic one
    assert np.allclose(query.embed_queries(texts), build.embed_queries(texts), atol=1e-5)  # a batch: dynamic


@pytest.mark.skipif(not installed("onnx"), reason="onnxruntime not installed")
def test_tagging_several_batches_at_once_tags_as_one_at_a_time(tiny_bert, tmp_path, settings):
    from indexer.ner import BertCrfTagger, use_backend
    from tests.test_ner import tiny_tagger

    tiny_tagger(tiny_bert).save(tmp_path / "tagger")
    texts = [f"{t} Case {i}." for i, t in enumerate(TEXTS * 5)]
    tagged = []
    for streams in (1, 2):
        s = settings.replace(ner=dataclasses.replace(settings.ner, backend="onnx", precision="fp32", device="cpu",
                                                     threads=2, streams=streams),
                             models=dataclasses.replace(settings.models, exports_dir=tmp_path / "exports"))
        tagger = use_backend(BertCrfTagger.load(tmp_path / "tagger", batch_size=2), tmp_path / "tagger", s, "cpu")
        assert tagger.model.encoder.session.streams == streams == tagger.model.head.session.streams
        tagged.append(tagger.tag(texts))
    assert tagged[0] == tagged[1] and any(tagged[0])


@pytest.mark.parametrize("variant", [pytest.param(v, marks=[needs(v)] + ([] if v == Variant("onnx", "int8") else
                                                                        [pytest.mark.slow]), id=str(v))
                                     for v in EXPORTED])
def test_tagger_encoder_backends_give_torchs_emissions(tiny_bert, tmp_path, settings, sample_dir, variant):
    import torch

    from indexer.ner import BertCrfTagger, encode_words, use_backend
    from tests.search_fixtures import sample_chunker, sample_documents
    from tests.test_ner import tiny_tagger

    tiny_tagger(tiny_bert).save(tmp_path / "tagger")
    reference = BertCrfTagger.load(tmp_path / "tagger")
    store = pipeline.open_store(settings)  # int8 OpenVINO calibrates on the store's chunks
    store.upsert_documents("sample", sample_documents(sample_dir), sample_chunker)
    store.close()
    s = settings.replace(ner=dataclasses.replace(settings.ner, backend=variant.backend, precision=variant.precision,
                                                 device="cpu"),
                         models=dataclasses.replace(settings.models, exports_dir=tmp_path / "exports"))
    exported = use_backend(BertCrfTagger.load(tmp_path / "tagger"), tmp_path / "tagger", s, "cpu")
    assert exported.choice.variant == variant
    batch = encode_words(reference.tokenizer, [t.split() for t in TEXTS], 64)
    with torch.no_grad():  # eval(): no dropout
        want, got = reference.model.eval().emissions(batch), exported.model.eval().emissions(batch)
    mask = batch["word_mask"]
    assert torch.nn.functional.cosine_similarity(want[mask], got[mask], dim=-1).min() >= 0.99
    assert exported.checksum == reference.checksum + ("" if variant.exact else f"+{variant}")


@pytest.mark.skipif(not installed("onnx"), reason="onnxruntime not installed")
def test_missing_or_stale_export_is_rebuilt_by_indexer_and_refused_by_searchd(tiny_bert, tmp_path):
    from indexer.embedder import model_checksum

    onnx = Variant("onnx", "fp32")
    with pytest.raises(ModelError, match=r"onnx-fp32 export .* is missing .*run `indexer export-models`"):
        embedder(tiny_bert, onnx, tmp_path, prepare=False)
    said: list[str] = []
    checksum = model_checksum(tiny_bert)
    path = ex.ensure(tmp_path, checksum, onnx, "embedder", tiny_bert, lambda: TEXTS, said.append)
    assert path == tmp_path / checksum / "onnx-fp32" / "model.onnx" and any("exporting" in m for m in said)
    assert ex.staleness(tmp_path, checksum, onnx, "embedder") is None
    said.clear()
    ex.ensure(tmp_path, checksum, onnx, "embedder", tiny_bert, lambda: TEXTS, said.append)
    assert said == []  # current: nothing is exported again
    meta = path.parent / ex.META
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": ex.FORMAT - 1}))
    assert ex.staleness(tmp_path, checksum, onnx, "embedder").startswith("stale: format")
    with pytest.raises(ModelError, match="is stale: format"):
        embedder(tiny_bert, onnx, tmp_path, prepare=False)
    ex.ensure(tmp_path, checksum, onnx, "embedder", tiny_bert, lambda: TEXTS, said.append)
    assert any("(stale: format" in m for m in said) and ex.staleness(tmp_path, checksum, onnx, "embedder") is None
    assert not list(tmp_path.glob(f"{checksum}/.*.tmp"))


def test_gate_on_hand_made_metrics():
    reference = {"scifact/ndcg@10": 0.700, "nfcorpus/ndcg@10": 0.300}
    assert gate(reference, {"scifact/ndcg@10": 0.696, "nfcorpus/ndcg@10": 0.295}).passed  # drops .004 and .005
    failed = gate(reference, {"scifact/ndcg@10": 0.710, "nfcorpus/ndcg@10": 0.2939})  # a gain does not offset a drop
    assert not failed.passed and failed.worst_metric == "nfcorpus/ndcg@10" and failed.worst_drop == pytest.approx(0.0061)
    assert not gate(reference, {"scifact/ndcg@10": 0.71}).passed  # a metric not measured fails
    assert not gate({}, {"x": 1.0}).passed
    assert gate({"micro_f1": 0.85}, {"micro_f1": 0.8451}).passed


def test_auto_takes_the_fastest_variant_that_passes():
    reference = {"ndcg@10": 0.70}
    measured = [Measured(TORCH, reference, 40.0), Measured(Variant("onnx", "fp32"), {"ndcg@10": 0.70}, 50.0),
                Measured(Variant("onnx", "int8"), {"ndcg@10": 0.699}, 90.0),
                Measured(Variant("openvino", "int8"), {"ndcg@10": 0.69}, 150.0)]
    best, reason = choose(reference, measured, [m.variant for m in measured])
    assert best == Variant("onnx", "int8") and "2.25x torch fp32" in reason and "failed the gate: openvino-int8" in reason
    assert choose(reference, measured, [TORCH, Variant("onnx", "fp32")])[0] == Variant("onnx", "fp32")
    assert choose(reference, [], [TORCH]) is None


def test_queries_take_the_lowest_query_latency_that_passes():
    """Builds by throughput, searchd's queries by one query's p50; without a recorded p50, throughput decides."""
    reference = {"ndcg@10": 0.70}
    ov, onnx, int8 = Variant("openvino", "fp32"), Variant("onnx", "fp32"), Variant("onnx", "int8")
    measured = [Measured(TORCH, reference, 40.0, 14.5), Measured(ov, reference, 47.0, 4.4),
                Measured(onnx, reference, 41.0, 2.8), Measured(int8, {"ndcg@10": 0.69}, 64.0, 1.7)]
    allowed = [m.variant for m in measured]
    assert choose(reference, measured, allowed)[0] == ov
    best, reason = choose(reference, measured, allowed, purpose="query")
    assert best == onnx and "2.8 ms p50" in reason and "torch fp32 14.5 ms" in reason and "onnx-int8" in reason
    untimed = [dataclasses.replace(m, query_ms=None) for m in measured]
    assert choose(reference, untimed, allowed, purpose="query")[0] == ov
    record = {"machine": "cpu-a", "measured": [{"variant": "torch-fp32", "metrics": reference, "speed": 40.0,
                                                "query_p50_ms": 14.5}]}
    assert measured_from(record)[1][0].query_ms == 14.5
    if installed("onnx") and installed("openvino"):
        assert resolve("auto", "auto", None, "x").variant == ov  # no record: batches on OpenVINO
        no_record = resolve("auto", "auto", None, "x", "query")
        assert no_record.variant == onnx and "no quality-gate record" in no_record.reason
    with pytest.raises(ValueError, match="purpose"):
        resolve("auto", "auto", None, "x", "serve")


@pytest.mark.skipif(not (installed("onnx") and installed("openvino")), reason="needs onnxruntime and openvino")
def test_query_encoder_falls_back_to_the_build_export_when_its_own_is_missing(tiny_bert, tmp_path):
    from indexer.embedder import SentenceTransformerEmbedder, model_checksum

    checksum = model_checksum(tiny_bert)
    auto = EmbedderSettings(backend="auto", precision="fp32", device="cpu")
    build = SentenceTransformerEmbedder(tiny_bert, auto, tmp_path, True, lambda: TEXTS)  # makes openvino-fp32 (+ onnx)
    assert str(build.choice.variant) == "openvino-fp32"
    query = SentenceTransformerEmbedder(tiny_bert, auto, tmp_path, False, purpose="query")
    assert str(query.choice.variant) == "onnx-fp32"  # its export was made as OpenVINO's source
    np.testing.assert_allclose(query.embed_queries(TEXTS[:2]), build.embed_queries(TEXTS[:2]), atol=1e-4)
    (tmp_path / checksum / "onnx-fp32" / ex.META).unlink()
    fallback = SentenceTransformerEmbedder(tiny_bert, auto, tmp_path, False, purpose="query")
    assert str(fallback.choice.variant) == "openvino-fp32" and "onnx-fp32 sooner" in fallback.choice.reason


def test_resolve_reads_the_record_of_this_machine_only():
    record = {"machine": "cpu-a", "tolerance": 0.005, "measured": [
        {"variant": "torch-fp32", "metrics": {"f1": 0.8}, "speed": 10.0},
        {"variant": "onnx-int8", "metrics": {"f1": 0.799}, "speed": 30.0}]}
    assert measured_from(record)[0] == {"f1": 0.8}
    if installed("onnx"):
        assert resolve("auto", "auto", record, "cpu-a").variant == Variant("onnx", "int8")
        assert resolve("onnx", "auto", record, "cpu-a").variant == Variant("onnx", "int8")
        other = resolve("auto", "auto", record, "cpu-b")
        assert other.variant.exact and "no quality-gate record" in other.reason and "searchd gate" in other.reason
    assert resolve("torch", "fp32", record, "cpu-a").reason == "configured"
    assert resolve("auto", "auto", None, "x").variant.precision == "fp32"
    with pytest.raises(ConfigError, match="valid: .*'onnx-int8'"):
        resolve("torch", "int8", None, "x")


def test_choice_for_cuda_and_without_exports(tmp_path):
    assert choice_for("auto", "auto", "cuda", tmp_path, "abc").variant == TORCH
    assert choice_for("auto", "auto", "cpu", None, "abc").variant == TORCH
    write_record(tmp_path / "abc", {"machine": machine_id(), "measured": [
        {"variant": "torch-fp32", "metrics": {"m": 1.0}, "speed": 1.0}]})
    assert choice_for("auto", "auto", "cpu", tmp_path, "abc").variant == TORCH  # only torch measured: torch


class Variantly(KeywordEmbedder):
    """The keyword fake, labelled as another backend, optionally with its vectors rotated away."""

    def __init__(self, backend: str, precision: str, skew: float = 0.0):
        super().__init__()
        self.backend, self.precision, self.skew = backend, precision, skew

    def embed_documents(self, texts):
        v = super().embed_documents(texts)
        if self.skew and len(v):
            v = v + self.skew * np.roll(v, 1, axis=1)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
        return v


def test_mixed_backend_build_is_refused_unless_vectors_agree(settings, sample_dir):
    from tests.search_fixtures import sample_chunker, sample_documents

    build_sample_index(settings, sample_dir).close()
    store = pipeline.open_store(settings)
    store.upsert_documents("more", [dataclasses.replace(d, id=f"more-{d.id}") for d in sample_documents(sample_dir)][:3],
                           sample_chunker)
    with pytest.raises(IndexMismatchError, match=r"holds torch-fp32 vectors .* runs onnx-int8.*indexer build --rebuild"):
        pipeline.sync(settings, store, Variantly("onnx", "int8", skew=0.5))
    manifest = pipeline.sync(settings, store, Variantly("onnx", "fp32", skew=0.01))  # cosine ~0.9999: compatible
    assert pipeline.variant_of(manifest["embedder"]) == "torch-fp32"
    assert manifest["embedder"]["extended_with"]["onnx-fp32"] >= 0.99
    rebuilt = pipeline.sync(settings, store, Variantly("onnx", "int8", skew=0.5), rebuild=True)
    assert pipeline.variant_of(rebuilt["embedder"]) == "onnx-int8" and "extended_with" not in rebuilt["embedder"]
    store.close()


def test_gate_measures_only_the_named_variants_and_keeps_the_rest(settings, tmp_path, monkeypatch):
    """`searchd gate --variant V`: V measured again, the record's other rows kept, the reference measured only
    when the record lacks it; other evaluation options, or a record of another CPU, are not mixed in."""
    import indexer.embedder
    import indexer.ner
    import searchd.eval.gate as sg
    import searchd.eval.inference as si
    from indexer.inference.gate import read_record

    model = tmp_path / "tagger"
    (model / "encoder").mkdir(parents=True)
    monkeypatch.setattr(indexer.ner, "resolve_tagger_dir", lambda s: model)
    monkeypatch.setattr(indexer.embedder, "model_checksum", lambda d: "abc")
    scored = []

    def quality(s, variant, limit):
        scored.append((str(variant), limit))
        return {"f1": 0.80 if variant == TORCH else 0.79}

    monkeypatch.setattr(sg, "tagger_quality", quality)
    monkeypatch.setattr(si, "measure", lambda overrides, kind, variant, n, q: {"threads": {"2": {"items_per_s": 7.0}}})
    folder = settings.models.exports_dir / "abc"
    rows = [{"variant": str(v), "metrics": {"f1": 0.8}, "speed": 1.0} for v in available_variants()]
    how = {"corpus_sample": "full corpus", "max_queries": "all", "ner_documents": 150, "seed": settings.eval.sample_seed}
    write_record(folder, {"machine": machine_id(), "measured": rows, "how": how})
    said = []
    sg.run_gate(settings, ("tagger",), 0, None, 150, said.append, only=("onnx-int8",))
    record = read_record(folder)
    by = {r["variant"]: r for r in record["measured"]}
    assert scored == [("onnx-int8", 150)] and by["onnx-int8"]["speed"] == 7.0 and by["onnx-int8"]["metrics"] == {"f1": 0.79}
    assert [r["variant"] for r in record["measured"]] == [r["variant"] for r in rows]  # the others kept, in order
    assert all(by[r["variant"]] == r for r in rows if r["variant"] != "onnx-int8") and record["how"] == how
    assert any("onnx-int8" in m and "failed" in m for m in said)  # 0.79 against the kept reference 0.80
    with pytest.raises(ModelError, match="ner_documents 150.*ner_documents 20"):  # other options: not mixed
        sg.run_gate(settings, ("tagger",), 0, None, 20, said.append, only=("onnx-int8",))
    with pytest.raises(ConfigError, match="valid:"):
        sg.run_gate(settings, ("tagger",), 0, None, 150, said.append, only=("onnx-int4",))
    write_record(folder, {"machine": "another cpu", "measured": rows, "how": how})
    scored.clear()
    sg.run_gate(settings, ("tagger",), 0, None, 150, said.append, only=("onnx-int8",))
    assert scored == [("torch-fp32", 150), ("onnx-int8", 150)]  # no reference here: torch measured too
    assert [r["variant"] for r in read_record(folder)["measured"]] == ["torch-fp32", "onnx-int8"]


def test_auto_offers_bf16_only_where_the_cpu_computes_in_it(monkeypatch):
    """Without AVX512_BF16/AMX OpenVINO runs a bf16 hint in fp32: auto and the gate leave that name out, so a
    noisy timing of the same graph cannot win under it; asked for by name it still runs."""
    import indexer.inference as inf

    record = {"machine": "cpu-a", "measured": [
        {"variant": "torch-fp32", "metrics": {"m": 0.7}, "speed": 10.0, "query_p50_ms": 16.0},
        {"variant": "openvino-fp32", "metrics": {"m": 0.7}, "speed": 20.0, "query_p50_ms": 9.9},
        {"variant": "openvino-bf16", "metrics": {"m": 0.7}, "speed": 30.0, "query_p50_ms": 5.2}]}
    if not installed("openvino"):
        pytest.skip("openvino runtime not installed")
    for native, build, query in [(False, "openvino-fp32", "openvino-fp32"), (True, "openvino-bf16", "openvino-bf16")]:
        monkeypatch.setattr(inf, "native_bf16", lambda: native)
        assert str(resolve("auto", "auto", record, "cpu-a").variant) == build
        assert str(resolve("auto", "auto", record, "cpu-a", "query").variant) == query
        assert (Variant("openvino", "bf16") in inf.available_variants()) is native
        assert str(resolve("openvino", "bf16", record, "cpu-a").variant) == "openvino-bf16"  # by name: as asked


def test_a_child_that_cannot_measure_is_a_failed_row(monkeypatch):
    import subprocess

    from searchd.eval import inference

    out = {"embedder": '{"items_per_s": 10.0, "tokens_per_s": 1000.0, "query_p50_ms": 2.0, "query_p99_ms": 3.0, '
                       '"rss_mb": 100.0}',
           "tagger": '{"error": "no tagger on the models search path", "rss_mb": 90.0}'}
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, out[cmd[3]] + "\n", ""))
    monkeypatch.setattr(inference, "available_variants", lambda: [TORCH])
    rows, results = inference.table([], n_texts=4, n_queries=2)
    assert rows[0][0] == "embedder torch-fp32" and "10.0 chunks/s" in rows[0][1]
    assert rows[1][:2] == ("tagger torch-fp32", "failed") and "no tagger" in rows[1][2]
    assert [r[0] for r in inference.floors(results)] == ["floor: build encoding >= 3x torch fp32"]
