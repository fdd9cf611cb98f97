"""A running searchd sees a changed index directory: new documents without a restart, no query dropped."""
from __future__ import annotations

import threading

from indexer.documents import Document
from indexer.settings import load_settings
from searchd.live import LiveService
from searchd.server import create_app
from tests.sample_index import REPO, SAMPLE
from tests.search_fixtures import KeywordEmbedder, build_sample_index, sample_chunker

NEW = Document("new-1", "Zolpidem somnambulism claim", "The claimant took zolpidem and drove while asleep.",
               {"source": "test"})


def keyword_loader(settings, previous):
    """SearchService.load with the keyword embedder the sample index was built with."""
    from indexer.pipeline import open_index
    from searchd.service import SearchService

    store, index, manifest = open_index(settings)
    return SearchService(store, index, KeywordEmbedder(), settings, manifest)


def fixture_settings(tmp_path):
    return load_settings(REPO / "config.toml", [f'index.dir="{tmp_path / "index"}"', "server.reload_check_seconds=0"])


def add_new(settings) -> None:
    from indexer.pipeline import change

    change(settings, KeywordEmbedder(), "sample", [NEW], [], sample_chunker)


def test_searchd_reloads_a_changed_index(tmp_path):
    settings = fixture_settings(tmp_path)
    build_sample_index(settings, SAMPLE).close()
    app = create_app(settings, load=True, loader=keyword_loader)
    for thread in threading.enumerate():
        if thread.name == "searchd-load":
            thread.join(60)
    client = app.test_client()
    before = client.get("/stats").get_json()
    assert client.get("/search?q=zolpidem+asleep&mode=dense").get_json()["hits"][0]["external_id"] != "new-1"
    add_new(settings)
    after = client.get("/stats").get_json()
    assert after["reload"]["generation"] == before["reload"]["generation"] + 1
    assert after["vectors"] > before["vectors"] and after["manifest"]["chunks"] == after["store"]["chunks"]
    assert before["in_step"] and after["in_step"] and after["pending_chunks"] == 0
    assert after["manifest"]["documents"] == after["store"]["documents"] == before["store"]["documents"] + 1
    for mode in ("dense", "hybrid", "keyword"):
        hits = client.get(f"/search?q=zolpidem+asleep&mode={mode}").get_json()["hits"]
        assert hits[0]["external_id"] == "new-1", mode
    app.extensions["searchd"].close()


def test_a_query_in_flight_keeps_its_service_until_it_ends(tmp_path):
    settings = fixture_settings(tmp_path)
    build_sample_index(settings, SAMPLE).close()
    live = LiveService(settings, keyword_loader)
    first = live.load()
    in_flight = live.acquire()
    add_new(settings)
    second = live.acquire()  # sees the new manifest and swaps
    assert second is not first and in_flight is first and live.generation == 2
    assert first.search(first.parse({"q": "veteran", "mode": "dense"})).hits  # still open for its query
    live.release(in_flight)
    assert first.index.ntotal == 0  # closed with its last request
    live.release(second)
    assert live.acquire() is second and second.index.ntotal > 0
    live.close()


def test_a_half_written_index_keeps_the_old_service(tmp_path):
    settings = fixture_settings(tmp_path)
    build_sample_index(settings, SAMPLE).close()
    live = LiveService(settings, keyword_loader)
    first = live.load()
    manifest = settings.index.dir / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])  # cut short, as a writer without atomic renames would leave it
    assert live.acquire() is first and live.generation == 1
    live.close()


def test_stale_tmp_files_of_dead_writers_go_at_the_next_write(tmp_path):
    import os
    import subprocess
    import sys

    from indexer.pipeline import save_json

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    target = tmp_path / "manifest.json"
    stale = tmp_path / f".manifest.json.{dead.stdout.strip()}.tmp"
    live = tmp_path / f".manifest.json.{os.getppid()}.tmp"  # a writer still running keeps its file
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"y")
    save_json(target, {"a": 1})
    assert not stale.exists() and live.exists() and target.is_file()


def test_web_in_process_sees_a_changed_index_and_deletes(tmp_path):
    """`web serve` without searchd: the in-process client reloads a changed index directory, as searchd does."""
    from indexer.pipeline import change
    from web import create_app
    from web.client import InProcessClient

    settings = fixture_settings(tmp_path)
    build_sample_index(settings, SAMPLE).close()
    client = InProcessClient(settings, loader=keyword_loader)
    page = create_app(settings, search=client).test_client()
    title = "Zolpidem somnambulism claim"
    assert title not in page.get("/?q=zolpidem+asleep&mode=dense").get_data(as_text=True)
    first = client.service()
    add_new(settings)
    for mode in ("dense", "hybrid"):
        assert title in page.get(f"/?q=zolpidem+asleep&mode={mode}").get_data(as_text=True), mode
    assert client.service() is not first and first.index.ntotal == 0, "the old service closed with its last call"
    change(settings, KeywordEmbedder(), "sample", [], ["new-1"], sample_chunker)
    for mode in ("dense", "hybrid", "keyword"):
        assert title not in page.get(f"/?q=zolpidem+asleep&mode={mode}").get_data(as_text=True), mode
    client.close()
