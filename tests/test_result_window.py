"""Dense and hybrid result sets are the documents the query retrieves (search.result_window):
the total, the pages and every facet count are over that set, checked against brute force."""
from __future__ import annotations

from collections import Counter

import pytest
from search_fixtures import build_sample_index, matching_documents, sample_chunker, sample_documents

from indexer.pipeline import embed_text
from searchd.query import Query

WINDOW = 4


@pytest.fixture
def service(settings, sample_dir):
    # fusion_profile = settings: fused windows of result_window, whose union is the set (the legal profile's
    # deeper fusion keeps the union's size; tests/test_fusion_profiles.py)
    settings = settings.replace(search=settings.search.__class__(result_window=WINDOW, facet_limit=50,
                                                                 fusion_profile="settings"))
    return build_sample_index(settings, sample_dir)


def dense_top(service, sample_dir, q: str, allowed: set[str] | None = None) -> list[str]:
    """External ids ranked by their best chunk's cosine, by encoding every chunk (no index)."""
    emb = service.embedder
    qv = emb.embed_queries([q])[0]
    best = {}
    for doc in sample_documents(sample_dir):
        if allowed is None or doc.id in allowed:
            texts = [embed_text(doc.title, c.text, service.settings) for c in sample_chunker(doc)]
            best[doc.id] = float((emb.embed_documents(texts) @ qv).max())
    return sorted(best, key=lambda d: -best[d])


def facet_counts(service, external_ids: set[str], label: str) -> dict[str, int]:
    """Documents per affirmed norm id of `label` among `external_ids`, straight from SQLite."""
    counts: Counter = Counter()
    for ext, norm_id in service.store.raw("SELECT DISTINCT d.external_id, m.norm_id FROM mentions m JOIN documents d "
                                          "ON d.id = m.document_id WHERE m.label = :l AND m.negation = 'affirmed'",
                                          l=label):
        if ext in external_ids:
            counts[norm_id] += 1
    return dict(counts)


def test_dense_total_facets_and_pages_are_over_the_window(service, sample_dir):
    q = "veteran PTSD stressor nightmares"
    result = service.search(Query(q, "dense", k=3))
    top = dense_top(service, sample_dir, q)[:WINDOW]
    assert result.total == WINDOW
    assert [h.external_id for h in result.hits] == top[:3]
    disease = next(f for f in result.facets if f.name == "disease")
    assert {v.id: v.count for v in disease.values} == facet_counts(service, set(top), "Disease")
    collection = next(f for f in result.facets if f.name == "collection")
    assert sum(v.count for v in collection.values) == WINDOW
    last = service.search(Query(q, "dense", k=3, offset=3))
    assert [h.external_id for h in last.hits] == top[3:4]
    assert service.search(Query(q, "dense", k=3, offset=WINDOW)).hits == []


def test_hybrid_set_is_dense_window_plus_keyword_window(service, sample_dir):
    q = "warfarin bleeding malpractice"
    result = service.search(Query(q, "hybrid", k=10))
    dense = [h.external_id for h in service.search(Query(q, "dense", k=WINDOW)).hits]  # checked above
    keyword = [h.external_id for h in service.search(Query(q, "keyword", k=WINDOW)).hits]
    union = set(dense) | set(keyword)
    assert result.total == len(union) and {h.external_id for h in result.hits} == union
    drug = next(f for f in result.facets if f.name == "drug")
    assert {v.id: v.count for v in drug.values} == facet_counts(service, union, "Drug")


def test_filtered_window_stays_inside_the_filter(service, sample_dir):
    q = "court negligence doctor"
    result = service.search(Query(q, "dense", k=10, filters={"source": ("bva", "nm-appeals")}))
    allowed = {d.id for d in sample_documents(sample_dir) if d.meta.get("source") in ("bva", "nm-appeals")}
    top = dense_top(service, sample_dir, q, allowed)[:WINDOW]
    assert result.total == min(WINDOW, len(allowed))
    assert [h.external_id for h in result.hits] == top


def test_keyword_mode_still_counts_every_match(service):
    result = service.search(Query("veteran OR warfarin", "keyword", k=2))
    matched = matching_documents(service.store, "veteran OR warfarin")
    assert result.total == len(matched) > WINDOW


def test_window_study_reports_set_sizes_and_the_rank_of_the_query_value(service):
    from searchd.eval.window import markdown, study

    rows = study(service, windows=(2, 12), modes=("dense",),
                 queries=[("veteran PTSD stressor nightmares", "disease", "ptsd")])
    assert [r[2] for r in rows] == ["2", "12"] and rows[0][3] == "2/12" and rows[1][3] == "12/12"
    assert rows[0][4] != "-" and service.settings.search.result_window == WINDOW
    assert markdown(rows).count("\n") == 3
