"""Hostile and careless input: no 5xx from searchd or the web page, JSON errors only from searchd.

The fuzz tests draw requests with hypothesis (query strings, JSON bodies, document ids, paths)
against every searchd endpoint and the web search and document pages, over a real store and
FAISS index of the sample corpus (the keyword embedder stands in for MiniLM). The fast part runs
FAST_EXAMPLES per endpoint in the default run; the slow part SLOW_EXAMPLES.
"""
from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from tests.sample_index import REPO, SAMPLE

FAST_EXAMPLES = 60
SLOW_EXAMPLES = 1500
NAMES = ("q", "mode", "k", "offset", "year_from", "year_to", "negated", "disease", "drug", "collection",
         "source", "doc_type", "court", "filters", "bogus")
# text that has broken parsers before: non-ASCII digits, lone surrogates, bidi overrides, NUL, huge numbers
NASTY = ("²", "①", "٣", "\ud800", "\udfff", "PTSD \ud83d", "\u202eevil", "\x00", "-0", "1e9", "99999999999999999999",
         "NaN", " ", "", "*", "\"", "'; drop table documents; --", "<script>alert(1)</script>", "%", "%%",
         "MESH:D013313", "hybrid", "dense", "keyword", "true")
CALLS = {"requests": 0}


def _text():
    return st.one_of(st.sampled_from(NASTY), st.text(max_size=40))


def _json_value():
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), _text())
    return st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(_text(), inner, max_size=4)), max_leaves=12)


def _params():
    return st.dictionaries(st.one_of(st.sampled_from(NAMES), _text()), st.one_of(_text(), st.lists(_text(), max_size=3)),
                           max_size=6)


def _body():
    nested = st.integers(min_value=1, max_value=3000).map(lambda n: "[" * n + "]" * (n % 2) * n)
    as_json = st.one_of(_json_value(), st.dictionaries(st.sampled_from(NAMES), _json_value(), max_size=6))
    # ensure_ascii keeps lone surrogates as \ud800 escapes, as a hostile client would send them
    return st.one_of(as_json.map(lambda v: json.dumps(v, ensure_ascii=True)), nested, st.text(max_size=60),
                     st.binary(max_size=60))


def _query_string(params: dict) -> str:
    pairs = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    return urlencode(pairs, doseq=False, encoding="utf-8", errors="surrogatepass")


def _doc_path():
    return st.one_of(st.sampled_from(["1", "0", "²", "①", "-1", "1.0", "", "/1", "99999999999999999999", "%00"]),
                     st.text(max_size=12)).map(lambda s: quote(s.encode("utf-8", "surrogatepass"), safe="/"))


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """(searchd test client, web test client) over one real index of the sample corpus."""
    from indexer.settings import load_settings
    from searchd.server import create_app as searchd_app
    from tests.search_fixtures import build_sample_index
    from web import create_app as web_app
    from web.client import InProcessClient

    settings = load_settings(REPO / "config.toml", [f'index.dir="{tmp_path_factory.mktemp("fuzz") / "index"}"'])
    service = build_sample_index(settings, SAMPLE)
    yield searchd_app(settings, service).test_client(), web_app(settings, InProcessClient(settings, service)).test_client()
    service.close()


def check_api(response) -> None:
    """No 5xx, and every error is the documented JSON object."""
    CALLS["requests"] += 1
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code >= 400:
        body = response.get_json(silent=True)
        assert body and set(body) == {"error"} and {"code", "message"} <= set(body["error"]), \
            response.get_data(as_text=True)[:300]
    assert "Location" not in response.headers


def check_page(response) -> None:
    """The web page: no 5xx, no redirect, never the whole of an over-long query echoed back."""
    CALLS["requests"] += 1
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    assert "Location" not in response.headers and len(response.get_data()) < 200_000


def _fuzz(examples: int):
    return hsettings(max_examples=examples, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def api_get(apps, params):
    client = apps[0]
    query = _query_string(params)
    for path in ("/search", "/facets", "/stats", "/health", "/documents/1/similar"):
        check_api(client.get(f"{path}?{query}"))


def api_post(apps, body):
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    for path in ("/search", "/facets"):
        check_api(apps[0].post(path, data=data, content_type="application/json"))


def documents(apps, raw, params):
    query = _query_string(params)
    check_api(apps[0].get(f"/documents/{raw}?{query}"))
    check_api(apps[0].get(f"/documents/{raw}/similar?{query}"))
    check_page(apps[1].get(f"/documents/{raw}?{query}"))


def web_search(apps, params):
    check_page(apps[1].get(f"/?{_query_string(params)}"))


@given(params=_params())
@_fuzz(FAST_EXAMPLES)
def test_fuzz_api_get(apps, params):
    api_get(apps, params)


@given(body=_body())
@_fuzz(FAST_EXAMPLES)
def test_fuzz_api_post(apps, body):
    api_post(apps, body)


@given(raw=_doc_path(), params=_params())
@_fuzz(FAST_EXAMPLES)
def test_fuzz_documents(apps, raw, params):
    documents(apps, raw, params)


@given(params=_params())
@_fuzz(FAST_EXAMPLES)
def test_fuzz_web_search(apps, params):
    web_search(apps, params)


@pytest.mark.slow
@given(params=_params(), body=_body(), raw=_doc_path())
@_fuzz(SLOW_EXAMPLES)
def test_fuzz_everything_slow(apps, params, body, raw):
    api_get(apps, params)
    api_post(apps, body)
    documents(apps, raw, params)
    web_search(apps, params)


def test_the_reported_requests(apps):
    """The requests of issue 14, each a 400 (or 404) JSON error, never Flask's HTML 500."""
    api, web = apps
    for path in ("/documents/%C2%B2", "/documents/%E2%91%A0/similar", "/documents/%D9%A3"):
        assert api.get(path).status_code == 400 and api.get(path).get_json()["error"]["code"] == "invalid_parameter"
        assert web.get(path).status_code == 404
    for body in ("[" * 1000, "[" * 10000, '{"q": ' + "[" * 50 + "]" * 50 + "}"):
        for path in ("/search", "/facets"):
            got = api.post(path, data=body, content_type="application/json")
            assert got.status_code == 400 and got.get_json()["error"]["code"] == "malformed_json", body[:20]
    for body in ('{"q": "PTSD \\ud800", "mode": "dense"}', '{"q": "PTSD", "collection": "\\ud83d"}',
                 '{"q": "PTSD", "filters": {"disease": ["\\udfff"]}}'):
        got = api.post("/search", data=body, content_type="application/json")
        assert got.status_code == 400 and "surrogate" in got.get_json()["error"]["message"], body


def test_no_redirect_from_the_host_header(apps):
    api, web = apps
    for client in apps:
        got = client.get("/documents//1", headers={"Host": "evil.example"})
        assert got.status_code in (400, 404) and "Location" not in got.headers
    got = api.get("/search/?q=x", headers={"Host": "evil.example"})  # a trailing slash is served, not redirected
    assert got.status_code == 200 and "Location" not in got.headers


def test_unexpected_errors_are_json_500_and_logged(apps, monkeypatch, caplog):
    api, _ = apps
    service = api.application.extensions["searchd"].service
    monkeypatch.setattr(type(service), "stats", lambda self: 1 / 0)
    got = api.get("/stats")
    assert got.status_code == 500 and got.get_json()["error"] == {
        "code": "internal_error", "message": "searchd hit an unexpected error (ZeroDivisionError); it has been logged"}
    assert any("unexpected error on GET /stats" in r.getMessage() for r in caplog.records)


def test_long_query_is_cut_on_the_web_400_page(apps):
    from indexer.settings import load_settings

    _, web = apps
    cap = load_settings(REPO / "config.toml").search.max_query_chars
    got = web.get("/?q=" + "x" * 200_000)
    # echoed cut to search.max_query_chars, in the query box and the long-query box: never the 200 KB
    assert got.status_code == 400 and len(got.get_data()) < 2 * cap + 25_000 < 200_000


def test_bidi_controls_are_neutralised(apps):
    from web.highlight import neutralise_bidi

    assert neutralise_bidi("a\u202eb\u2066c") == "a\ufffdb\ufffdc" and neutralise_bidi(3) == 3
    _, web = apps
    page = web.get("/?q=" + quote("ptsd \u202e\u2067 stressor")).get_data(as_text=True)
    assert "\u202e" not in page and "\u2067" not in page


def teardown_module(_module):
    print(f"\nrobustness: {CALLS['requests']} requests checked")
