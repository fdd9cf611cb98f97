"""Long queries (query by document): term selection, chunked encoding and pooling, the API and web page."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from search_fixtures import KeywordEmbedder, build_sample_index

from indexer.errors import ConfigError
from searchd import long_query
from searchd.query import Query

FACTS = ("The Veteran served in Vietnam as a rifleman and reports mortar attacks on his base. " * 30
         + "A VA examiner diagnosed posttraumatic stress disorder. The stressor was not verified. " * 20)


def test_key_terms_rank_by_tf_idf_worked_by_hand():
    # N = 100 chunks. tf: mortar 3, veteran 2, stressor 1; df: mortar 10, veteran 90, stressor 5, zzz 0.
    # (1 + ln 3) ln 10 = 4.83; (1 + ln 2) ln(100/90) = 0.18; (1 + ln 1) ln 20 = 3.00; zzz matches nothing.
    text = "Mortar mortar MORTAR veteran veteran stressor zzz the of 1999 a"
    df = {"mortar": 10, "veteran": 90, "stressor": 5, "zzz": 0}
    asked = []
    freq = lambda words: asked.extend(words) or [df[w] for w in words]  # noqa: E731
    got = long_query.key_terms(text, freq, 100, 2)
    assert got.include == ("mortar", "stressor") and got.exclude == ()
    assert set(asked) == {"mortar", "veteran", "stressor", "zzz"}  # no stop words, digits or one-letter tokens
    assert long_query.key_terms(text, freq, 100, 10).include == ("mortar", "stressor", "veteran")
    assert math.isclose((1 + math.log(3)) * math.log(10), 4.83, abs_tol=0.01)


def test_key_terms_look_up_a_bounded_number_of_words():
    text = " ".join(f"word{i} " * (1 + i % 3) for i in range(1000))
    asked = []
    long_query.key_terms(text, lambda ws: asked.extend(ws) or [1] * len(ws), 10_000, 32)
    assert len(asked) == long_query.MAX_CANDIDATES


def test_spread_and_pool():
    assert long_query.spread(list("abcdefghij"), 4) == ["a", "d", "g", "j"]
    assert long_query.spread(list("abc"), 8) == ["a", "b", "c"] and long_query.spread(list("abc"), 1) == ["a"]
    v = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    assert np.allclose(long_query.pool(v), [2 ** -0.5, 2 ** -0.5, 0])
    with pytest.raises(ConfigError, match="long_query_pooling 'max'.*mean"):
        long_query.check_pooling("max")


class CountingEmbedder(KeywordEmbedder):
    """The keyword embedder, recording the texts each embed_queries call gets."""

    def __init__(self):
        super().__init__()
        self.queries: list[list[str]] = []

    def embed_queries(self, texts):
        self.queries.append(list(texts))
        return super().embed_queries(texts)


@pytest.mark.parametrize("pooling", ["mean", "rrf"])
def test_long_query_is_encoded_in_chunks_and_pooled(settings, sample_dir, tiny_bert, pooling):
    import dataclasses

    # the chunker is the documents' one: the tiny BERT's WordPiece tokenizer, chunk.max_tokens windows
    s = settings.replace(embedder=dataclasses.replace(settings.embedder, model=str(tiny_bert)),
                         search=dataclasses.replace(settings.search, long_query_chunks=4, long_query_pooling=pooling))
    emb = CountingEmbedder()
    service = build_sample_index(s, sample_dir, emb)
    short = service.search(Query("veteran PTSD stressor", "dense"))
    assert emb.queries[-1] == ["veteran PTSD stressor"] and short.hits
    result = service.search(Query(FACTS, "hybrid"))
    pieces = emb.queries[-1]
    assert len(pieces) == 4 and all(p.strip() and p in FACTS for p in pieces)  # spread over more than 4 chunks
    vector = service._query_vector(FACTS)
    if pooling == "mean":
        assert vector.shape == (emb.dim,) and np.allclose(vector, long_query.pool(emb.embed_documents(pieces)))
    else:
        assert vector.shape == (4, emb.dim)
    assert result.hits and result.hits[0].collection == "sample"
    words = service.keyword_query(FACTS, service.snapshot()).include
    assert 0 < len(words) <= s.search.long_query_terms and "the" not in words and "mortar" in words


def test_api_and_web_accept_a_long_query(settings, sample_dir):
    from searchd.server import create_app as api
    from web import create_app as web
    from web.client import InProcessClient

    service = build_sample_index(settings, sample_dir)
    assert len(FACTS) > 4 * settings.search.long_query_chars and len(FACTS) < settings.search.max_query_chars
    got = api(settings, service).test_client().post("/search", json={"q": FACTS, "mode": "hybrid"})
    assert got.status_code == 200 and got.get_json()["hits"], got.get_data(as_text=True)
    too_long = api(settings, service).test_client().post("/search", json={"q": "x " * settings.search.max_query_chars})
    assert too_long.status_code == 400 and "limit" in too_long.get_json()["error"]["message"]
    page = web(settings, search=InProcessClient(settings, service)).test_client().get("/", query_string={"q": FACTS})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="long-q"' in html and "<details class=\"long-query\" open>" in html
    assert f'maxlength="{settings.search.max_query_chars}"' in html and "result" in html.lower()


def test_bench_long_queries_and_their_rows(settings, sample_dir, tmp_path):
    """`searchd bench --long-queries`: 2,000-5,000-character texts (corpus sentences without legal data), one
    row per mode and filter through the long-query path, and the budget line from the worst p95."""
    from searchd.eval import bench

    bare = settings.replace(data=replace(settings.data, dir=tmp_path / "no-data"))
    sentences = [f"The examiner found sentence {i} about tinnitus and hearing loss." for i in range(50)]
    texts, where = bench._long_queries(bare, 3, sentences)
    assert len(texts) == 3 and "runs of corpus sentences" in where
    assert all(bench.LONG_MIN <= len(t) <= bench.LONG_MAX for t in texts)
    service = build_sample_index(settings, sample_dir)
    rows = []
    measured = bench._long_latency(service, texts, rows)
    assert [(m[0], m[1]) for m in measured] == [(mode, f) for f in ("none", "doc_type (~10%)")
                                                for mode in ("dense", "keyword", "hybrid")]
    assert all(r[0].startswith("long ") and "3 queries" == r[1] for r in rows)
    line = bench._long_floor(measured)
    assert line[2] == ("met" if max(m[3] for m in measured) <= bench.LONG_BUDGET_MS else "NOT met")
    service.close()
