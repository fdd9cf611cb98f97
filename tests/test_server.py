"""The JSON API: every endpoint and every error path; a real waitress server answering 503 until loaded."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from search_fixtures import build_sample_index

from searchd.server import create_app, make_server


@pytest.fixture
def service(settings, sample_dir):
    return build_sample_index(settings, sample_dir)


@pytest.fixture
def client(settings, service):
    return create_app(settings, service).test_client()


def error_of(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    return body["error"]["message"]


def test_search_get_and_post_agree(client):
    got = client.get("/search?q=warfarin+bleeding&mode=hybrid&k=3&disease=MESH:D014859&drug=MESH:D014859")
    assert got.status_code == 200 and got.get_json()["total"] == 0  # warfarin is no Disease: AND gives nothing
    got = client.get("/search?q=warfarin+bleeding&mode=hybrid&k=3&drug=MESH:D014859&year_from=2000")
    body = got.get_json()
    assert got.status_code == 200 and body["total"] == 2 and len(body["hits"]) == 2
    posted = client.post("/search", json={"q": "warfarin bleeding", "mode": "hybrid", "k": 3,
                                          "filters": {"drug": ["MESH:D014859"]}, "year_from": 2000})
    assert posted.status_code == 200
    strip = lambda b: [(h["doc_id"], h["score"]) for h in b["hits"]]  # noqa: E731
    assert strip(posted.get_json()) == strip(body)
    hit = body["hits"][0]
    assert {"doc_id", "external_id", "collection", "title", "score", "rank", "meta", "snippet", "entities"} <= set(hit)
    assert {f["name"] for f in body["facets"]} >= {"disease", "drug", "doc_type", "court", "year"}
    assert body["filters"][0]["label"].startswith("Drug: ") and "total" in body["timings"]


def test_search_bad_input(client, settings):
    cases = [
        ("/search", "empty"), ("/search?q=", "empty"), ("/search?q=%20%20", "empty"),
        ("/search?q=" + "x" * (settings.search.max_query_chars + 1), "limit"),
        ("/search?q=a&k=0", "out of range"), ("/search?q=a&k=ten", "whole number"),
        ("/search?q=a&k=100000", "out of range"), ("/search?q=a&offset=-3", "out of range"),
        ("/search?q=a&offset=999999", "out of range"), ("/search?q=a&mode=semantic", "mode"),
        ("/search?q=a&symptom=cough", "unknown parameter or filter 'symptom'"),
        ("/search?q=a&year_from=x", "whole number"), ("/search?q=a&q=b", "once"),
    ]
    for url, message in cases:
        assert message in error_of(client.get(url), 400, "invalid_parameter"), url


def test_post_body_errors(client, settings):
    error_of(client.post("/search", data="{not json", content_type="application/json"), 400, "malformed_json")
    error_of(client.post("/search", data=b"\xff\xfe", content_type="application/json"), 400, "malformed_json")
    error_of(client.post("/search", json=["q", "x"]), 400, "malformed_json")
    error_of(client.post("/search", json={"q": "a", "filters": "disease"}), 400, "malformed_json")
    error_of(client.post("/search", json={"q": "a", "disease": "x", "filters": {"disease": "y"}}), 400,
             "invalid_parameter")
    error_of(client.post("/search", json={"q": 5.5, "k": True}), 400, "invalid_parameter")
    big = json.dumps({"q": "x" * (settings.server.max_body_bytes + 10)})
    error_of(client.post("/search", data=big, content_type="application/json"), 400, "body_too_large")


def test_documents_and_similar(client, service):
    doc_id = service.store.document_ids()[0]
    body = client.get(f"/documents/{doc_id}").get_json()
    assert body["doc_id"] == doc_id and body["text"] and body["highlights"] and body["entities"]
    similar = client.get(f"/documents/{doc_id}/similar?k=2").get_json()
    assert len(similar["hits"]) == 2 and doc_id not in {h["doc_id"] for h in similar["hits"]}
    error_of(client.get("/documents/999999"), 404, "not_found")
    error_of(client.get("/documents/999999/similar"), 404, "not_found")
    error_of(client.get("/documents/abc"), 400, "invalid_parameter")
    error_of(client.get(f"/documents/{doc_id}/similar?k=0"), 400, "invalid_parameter")
    error_of(client.get("/nowhere"), 404, "not_found")
    error_of(client.delete("/search"), 405, "method_not_allowed")


def test_facets_health_stats(client, service):
    body = client.get("/facets?doc_type=decision").get_json()
    doc_type = next(f for f in body["facets"] if f["name"] == "doc_type")
    assert doc_type["values"] == [{"id": "decision", "name": "decision", "count": 3}]
    assert body["filters"][0]["label"] == "Document type: decision"
    keyword = client.get("/facets?q=warfarin&mode=keyword").get_json()
    assert sum(v["count"] for v in next(f for f in keyword["facets"] if f["name"] == "doc_type")["values"]) == 2
    error_of(client.get("/facets?color=red"), 400, "invalid_parameter")
    assert client.get("/health").get_json()["status"] == "ok"
    stats = client.get("/stats").get_json()
    assert stats["vectors"] == stats["store"]["chunks"] and stats["exact"] is True


def test_timeout_is_504(settings, service):
    from indexer.settings import SearchSettings

    slow = settings.replace(search=SearchSettings(time_limit_ms=0))
    service.settings = slow
    client = create_app(slow, service).test_client()
    error_of(client.get("/search?q=veteran&mode=keyword"), 504, "timeout")


def test_503_until_an_index_is_loaded_then_200(settings, sample_dir):
    client = create_app(settings, load=True).test_client()
    holder = client.application.extensions["searchd"]
    error_of(client.get("/search?q=x"), 503, "index_not_loaded")
    assert client.get("/health").status_code == 503
    for thread in __import__("threading").enumerate():
        if thread.name == "searchd-load":
            thread.join(60)
    assert "indexer import" in holder.error  # nothing is there yet
    holder.service = build_sample_index(settings, sample_dir)
    assert client.get("/search?q=PTSD").status_code == 200


def test_real_waitress_server(settings, service):
    import threading

    server = make_server(create_app(settings, service), "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.effective_port}"
    try:
        with urllib.request.urlopen(f"{base}/search?q=prazosin&mode=keyword", timeout=10) as response:
            assert json.loads(response.read())["hits"]
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base}/search?q=", timeout=10)
        assert err.value.code == 400 and json.loads(err.value.read())["error"]["code"] == "invalid_parameter"
    finally:
        server.close()


def test_the_service_closes_its_pool_index_and_store(settings, sample_dir):
    with build_sample_index(settings, sample_dir) as service:
        assert service.search(service.parse({"q": "veteran", "mode": "hybrid"})).hits
    assert service.index.ntotal == 0  # the index was closed
    with pytest.raises(RuntimeError):  # and the keyword worker pool shut down
        service._pool.submit(print)


def test_a_keyword_only_service_says_why_dense_search_cannot_run(settings, sample_dir):
    from indexer.errors import QueryError
    from indexer.pipeline import open_store
    from searchd.service import SearchService

    build_sample_index(settings, sample_dir).close()
    with SearchService.keyword_only(open_store(settings, create=False), settings) as service:
        assert service.search(service.parse({"q": "veteran", "mode": "keyword"})).hits
        with pytest.raises(QueryError, match="mode=keyword"):
            service.search(service.parse({"q": "veteran", "mode": "dense"}))
        assert service.stats()["vectors"] == 0 and service.stats()["exact"]


def test_the_holder_closes_the_service_it_loaded_but_not_one_it_was_given(settings, sample_dir):
    from searchd.server import ApiError, ServiceHolder

    given = build_sample_index(settings, sample_dir)
    holder = ServiceHolder(given)
    holder.close()
    assert holder.get() is given and given.index.ntotal > 0  # the caller's to close
    loader = ServiceHolder()
    loader._keep(given)  # what the background load does with the service it loaded
    loader.close()
    assert given.index.ntotal == 0
    with pytest.raises(ApiError, match="shutting down"):
        loader.get()
