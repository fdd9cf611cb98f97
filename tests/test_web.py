"""The web front end: every page and error path through Flask's test client.

Most tests run the real SearchService over an index built from the sample corpus (one per
session). A small fake at the SearchClient seam stands in where it makes the test clearer:
error states that a healthy index cannot produce, and hostile document text.
"""
from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest

from indexer.errors import QueryError
from searchd.results import (ActiveFilter, DocumentView, EntityBadge, Facet, FacetValue, Highlight, Hit,
                             SearchResult, Snippet)
from web import create_app
from web.client import (DocumentNotFound, HttpClient, SearchUnavailable, document_from_json, query_params,
                        result_from_json)
from web.highlight import label_slot, paragraphs, segments


# ---- highlight segments (pure) --------------------------------------------------------------
def test_segments_cut_at_every_boundary_and_keep_text():
    text = "no evidence of PTSD today"
    hl = [Highlight(15, 19, "entity", "Disease", "negated", "MESH:D013313"), Highlight(15, 19, "term"),
          Highlight(0, 2, "term")]
    segs = segments(text, hl)
    assert "".join(s.text for s in segs) == text
    marked = {s.text: s.classes for s in segs if s.marked}
    assert marked["no"] == ("term",)
    assert marked["PTSD"] == ("term", "ent", f"ent-{label_slot('Disease')}", "negated")


def test_segments_overlapping_and_bad_offsets():
    text = "major depressive disorder"
    hl = [Highlight(0, 25, "entity", "Disease", "affirmed", "D1"), Highlight(6, 16, "term"),
          Highlight(20, 99, "term"), Highlight(5, 5, "term")]  # out of range and empty: dropped
    segs = segments(text, hl)
    assert [s.text for s in segs] == ["major ", "depressive", " disorder"]
    assert segs[1].classes[0] == "term" and "ent" in segs[0].classes and "term" not in segs[2].classes


def test_paragraphs_keep_offsets_across_blank_lines():
    text = "First PTSD line.\n\n  Second with lithium."
    start = text.index("lithium")
    paras = paragraphs(text, [Highlight(start, start + 7, "entity", "Drug", "affirmed", "D2"),
                              Highlight(6, 10, "entity", "Disease", "affirmed", "D1")])
    assert len(paras) == 2
    assert [s.text for s in paras[1].segments if s.marked] == ["lithium"]
    assert [s.text for s in paras[0].segments if s.marked] == ["PTSD"]


def test_label_slots_are_stable_and_distinct():
    assert label_slot("Disease") != label_slot("Drug")
    assert label_slot("Procedure") == label_slot("Procedure")


# ---- a fake at the SearchClient seam ---------------------------------------------------------
EVIL = '<script>alert("x")</script>'


def _hit(doc_id: int, title: str, text: str, highlights=()) -> Hit:
    return Hit(doc_id, f"ext-{doc_id}", "sample", title, 0.5, doc_id, {"doc_type": "decision", "date": "2015-01-02"},
               Snippet(text, 10, list(highlights)), [EntityBadge("Disease", "MESH:D013313", EVIL, 2)])


class FakeClient:
    """Returns one hostile hit, or raises the error it was given."""

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.queries = []

    def _check(self):
        if self.error is not None:
            raise self.error

    def search(self, query):
        self._check()
        self.queries.append(query)
        hits = [_hit(1, EVIL, f"PTSD {EVIL}", [Highlight(0, 4, "entity", "Disease", "negated", "MESH:D013313")])]
        facets = [Facet("disease", "Disease", [FacetValue("MESH:D013313", EVIL, 1)], False)]
        return SearchResult(query.q, query.mode, query.k, query.offset, 1, hits, facets,
                            [ActiveFilter(n, v, f"Disease: {EVIL}") for n, vs in query.filters.items() for v in vs],
                            {"total": 1.0})

    def document(self, doc_id):
        self._check()
        if doc_id != 1:
            raise DocumentNotFound(f"no document with id {doc_id}")
        text = f"{EVIL}\n\nPTSD was not found."
        return DocumentView(1, "ext-1", "sample", EVIL, text, {"court": EVIL},
                            [Highlight(len(EVIL) + 2, len(EVIL) + 6, "entity", "Disease", "negated", "MESH:D013313")],
                            [EntityBadge("Disease", "MESH:D013313", EVIL, 1)])

    def similar(self, doc_id, k):
        self._check()
        return []

    def stats(self):
        self._check()
        return {"documents": 1, "collections": {"sample": 1}}


@pytest.fixture
def fake_app(settings):
    fake = FakeClient()
    return create_app(settings, search=fake), fake


def test_everything_from_documents_is_escaped(fake_app):
    app, _ = fake_app
    for url in ("/?q=ptsd&disease=MESH:D013313", "/documents/1"):
        page = app.test_client().get(url).get_data(as_text=True)
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page


def test_query_text_is_escaped_and_kept_in_the_form(fake_app):
    app, fake = fake_app
    page = app.test_client().get("/", query_string={"q": '"><img src=x onerror=alert(1)>'}).get_data(as_text=True)
    assert "<img src=x" not in page
    assert fake.queries[0].q == '"><img src=x onerror=alert(1)>'
    assert 'value="&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"' in page


def test_security_headers_on_every_answer(fake_app):
    app, _ = fake_app
    for url in ("/", "/documents/1", "/documents/9", "/nope", "/static/medlex.css"):
        resp = app.test_client().get(url)
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert not app.debug


def test_pages_have_no_inline_script_or_style_and_no_external_urls(fake_app):
    app, _ = fake_app
    page = app.test_client().get("/?q=ptsd").get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)", page), "inline script would be blocked by the CSP"
    assert "style=" not in page and "<style" not in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "no CDN or external resources"


def test_negated_mentions_are_marked_for_eye_and_screen_reader(fake_app):
    app, _ = fake_app
    page = app.test_client().get("/?q=ptsd").get_data(as_text=True)
    assert re.search(r'<mark class="ent ent-\d negated" title="Disease · MESH:D013313 · negated">PTSD'
                     r'<span class="sr-only"> \(negated\)</span></mark>', page)


@pytest.mark.parametrize("error, status, words", [
    (SearchUnavailable("no index at '/x'; build one with `indexer build`"), 503, "indexer build"),
    (SearchUnavailable("searchd at http://127.0.0.1:1 is unreachable: refused"), 503, "unreachable"),
    (QueryError("unknown mode 'fuzzy'; valid: 'dense', 'hybrid', 'keyword'"), 400, "unknown mode"),
])
def test_error_states(settings, error, status, words):
    app = create_app(settings, search=FakeClient(error))
    resp = app.test_client().get("/?q=ptsd")
    assert resp.status_code == status
    assert words in unescape(resp.get_data(as_text=True))


def test_landing_page_says_when_there_is_no_index(settings):
    app = create_app(settings, search=FakeClient(SearchUnavailable("no index at '/x'; build one")))
    resp = app.test_client().get("/")
    assert resp.status_code == 503 and "Build an index first" in resp.get_data(as_text=True)


def test_unknown_document_and_page_are_404(fake_app):
    app, _ = fake_app
    client = app.test_client()
    assert client.get("/documents/9").status_code == 404
    assert "no document with id 9" in client.get("/documents/9").get_data(as_text=True)
    assert client.get("/documents/abc").status_code == 404
    assert client.get("/no/such/page").status_code == 404


def test_unexpected_errors_are_a_plain_500_without_traceback(settings):
    app = create_app(settings, search=FakeClient(RuntimeError("secret internals")))
    resp = app.test_client().get("/?q=ptsd")
    assert resp.status_code == 500
    page = resp.get_data(as_text=True)
    assert "secret internals" not in page and "Traceback" not in page


# ---- the HTTP client against a local searchd stand-in ----------------------------------------
def test_json_round_trip_rebuilds_the_dataclasses():
    hit = _hit(3, "t", "text", [Highlight(0, 4, "term")])
    result = SearchResult("q", "hybrid", 10, 0, 1, [hit], [Facet("disease", "Disease", [FacetValue("a", "b", 1)], True)],
                          [ActiveFilter("disease", "a", "Disease: b")], {"total": 2.5}, exact=False)
    assert result_from_json(result.to_dict()) == result
    doc = FakeClient().document(1)
    assert document_from_json(doc.to_dict()) == doc


def test_http_client_rejects_a_bad_url_and_reports_an_unreachable_searchd():
    from indexer.errors import MedlexError

    with pytest.raises(MedlexError, match="not an http"):
        HttpClient("ftp://example")
    with pytest.raises(SearchUnavailable, match="unreachable"):
        HttpClient("http://127.0.0.1:9", timeout_s=2).stats()


def test_query_params_round_trip(settings):
    from werkzeug.datastructures import MultiDict

    from searchd.query import Query

    params = MultiDict([("q", "ptsd"), ("mode", "keyword"), ("disease", "MESH:D013313"), ("drug", "MESH:D1"),
                        ("year_from", "2010"), ("year_to", "2019"), ("negated", "1"), ("k", "5"), ("offset", "5")])
    query = Query.from_params(params, settings.search)
    assert Query.from_params(MultiDict(query_params(query)), settings.search) == query


def _args(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(unescape(url)).query)
