"""The web front end: every page and error path through Flask's test client.

Most tests run the real SearchService over an index built from the sample corpus (one per
session). A small fake at the SearchClient seam stands in where it makes the test clearer:
error states that a healthy index cannot produce, and hostile document text.
"""
from __future__ import annotations

import json
import math
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from markupsafe import escape

from indexer.errors import DocumentNotFound, QueryError
from indexer.settings import SearchSettings
from tests.sample_index import SAMPLE
from searchd.results import (ActiveFilter, DocumentView, EntityBadge, Facet, FacetValue, Highlight, Hit,
                             SearchResult, Snippet)
from web import create_app
from web.client import HttpClient, SearchUnavailable, document_from_json, result_from_json
from web.highlight import label_slot, paragraphs, segments

QUERY_LIMIT = SearchSettings().max_query_chars  # search.max_query_chars' default, as config.toml has it


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


def test_hard_wrapped_prose_reflows_but_captions_keep_their_lines():
    prose = "The Veteran served on active duty from October 1968 to October\n1970 and was awarded a badge."
    caption = "Citation Nr: 0010438\nDecision Date: 04/20/00"
    paras = paragraphs(f"{caption}\n\n{prose}", [])
    assert [p.reflow for p in paras] == [False, True]


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

    def search(self, params):
        self._check()
        self.queries.append(params)
        hits = [_hit(1, EVIL, f"PTSD {EVIL}", [Highlight(0, 4, "entity", "Disease", "negated", "MESH:D013313")])]
        facets = [Facet("disease", "Disease", [FacetValue("MESH:D013313", EVIL, 1)], False)]
        return SearchResult(params["q"], params.get("mode", "hybrid"), int(params["k"]), 0, 1, hits, facets,
                            [ActiveFilter("disease", v, f"Disease: {EVIL}") for v in params.getlist("disease")],
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

    def close(self):
        pass


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
    assert fake.queries[0]["q"] == '"><img src=x onerror=alert(1)>'
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


def _args(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(unescape(url)).query)


# ---- the real SearchService over the sample corpus -------------------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """(Flask test client, SearchService) over a real store and FAISS index of the sample corpus.

    The keyword embedder of tests/search_fixtures.py stands in for MiniLM at the Embedder seam to keep
    this file fast; test_browser.py runs the packaged MiniLM end to end.
    """
    from indexer.settings import load_settings
    from tests.sample_index import REPO
    from tests.search_fixtures import build_sample_index
    from web.client import InProcessClient

    settings = load_settings(REPO / "config.toml", [f'index.dir="{tmp_path_factory.mktemp("web") / "index"}"'])
    service = build_sample_index(settings, SAMPLE)
    return create_app(settings, search=InProcessClient(settings, service)).test_client(), service


def _links(page: str, css_class: str) -> list[str]:
    return [unescape(h) for h in re.findall(rf'<a class="{css_class}[^"]*" href="([^"]+)"', page)]


def test_landing_page_shows_the_index_and_its_collections(real):
    client, service = real
    page = client.get("/").get_data(as_text=True)
    documents = service.store.counts()["documents"]
    assert re.search(rf"<dd>{documents}</dd>\s*</div>|<dd>{documents}</dd>", page)
    assert '<option value="sample">sample</option>' in page
    assert 'name="q"' in page and f'maxlength="{service.settings.search.max_query_chars}"' in page


def test_search_lists_hits_with_count_time_facets_and_highlights(real):
    client, service = real
    resp = client.get("/?q=service+connection+for+PTSD")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    expected = service.search(service.parse({"q": "service connection for PTSD", "k": "10"}))
    assert f"{expected.total} document" in page
    assert re.search(r"\d+ ms", page)
    titles = re.findall(r'<h2 class="hit-title"><a href="[^"]+">([^<]+)</a>', page)
    assert [unescape(t) for t in titles] == [h.title for h in expected.hits]
    assert '<mark class="term"' in page and re.search(r'<mark class="ent ent-0"', page)
    for facet in ("Disease", "Drug", "Document type", "Court", "Year"):
        assert f"<summary>{facet}</summary>" in page


def test_hits_show_rank_and_a_relevance_bar_not_the_raw_score(real):
    client, service = real
    page = client.get("/?q=service+connection+for+PTSD").get_data(as_text=True)
    expected = service.search(service.parse({"q": "service connection for PTSD", "k": "10"}))
    assert len(expected.hits) > 1
    for hit in expected.hits:
        assert hit.relevance == round(1 / math.log2(hit.rank + 1), 3)  # 1.0, 0.631, 0.5, ...
        assert f'<meter class="relevance" min="0" max="1" value="{hit.relevance}">' in page
        assert f'<span class="rank">#{hit.rank}</span>' in page
        assert f"{hit.score:.3f}" not in page and f"{hit.score:.4f}" not in page, "the raw RRF value means nothing to a reader"
    # the API keeps the raw score beside the readable relevance
    first = expected.to_dict()["hits"][0]
    assert first["score"] == expected.hits[0].score and first["relevance"] == 1.0


def test_a_disease_facet_filters_and_its_chip_removes_the_filter(real):
    client, service = real
    page = client.get("/?q=veteran+PTSD").get_data(as_text=True)
    disease = [h for h in _links(page, "facet-value") if "disease=" in h][0]
    value = _args(disease)["disease"][0]
    filtered = client.get(disease).get_data(as_text=True)
    doc_ids = [int(i) for i in re.findall(r'<h2 class="hit-title"><a href="/documents/(\d+)', filtered)]
    assert doc_ids
    for doc_id in doc_ids:
        assert value in {b.norm_id for b in service.document(doc_id).entities}
    chips = _links(filtered, "chip-remove")
    assert len(chips) == 1 and "disease" not in _args(chips[0]) and _args(chips[0])["q"] == ["veteran PTSD"]
    assert re.search(r'<li class="chip"><span>Disease: [^<]+</span>', filtered)
    active = [h for h in _links(filtered, "facet-value active")]
    assert active and "disease" not in _args(active[0]), "an active facet value links to its removal"


def test_year_facet_sets_a_year_range(real):
    client, service = real
    page = client.get("/?q=negligence").get_data(as_text=True)
    year_link = [h for h in _links(page, "facet-value") if "year_from=" in h][0]
    args = _args(year_link)
    assert args["year_from"] == args["year_to"]
    filtered = client.get(year_link).get_data(as_text=True)
    for doc_id in re.findall(r'<h2 class="hit-title"><a href="/documents/(\d+)', filtered):
        assert str(service.document(int(doc_id)).meta.get("date", ""))[:4] == args["year_from"][0]


def test_mode_collection_and_paging_live_in_the_url(real):
    client, _ = real
    page = client.get("/?q=PTSD&mode=keyword&collection=sample&k=2").get_data(as_text=True)
    assert 'id="mode-keyword" name="mode" value="keyword" checked' in page
    assert '<option value="sample" selected>' in page
    nxt = re.search(r'<a href="([^"]+)" rel="next">', page)
    assert nxt, "two hits per page leaves more pages"
    args = _args(nxt.group(1))
    assert args["offset"] == ["2"] and args["mode"] == ["keyword"] and args["collection"] == ["sample"]
    second = client.get(unescape(nxt.group(1))).get_data(as_text=True)
    assert '<ol class="hits" start="3">' in second and 'rel="prev"' in second


def test_a_query_with_no_match_says_so(real):
    client, _ = real
    page = client.get("/?q=zzyzx+qqvv&mode=keyword").get_data(as_text=True)
    assert "Nothing matched" in page and "No documents" in page


@pytest.mark.parametrize("url, words", [
    ("/?q=PTSD&mode=fuzzy", "mode 'fuzzy'"),
    ("/?q=PTSD&k=0", "k 0 is out of range"),
    ("/?q=PTSD&offset=-1", "offset -1"),
    ("/?q=" + "a" * (QUERY_LIMIT + 1), f"the limit is {QUERY_LIMIT}"),
    ("/?q=PTSD&colour=red", "'colour'"),
    ("/?q=+&disease=MESH:D013313", "is empty"),
])
def test_bad_requests_explain_themselves(real, url, words):
    client, _ = real
    resp = client.get(url)
    assert resp.status_code == 400
    assert words in unescape(resp.get_data(as_text=True))


def test_document_page_highlights_every_mention(real):
    client, service = real
    sample = [json.loads(line) for line in (SAMPLE / "corpus.jsonl").read_text().splitlines()]
    external = {d["_id"]: d for d in sample}
    doc_id = service.store.document_ids("sample")[0]
    view = service.document(doc_id)
    resp = client.get(f"/documents/{doc_id}?q=PTSD&disease=MESH:D013313")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert f'<h1 id="doc-title">{escape(view.title)}</h1>' in page
    marks = re.findall(r'<mark class="ent ent-\d[^"]*"', page.split('class="doc-text"')[1])
    assert len(marks) == len(external[view.external_id]["mentions"])
    back = re.search(r'<a href="([^"]+)">‹ Back to results</a>', page).group(1)
    assert _args(back) == {"q": ["PTSD"], "disease": ["MESH:D013313"]}
    for badge in view.entities:  # each entity links to a search filtered by it
        assert f"disease={badge.norm_id}" in unescape(page) or badge.label != "Disease"
    similar = re.findall(r'<ol class="similar">(.*?)</ol>', page, re.S)
    assert similar and f'href="/documents/{doc_id}"' not in similar[0]
    assert len(re.findall("<li>", similar[0])) >= 1


def test_similar_and_entity_links_resolve(real):
    client, service = real
    doc_id = service.store.document_ids("sample")[0]
    page = client.get(f"/documents/{doc_id}").get_data(as_text=True)
    for href in _links(page, "badge ent-0")[:2]:
        assert client.get(href).status_code == 200
    assert "‹ New search" in page


def test_in_process_client_without_an_index_serves_the_no_index_page(settings):
    from web.client import InProcessClient

    app = create_app(settings, search=InProcessClient(settings))
    resp = app.test_client().get("/")
    assert resp.status_code == 503
    page = unescape(resp.get_data(as_text=True))
    assert "no index at" in page and "indexer build" in page


def test_web_serve_runs_on_waitress_and_says_where(tmp_path):
    """`web serve` (no index yet) prints its URL and answers with the no-index page, not a debugger."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from tests.sample_index import REPO

    proc = subprocess.Popen([sys.executable, "-m", "web", "serve", "--config", str(REPO / "config.toml"),
                             "--set", f'index.dir="{tmp_path / "none"}"', "--port", "0"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(url, timeout=30)
        assert answer.value.code == 503
        assert answer.value.headers["Server"] == "medlex"  # waitress' ident, not werkzeug's dev server
        assert "Build an index first" in answer.value.read().decode()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert "no index at" in err


# ---- over HTTP: the web app against a real `searchd serve` on a loopback port ----------------
@pytest.fixture(scope="module")
def searchd_url(real):
    """searchd's JSON API over the same SearchService, served by waitress in a thread."""
    import threading

    from searchd.server import create_app as searchd_app, make_server

    _, service = real
    server = make_server(searchd_app(service.settings, service=service), "127.0.0.1", 0, 4)
    threading.Thread(target=server.run, daemon=True).start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


def _titles(page: str) -> list[str]:
    return re.findall(r'<h2 class="hit-title"><a href="[^"]+">([^<]+)</a>', page)


def test_http_client_gives_the_same_pages_as_in_process(real, searchd_url):
    in_process, service = real
    over_http = create_app(service.settings, search=HttpClient(searchd_url)).test_client()
    for url in ("/?q=PTSD+nightmares&mode=hybrid", "/?q=warfarin&mode=keyword&drug=MESH:D014859", "/?q=negligence&k=3"):
        a, b = in_process.get(url).get_data(as_text=True), over_http.get(url).get_data(as_text=True)
        assert _titles(a) == _titles(b) and _titles(a)
        assert _links(a, "facet-value") == _links(b, "facet-value")
        assert re.sub(r"\d+ ms", "", a) == re.sub(r"\d+ ms", "", b)
    doc_id = service.store.document_ids("sample")[0]
    assert in_process.get(f"/documents/{doc_id}").data == over_http.get(f"/documents/{doc_id}").data
    assert '<option value="sample">' in over_http.get("/").get_data(as_text=True)


@pytest.mark.parametrize("url, status, words", [
    ("/?q=PTSD&mode=fuzzy", 400, "mode 'fuzzy'"),
    ("/documents/99999", 404, "no document with id 99999"),
])
def test_http_client_maps_searchd_errors(real, searchd_url, url, status, words):
    _, service = real
    resp = create_app(service.settings, search=HttpClient(searchd_url)).test_client().get(url)
    assert resp.status_code == status and words in unescape(resp.get_data(as_text=True))


def test_http_client_when_searchd_has_no_index(settings):
    import threading

    from searchd.server import create_app as searchd_app, make_server

    server = make_server(searchd_app(settings), "127.0.0.1", 0, 2)
    threading.Thread(target=server.run, daemon=True).start()
    try:
        app = create_app(settings, search=HttpClient(f"http://127.0.0.1:{server.effective_port}"))
        resp = app.test_client().get("/?q=PTSD")
        assert resp.status_code == 503 and "no index is loaded" in resp.get_data(as_text=True)
    finally:
        server.close()


def test_the_in_process_client_leaves_a_given_service_open(real):
    from web.client import InProcessClient

    _, service = real
    client = InProcessClient(service.settings, service)
    client.close()  # the module's fixture owns this service
    assert client.service() is service and service.index.ntotal > 0
