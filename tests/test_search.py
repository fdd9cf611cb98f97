"""SearchService on the sample corpus with the keyword embedder: filters vs brute force, keyword
parsing under hostile input, hybrid fusion, paging, facets vs SQL, snippets, documents, similar."""
from __future__ import annotations

import dataclasses

import random

import numpy as np
import pytest
from search_fixtures import (KeywordEmbedder, brute_keyword, build_sample_index, matching_documents, sample_chunker,
                             sample_documents)

from indexer.documents import Document, Mention
from indexer.errors import DocumentNotFound, QueryError
from indexer.pipeline import embed_text
from indexer.store import StoreTimeout
from searchd import fusion
from searchd.keyword import fts_query, parse
from searchd.query import Query


@pytest.fixture
def service(settings, sample_dir):
    return build_sample_index(settings, sample_dir)


@pytest.fixture(scope="module")
def docs(sample_dir):
    return {d.id: d for d in sample_documents(sample_dir)}


def passes(doc: Document, filters: dict, year_from=None, year_to=None) -> bool:
    """The filter semantics, computed from the Document objects (independently of SQL)."""
    for name, values in filters.items():
        if name in ("source", "doc_type", "court"):
            if doc.meta.get(name) not in values:
                return False
        elif name == "collection":
            if "sample" not in values:
                return False
        elif not any(m.label.lower() == name and m.norm_id in values and m.negation == "affirmed"
                     for m in doc.mentions):
            return False
    year = int(doc.meta["date"][:4])
    return (year_from is None or year >= year_from) and (year_to is None or year <= year_to)


def brute_force(service, docs, q, allowed_ids):
    """Document -> best chunk score, by encoding every chunk of every allowed document."""
    emb, qv = service.embedder, service.embedder.embed_queries([q])[0]
    best = {}
    for doc in docs.values():
        if doc.id in allowed_ids:
            texts = [embed_text(doc.title, c.text, service.settings) for c in sample_chunker(doc)]
            best[doc.id] = float((emb.embed_documents(texts) @ qv).max())
    return best


SELECTIVITIES = [
    ({}, None, None),  # all 12 documents
    ({"doc_type": ("decision",)}, None, None),
    ({"disease": ("MESH:D013313",)}, None, None),  # PTSD: 3 documents
    ({"disease": ("MESH:D013313",), "drug": ("MESH:D011224",)}, None, None),  # AND across names: 2
    ({"disease": ("MESH:D013313", "MESH:D020521")}, None, None),  # OR within a name: 5
    ({"source": ("bva", "pubmed")}, 2010, 2018),
    ({"disease": ("MESH:D004417",)}, None, None),  # a single document
    ({"court": ("no such court",)}, None, None),  # nothing
]


@pytest.mark.parametrize("filters,year_from,year_to", SELECTIVITIES)
@pytest.mark.parametrize("q", ["veteran PTSD stressor", "warfarin bleeding malpractice", "doctor negligence"])
def test_filtered_dense_equals_brute_force(service, docs, q, filters, year_from, year_to):
    allowed = {d.id for d in docs.values() if passes(d, filters, year_from, year_to)}
    want = brute_force(service, docs, q, allowed)
    result = service.search(Query(q, "dense", k=10, filters=filters, year_from=year_from, year_to=year_to))
    assert result.total == len(allowed)
    got = [(h.external_id, h.score) for h in result.hits]
    assert {e for e, _ in got} <= allowed, "every hit passes the filter"
    expected_scores = sorted(want.values(), reverse=True)[:10]
    np.testing.assert_allclose([s for _, s in got], expected_scores, atol=1e-5)  # none of the top k is missing
    for external_id, score in got:
        assert score == pytest.approx(want[external_id], abs=1e-5), "each hit carries its best chunk's score"


def test_every_hit_passes_filters_in_all_modes(service, docs):
    filters = {"disease": ("MESH:D013313",)}
    for mode in ("dense", "keyword", "hybrid"):
        result = service.search(Query("veteran trauma nightmares", mode, filters=filters))
        assert result.hits and all(passes(docs[h.external_id], filters) for h in result.hits)


def test_filter_by_entity_name_and_negated_mentions(settings, sample_dir):
    service = build_sample_index(settings, sample_dir)
    text = "The examiner found no evidence of PTSD in this veteran."
    negated = Document("neg-1", "Negative finding", text, {"source": "bva", "date": "2020"},
                       [Mention(34, 38, "PTSD", "Disease", norm_id="MESH:D013313", negation="negated")])
    service.store.upsert_documents("sample", [negated], sample_chunker)
    by_name = service.search(Query("veteran", "keyword", filters={"disease": ("ptsd",)}))
    by_id = service.search(Query("veteran", "keyword", filters={"disease": ("MESH:D013313",)}))
    assert {h.external_id for h in by_name.hits} == {h.external_id for h in by_id.hits} == {"bva-001", "bva-002", "pm-003"}
    with_negated = service.search(Query("veteran", "keyword", filters={"disease": ("MESH:D013313",)},
                                        include_negated=True))
    assert "neg-1" in {h.external_id for h in with_negated.hits}
    assert with_negated.filters[-1].name == "negated"


def test_active_filter_labels(service):
    result = service.search(Query("x", "dense", filters={"disease": ("MESH:D013313",), "doc_type": ("decision",)},
                                  year_from=2010))
    labels = [f.label for f in result.filters]
    assert labels[0] in ("Disease: PTSD", "Disease: posttraumatic stress disorder")
    assert "Document type: decision" in labels and "Year from: 2010" in labels


def test_unknown_filter_name_is_a_query_error(service):
    with pytest.raises(QueryError, match="unknown filter 'symptom'.*disease"):
        service.search(Query("x", "dense", filters={"symptom": ("cough",)}))


def test_keyword_total_and_facets_match_sql(service):
    result = service.search(Query("PTSD OR warfarin", "keyword", k=3))
    matched = matching_documents(service.store, "PTSD OR warfarin")
    assert result.total == len(matched) and len(result.hits) == 3
    disease = next(f for f in result.facets if f.name == "disease")
    for value in disease.values:
        n = service.store.raw("SELECT count(DISTINCT document_id) FROM mentions WHERE label='Disease' AND norm_id=:v "
                              "AND negation='affirmed' AND document_id IN (" + ",".join(map(str, matched)) + ")",
                              v=value.id)[0][0]
        assert value.count == n
    assert [v.count for v in disease.values] == sorted((v.count for v in disease.values), reverse=True)


def test_facets_over_whole_filtered_set_with_truncation(settings, sample_dir):
    settings = settings.replace(search=settings.search.__class__(facet_limit=2))
    service = build_sample_index(settings, sample_dir)
    result = service.search(Query("court", "dense", k=1, filters={"source": ("bva", "nm-appeals")}))
    sql_counts = dict(service.store.raw(
        "SELECT doc_type, count(*) FROM documents WHERE source IN ('bva','nm-appeals') GROUP BY doc_type"))
    facet = next(f for f in result.facets if f.name == "doc_type")
    assert {v.id: v.count for v in facet.values} == sql_counts  # counts over 6 documents, not the 1-hit page
    disease = next(f for f in result.facets if f.name == "disease")
    assert len(disease.values) == 2 and disease.truncated
    whole = service.search(Query("court", "dense", k=1))
    years = next(f for f in whole.facets if f.name == "year")
    assert years.truncated and sum(v.count for v in years.values) == 2


def test_slow_facet_is_unavailable_but_hits_come_back(settings, sample_dir, monkeypatch):
    import time

    from indexer.settings import SearchSettings
    from indexer.store import StoreSnapshot

    settings = settings.replace(search=SearchSettings(time_limit_ms=400))
    service = build_sample_index(settings, sample_dir)
    real = StoreSnapshot.facet

    def slow(self, name, *args):
        if name == "Disease":
            time.sleep(0.5)  # this facet eats the rest of the time budget
        return real(self, name, *args)

    monkeypatch.setattr(StoreSnapshot, "facet", slow)
    result = service.search(Query("warfarin", "hybrid", filters={"doc_type": ("abstract", "opinion")}))
    available = {f.name: f.available for f in result.facets}
    assert available["disease"] and not available["drug"] and not available["court"]
    assert result.hits and [f.values for f in result.facets if not f.available] == [[]] * (len(result.facets) - 1)


@pytest.mark.parametrize("filters,year_from,year_to", SELECTIVITIES)
@pytest.mark.parametrize("negated", [False, True])
def test_snapshot_filter_equals_brute_force(service, docs, filters, year_from, year_to, negated):
    """The one filter implementation (StoreSnapshot.mask) selects the documents a plain-Python reading of the
    rules selects from the Document objects, with filter values given as norm ids, names and surface forms."""
    query = Query("x", filters={**filters, "disease": filters.get("disease", ()) + ("ptsd",)} if filters else {},
                  year_from=year_from, year_to=year_to, include_negated=negated)
    snap = service.snapshot()
    flt = service.doc_filter(query)
    store_id = {info.external_id: i for i, info in service.store.doc_infos(snap.doc_ids.tolist()).items()}
    want = sorted(store_id[d.id] for d in docs.values() if passes_filter(d, flt, docs.values()))
    assert snap.doc_ids[snap.mask(flt)].tolist() == want


def passes_filter(doc: Document, flt, corpus) -> bool:
    """DocFilter's documented rules, evaluated over Document objects without the store's arrays."""
    from indexer.store import norm_value, year_of

    meta = {**{k: doc.meta.get(k) for k in ("source", "doc_type", "court")}, "collection": "sample"}
    if any(meta[name] not in values for name, values in flt.meta.items()):
        return False
    year = year_of(doc.meta.get("date"))
    if (flt.year_from is not None or flt.year_to is not None) and year is None:
        return False
    if (flt.year_from is not None and year < flt.year_from) or (flt.year_to is not None and year > flt.year_to):
        return False
    states = ("affirmed", "negated") if flt.include_negated else ("affirmed",)
    for label, values in flt.entities.items():
        wanted = {v for v in values} | {f"text:{v.lower()}" for v in values}
        wanted |= {norm_value(m)[0] for d in corpus for m in d.mentions
                   if m.label == label and norm_value(m)[1].lower() in {v.lower() for v in values}}
        if not any(m.label == label and m.negation in states and norm_value(m)[0] in wanted for m in doc.mentions):
            return False
    return True


def test_store_deadline_interrupts_a_long_query(service):
    with pytest.raises(StoreTimeout):
        with service.store.reading(deadline=0.0) as conn:
            conn.exec_driver_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) "
                                 "SELECT count(*) FROM n").fetchall()


def test_hybrid_is_rrf_of_dense_and_keyword(service):
    q = "warfarin bleeding malpractice"
    service.settings = service.settings.replace(search=dataclasses.replace(
        service.settings.search, fusion="rrf", dense_weight=1.0, keyword_weight=1.0))
    dense = service.search(Query(q, "dense", k=12)).hits
    keyword = service.search(Query(q, "keyword", k=12)).hits
    hybrid = service.search(Query(q, "hybrid", k=12)).hits
    expected: dict[str, float] = {}
    for ranking in (dense, keyword):
        for rank, h in enumerate(ranking, 1):
            expected[h.external_id] = expected.get(h.external_id, 0.0) + 1.0 / (60 + rank)
    assert [h.external_id for h in hybrid][:3] == sorted(expected, key=lambda e: -expected[e])[:3]
    for h in hybrid:
        assert h.score == pytest.approx(expected[h.external_id])


def test_hybrid_by_default_sums_weighted_z_scores(service):
    """z-score fusion at the profile's weights (the sample index is 9 legal documents of 12: the legal profile,
    keyword 2 : dense 1): each list's scores standardised, a missing document at its minimum."""
    q = "warfarin bleeding malpractice"
    choice = service.fusion_choice(Query(q, "hybrid"))
    assert (choice.profile, choice.rule, choice.dense_weight, choice.keyword_weight) == ("legal", "zscore", 1.0, 2.0)
    window = min(choice.depth, service.settings.search.max_k)  # beyond the 12 documents of the sample either way
    dense = service.search(Query(q, "dense", k=window)).hits
    keyword = service.search(Query(q, "keyword", k=window)).hits
    expected: dict[str, float] = {}
    parts = []
    for ranking, weight in ((dense, 1.0), (keyword, 2.0)):
        x = np.array([h.score for h in ranking])
        z = (x - x.mean()) / x.std()
        parts.append(({h.external_id: weight * v for h, v in zip(ranking, z)}, weight * z.min()))
    for found, _ in parts:
        for doc in found:
            expected[doc] = sum(f.get(doc, floor) for f, floor in parts)
    hybrid = service.search(Query(q, "hybrid", k=len(expected))).hits
    assert {h.external_id for h in hybrid} == set(expected)
    for h in hybrid:
        assert h.score == pytest.approx(expected[h.external_id])
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)


def test_rrf_and_collapse_by_hand():
    ranked = fusion.collapse([(10, 0.9), (11, 0.8), (20, 0.7), (30, 0.1)], {10: 1, 11: 1, 20: 2, 30: 3})
    assert ranked == [(1, 10, 0.9), (2, 20, 0.7), (3, 30, 0.1)]
    fused = fusion.rrf([ranked, [(3, 31, 5.0), (1, 11, 4.0)]], [1.0, 1.0], k=60)
    # doc 1: 1/61 + 1/62; doc 3: 1/63 + 1/61; doc 2: 1/62
    assert [d for d, _, _ in fused] == [1, 3, 2]
    assert fused[1][1] == 31, "doc 3's chunk comes from the ranking that contributed most"


def test_pages_concatenate(service):
    full = [h.doc_id for h in service.search(Query("court doctor veteran", "hybrid", k=12)).hits]
    pages = []
    for offset in range(0, 12, 5):
        page = service.search(Query("court doctor veteran", "hybrid", k=5, offset=offset))
        assert [h.rank for h in page.hits] == list(range(offset + 1, offset + 1 + len(page.hits)))
        pages += [h.doc_id for h in page.hits]
    assert pages == full


def test_snippet_highlights_point_at_terms_and_entities(service):
    result = service.search(Query("prazosin nightmares", "keyword"))
    top = result.hits[0]
    assert {h.external_id for h in result.hits} == {"pm-003", "bva-002"}
    terms = [top.snippet.text[h.start:h.end].lower() for h in top.snippet.highlights if h.kind == "term"]
    assert "prazosin" in terms and any(t.startswith("nightmare") for t in terms)
    doc = service.document(top.doc_id)
    assert doc.text[top.snippet.start:top.snippet.start + len(top.snippet.text)] == top.snippet.text
    for h in top.snippet.highlights:
        if h.kind == "entity":
            mention = next(m for m in doc.highlights if m.start == top.snippet.start + h.start)
            assert mention.norm_id == h.norm_id and h.label in ("Disease", "Drug")


@pytest.mark.parametrize("text", [
    '"', '""', '"unclosed phrase', "AND", "OR OR", "NOT", "a AND OR NOT b", "(", ")(", "*", "a*", "^x", "col:x",
    "text:PTSD", "NEAR(a b)", "-", "--", "- -x", "-\"\"", "'; DROP TABLE chunks; --", "\x00\x01\x02", "🙂 PTSD 🙂",
    "ＰＴＳＤ", "naïve café", "x" * 1000, "{a b}", "a + b", "\\", "%", "_", "a\"b\"c", "PTSD\"", "日本語 医療",
])
def test_hostile_keyword_input_never_raises(service, text):
    for mode in ("keyword", "hybrid"):
        result = service.search(Query(text, mode))
        assert result.total >= 0
    match = fts_query(text)
    if match is not None:
        service.store.keyword_chunks(match)


def test_random_hostile_input_never_raises(service):
    rng = random.Random(0)
    alphabet = list('"\'()*^:+-{}[]<>!?~,.;\\/ \t\nNEARANDORNOT') + ["AND", "OR", "NOT", "NEAR", "ptsd", "é", "\u200b"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 25)))
        match = fts_query(text)
        if match is not None:
            service.store.keyword_chunks(match)


def test_keyword_parser_semantics(service):
    assert parse('warfarin "intracranial hemorrhage" -aspirin').fts() == \
        '("warfarin" OR "intracranial hemorrhage") NOT "aspirin"'
    assert parse("-only negative").include == ("negative",)
    assert fts_query("-excluded") is None and fts_query("... !!!") is None
    assert parse("AND or NOT").include == ("AND", "or", "NOT")  # operators are words
    assert parse("how are the veterans of the war").include == ("veterans", "war")  # function words dropped
    assert parse('"the who" band').include == ("the who", "band") and parse("the").include == ("the",)
    hits = service.search(Query('"intracranial hemorrhage"', "keyword")).hits
    assert [h.external_id for h in hits] == ["pm-002"]
    without = service.search(Query("warfarin -intracranial", "keyword")).hits
    assert "pm-002" not in {h.external_id for h in without} and "nm-001" in {h.external_id for h in without}


def test_query_params_errors(settings):
    s = settings.search
    ok = Query.from_params({"q": "a", "disease": ["MESH:1", "MESH:2"], "k": "5", "negated": "1"}, s)
    assert ok.filters == {"disease": ("MESH:1", "MESH:2")} and ok.k == 5 and ok.include_negated
    bad = [({"q": ""}, "empty"), ({"q": "   "}, "empty"), ({"q": "x" * (s.max_query_chars + 1)}, "limit"),
           ({"q": "a", "k": "0"}, "out of range"), ({"q": "a", "k": "abc"}, "not a whole number"),
           ({"q": "a", "k": str(s.max_k + 1)}, "out of range"), ({"q": "a", "offset": "-1"}, "out of range"),
           ({"q": "a", "mode": "fuzzy"}, "'dense'"), ({"q": "a", "symptom": "x"}, "unknown parameter"),
           ({"q": "a", "year_from": "2020", "year_to": "2010"}, "after"), ({"q": ["a", "b"]}, "once"),
           ({"q": "a", "negated": "maybe"}, "negated"), ({"q": {"x": 1}}, "string"),
           ({"q": "a", "disease": [f"x{i}" for i in range(51)]}, "at most")]
    for params, message in bad:
        with pytest.raises(QueryError, match=message):
            Query.from_params(params, s)


def test_document_view_and_similar(service, docs):
    hit = service.search(Query("PTSD stressor denied", "keyword")).hits[0]
    view = service.document(hit.doc_id)
    original = docs[view.external_id]
    assert view.text == original.text and len(view.highlights) == len(original.mentions)
    for h in view.highlights:
        assert any(view.text[h.start:h.end] == m.text and m.start == h.start for m in original.mentions)
    top_badge = view.entities[0]
    assert top_badge.count == max(sum(1 for m in original.mentions if m.norm_id == b.norm_id) for b in view.entities)
    similar = service.similar(hit.doc_id, k=3)
    assert len(similar) == 3 and hit.doc_id not in {h.doc_id for h in similar}
    assert similar[0].external_id in ("bva-001", "bva-002") and similar[0].score >= similar[1].score
    with pytest.raises(DocumentNotFound):
        service.document(99999)
    with pytest.raises(DocumentNotFound):
        service.similar(99999)


@pytest.mark.slow
def test_real_minilm_on_the_sample(settings, sample_dir):
    """The packaged all-MiniLM-L6-v2 finds the judged documents of two sample queries first."""
    from indexer.embedder import load_embedder

    service = build_sample_index(settings, sample_dir, load_embedder(settings))
    first = service.search(Query("prazosin nightmares veterans", "dense", k=3)).hits[0]
    assert first.external_id == "pm-003"
    top = [h.external_id for h in service.search(Query("malpractice warfarin bleeding", "hybrid", k=2)).hits]
    assert set(top) == {"nm-001", "pm-002"}
    assert service.stats()["vectors"] == service.store.counts()["chunks"]


def test_embedder_calls_are_one_per_query(settings, sample_dir):
    emb = KeywordEmbedder()
    service = build_sample_index(settings, sample_dir, emb)
    before = emb.calls
    service.search(Query("veteran", "hybrid", filters={"doc_type": ("decision",)}))
    assert emb.calls == before + 1
    service.search(Query("veteran", "dense", offset=10))  # the next page reuses the cached vector
    assert emb.calls == before + 1


def test_keyword_mode_ranks_every_match(service):
    """Keyword mode scores all matches in one pass: the ranking is by best chunk BM25, the total all matches."""
    result = service.search(Query("veteran stressor", "keyword", k=100))
    best: dict[int, float] = {}
    s = service.settings.search  # the title column weighs bm25_title_weight (2 by default), the text 1
    for _, doc, score in brute_keyword(service.store, "veteran stressor", (s.bm25_title_weight, s.bm25_text_weight)):
        best[doc] = max(score, best.get(doc, score))
    rows = list(best.items())
    want = sorted(rows, key=lambda r: (-r[1], r[0]))
    assert result.total == len(rows) == len(result.hits)
    np.testing.assert_allclose([h.score for h in result.hits], [w[1] for w in want])
