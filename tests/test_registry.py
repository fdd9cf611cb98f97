"""The models search path: tiny model directories found by card or by their files, first match wins."""
from __future__ import annotations

import json

import pytest

from indexer import registry
from indexer.errors import ModelError
from indexer.models import packaged_model_dir, resolve_embedder_dir
from indexer.ner import resolve_tagger_dir


def tagger_dir(path, dev_f1=0.8):
    path.mkdir(parents=True)
    history = [{"epoch": 1, "dev_f1": dev_f1 - 0.1}, {"epoch": 2, "dev_f1": dev_f1}]
    (path / "tagger.json").write_text(json.dumps({"training": {"train": ["x.txt"], "history": history,
                                                               "total_seconds": 12.0}}))
    return path


def embedder_dir(path, card=True):
    path.mkdir(parents=True)
    for name in ("modules.json", "config.json"):
        (path / name).write_text("{}")
    if card:
        (path / registry.CARD).write_text(json.dumps({"kind": "embedder", "dev_metrics": {"ndcg@10": 0.5},
                                                      "training_seconds": 60, "device": "cpu", "commit": "abc1234"}))
    return path


def with_path(settings, tmp_path, *entries):
    from indexer.settings import ModelsSettings

    return settings.replace(models=ModelsSettings(path=list(entries)),
                            data=settings.data.__class__(dir=tmp_path / "data"))


def test_search_path_order_and_data_dir_token(settings, tmp_path):
    s = with_path(settings, tmp_path, str(tmp_path / "mine"), "{data_dir}/../models")
    assert registry.search_path(s) == [(tmp_path / "mine").resolve(), (tmp_path / "models").resolve()]


def test_models_found_by_card_or_files_and_first_wins(settings, tmp_path):
    s = with_path(settings, tmp_path, str(tmp_path / "mine"), str(tmp_path / "shared"))
    shared_tagger = tagger_dir(tmp_path / "shared" / "ner-bc5cdr", dev_f1=0.84)
    embedder_dir(tmp_path / "shared" / "emb")
    assert resolve_tagger_dir(s) == shared_tagger
    assert resolve_embedder_dir(s) == tmp_path / "shared" / "emb"
    card = registry.find(s, "tagger").card
    assert card["dev_metrics"] == {"micro_f1": 0.84} and card["training_seconds"] == 12.0
    mine = tagger_dir(tmp_path / "mine" / "ner")
    assert resolve_tagger_dir(s) == mine, "a model trained here shadows the shared one"
    kinds = [(m.kind, m.path.name) for m in registry.find_models(s)]
    assert kinds == [("tagger", "ner"), ("embedder", "emb"), ("tagger", "ner-bc5cdr")]
    assert "ndcg@10 0.5000" in registry.find(s, "embedder").summary()


def test_nothing_found_falls_back(settings, tmp_path):
    s = with_path(settings, tmp_path, str(tmp_path / "absent"))
    assert resolve_tagger_dir(s) is None and resolve_embedder_dir(s) == packaged_model_dir()
    text = "\n".join(registry.describe(s))
    assert "(absent)" in text and "no tagger" in text and "indexer train-models" in text


def test_bad_card_is_an_error_naming_it(settings, tmp_path):
    s = with_path(settings, tmp_path, str(tmp_path / "mine"))
    bad = tmp_path / "mine" / "odd"
    bad.mkdir(parents=True)
    (bad / registry.CARD).write_text(json.dumps({"kind": "classifier"}))
    with pytest.raises(ModelError, match="'classifier'; valid kinds: embedder, tagger, reranker"):
        registry.find_models(s)


def test_writable_root_and_card(settings, tmp_path):
    s = with_path(settings, tmp_path, str(tmp_path / "new" / "models"))
    root = registry.writable_root(s)
    assert root.is_dir()
    model = embedder_dir(root / "embedder", card=False)
    registry.write_card(model, "embedder", "indexer train-models", ["scifact"], {"ndcg@10": 0.7}, 3.2, "cpu",
                        tmp_path)
    found = registry.find(s, "embedder")
    assert found.card["command"] == "indexer train-models" and found.card["dev_metrics"] == {"ndcg@10": 0.7}
