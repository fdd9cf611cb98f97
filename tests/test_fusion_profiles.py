"""Which fusion a hybrid query gets (searchd/profiles.py): the kind's profile, learned weights, the user's settings."""
from __future__ import annotations

import dataclasses
import json

import pytest
from search_fixtures import KeywordEmbedder, sample_chunker, sample_documents

from indexer import pipeline
from indexer.errors import ConfigError
from indexer.settings import load_settings, parse_fusion_spec
from searchd import fusion
from searchd.profiles import LEARNED_FILE, save_learned
from searchd.query import Query
from searchd.service import SearchService

Q = "warfarin bleeding malpractice"


def _service(settings, sample_dir, split: bool = False) -> SearchService:
    """The sample corpus (9 legal documents, 3 PubMed abstracts) in one collection, or with `split` in two:
    "cases" (the legal ones) and "abstracts"."""
    docs = sample_documents(sample_dir)
    store = pipeline.open_store(settings)
    if split:
        store.upsert_documents("cases", [d for d in docs if d.meta.get("source") != "pubmed"], sample_chunker)
        store.upsert_documents("abstracts", [d for d in docs if d.meta.get("source") == "pubmed"], sample_chunker)
    else:
        store.upsert_documents("sample", docs, sample_chunker)
    pipeline.sync(settings, store, KeywordEmbedder())
    store.close()
    store, index, manifest = pipeline.open_index(settings)
    return SearchService(store, index, KeywordEmbedder(), settings, manifest)


def _with(settings, **search):
    return settings.replace(search=dataclasses.replace(settings.search, **search))


def test_a_legal_index_gets_the_legal_profile_and_the_answer_says_so(settings, sample_dir):
    with _service(settings, sample_dir) as service:
        result = service.search(Query(Q, "hybrid", k=5))
        assert result.fusion == {"profile": "legal", "rule": "zscore", "dense_weight": 1.0, "keyword_weight": 2.0,
                                 "depth": 100, "reason": "9 of 12 documents are legal"}
        assert result.to_dict()["fusion"]["profile"] == "legal"
        assert result.hits[0].score != 0  # raw fused scores stay in the hits
        assert service.search(Query(Q, "dense", k=5)).fusion is None
        assert service.search(Query(Q, "keyword", k=5)).fusion is None


def test_a_filter_to_medical_documents_gets_the_settings(settings, sample_dir):
    with _service(settings, sample_dir) as service:
        medical = service.search(Query(Q, "hybrid", k=5, filters={"source": ("pubmed",)})).fusion
        assert (medical["profile"], medical["dense_weight"], medical["keyword_weight"], medical["depth"]) == \
            ("settings", 3.0, 1.0, 20)
        assert medical["reason"] == "0 of 3 documents are legal: no profile for that"
        service.settings = _with(settings, fusion_profiles={"legal": "zscore 1:2 w100", "medical": "rrf 1:1"})
        assert service.fusion_choice(Query(Q, "hybrid", filters={"source": ("pubmed",)})).profile == "medical"


def test_the_collection_filter_picks_the_profile_of_a_mixed_index(settings, sample_dir):
    with _service(settings, sample_dir, split=True) as service:
        assert service.fusion_choice(Query(Q, "hybrid", filters={"collection": ("cases",)})).profile == "legal"
        assert service.fusion_choice(Query(Q, "hybrid", filters={"collection": ("abstracts",)})).profile == "settings"
        assert service.fusion_choice(Query(Q, "hybrid")).profile == "legal"  # 9 of 12 unfiltered
        both = service.search(Query(Q, "hybrid", k=5, filters={"collection": ("abstracts",)}))
        assert {h.collection for h in both.hits} == {"abstracts"}


def test_settings_the_user_gave_win_over_profiles(settings, sample_dir, tmp_path):
    explicit = load_settings(settings.root / "config.toml", [f'index.dir="{tmp_path / "index"}"',
                                                            "search.dense_weight=3"])  # the default value, given
    assert explicit.is_set("search.dense_weight") and not explicit.is_set("search.keyword_weight")
    with _service(settings, sample_dir) as service:
        service.settings = explicit
        choice = service.fusion_choice(Query(Q, "hybrid"))
        assert (choice.profile, choice.dense_weight, choice.keyword_weight) == ("settings", 3.0, 1.0)
        assert choice.reason == "set by the user: search.dense_weight"
        service.settings = _with(settings, keyword_weight=5.0)  # differs from its default: set
        assert service.fusion_choice(Query(Q, "hybrid")).keyword_weight == 5.0
        service.settings = _with(settings, fusion_profile="settings")
        assert service.fusion_choice(Query(Q, "hybrid")).profile == "settings"
        service.settings = _with(settings, fusion_profile="legal")
        assert service.fusion_choice(Query(Q, "hybrid", filters={"source": ("pubmed",)})).profile == "legal"


def test_saved_weights_are_picked_up_and_followed(settings, sample_dir):
    with _service(settings, sample_dir) as service:
        save_learned(settings.index.dir, ["sample"], {"spec": "rrf 1:1", "queries": 6})
        result = service.search(Query(Q, "hybrid", k=12))
        assert result.fusion["profile"] == "learned:sample" and result.fusion["rule"] == "rrf"
        dense = service.search(Query(Q, "dense", k=12)).hits
        keyword = service.search(Query(Q, "keyword", k=20)).hits
        expected: dict[str, float] = {}
        for ranking in (dense, keyword):
            for rank, h in enumerate(ranking, 1):
                expected[h.external_id] = expected.get(h.external_id, 0.0) + 1.0 / (60 + rank)
        for h in result.hits:
            assert h.score == pytest.approx(expected[h.external_id])
        save_learned(settings.index.dir, ["other"], {"spec": "minmax 2:1"})  # kept beside, not for this collection
        assert set(json.loads((settings.index.dir / LEARNED_FILE).read_text())["collections"]) == {"sample", "other"}
        assert service.fusion_choice(Query(Q, "hybrid")).rule == "rrf"
        save_learned(settings.index.dir, ["sample"], {"spec": "minmax 2:1 w50"})  # a new file is read again
        choice = service.fusion_choice(Query(Q, "hybrid"))
        assert (choice.rule, choice.dense_weight, choice.depth) == ("minmax", 2.0, 50)
        # learned weights belong to the collection, whatever kind its documents are
        assert service.fusion_choice(Query(Q, "hybrid", filters={"source": ("pubmed",)})).profile == "learned:sample"


def test_a_deeper_fusion_keeps_the_size_of_the_windows_union():
    dense = [(d, d, 1.0 - d / 10) for d in (1, 2, 3, 4, 5, 6)]
    lexical = [(d, d, 10.0 - d) for d in (6, 5, 1, 7, 8, 9)]
    fused = fusion.fuse_windows(dense, lexical, "rrf", [1.0, 1.0], window=2)
    assert len(fused) == len({1, 2} | {6, 5}) == 4
    # the deep lists reorder: 1 (ranks 1 and 3) and 5, 6 (in both lists) lead 2, which is in one list only
    assert [d for d, _, _ in fused] == [1, 6, 5, 2]
    assert fusion.fuse_windows(dense[:2], lexical[:2], "rrf", [1.0, 1.0], window=2) == \
        fusion.fuse([dense[:2], lexical[:2]], [1.0, 1.0], "rrf")


def test_the_legal_result_set_counts_what_result_window_chose(settings, sample_dir):
    settings = _with(settings, result_window=4)
    with _service(settings, sample_dir) as service:
        result = service.search(Query(Q, "hybrid", k=12))
        dense = {h.external_id for h in service.search(Query(Q, "dense", k=4)).hits}
        keyword = {h.external_id for h in service.search(Query(Q, "keyword", k=4)).hits}
        assert result.fusion["depth"] == 100 and result.total == len(dense | keyword) == len(result.hits)


def test_bad_profiles_are_errors_naming_them():
    assert parse_fusion_spec("zscore 1:2 w100") == ("zscore", 1.0, 2.0, 100)
    assert parse_fusion_spec("rrf 1.5:1") == ("rrf", 1.5, 1.0, 0)
    with pytest.raises(ConfigError, match="'zscore 1-2'"):
        parse_fusion_spec("zscore 1-2")
    with pytest.raises(ConfigError, match="unknown kind 'patents'"):
        load_settings(None, ['search.fusion_profiles={patents = "rrf 1:1"}'])
    with pytest.raises(ConfigError, match="search.fusion_profile 'law'"):
        load_settings(None, ["search.fusion_profile=law"])


def test_the_json_api_says_which_fusion_ran(settings, sample_dir):
    from searchd.server import create_app

    with _service(settings, sample_dir) as service:
        client = create_app(settings, service).test_client()
        body = client.get("/search?q=warfarin+bleeding&mode=hybrid&k=3").get_json()
        assert body["fusion"]["profile"] == "legal" and body["fusion"]["keyword_weight"] == 2.0
        medical = client.get("/search?q=warfarin+bleeding&mode=hybrid&k=3&source=pubmed").get_json()["fusion"]
        assert (medical["profile"], medical["dense_weight"]) == ("settings", 3.0)
        assert client.get("/search?q=warfarin&mode=keyword").get_json()["fusion"] is None
