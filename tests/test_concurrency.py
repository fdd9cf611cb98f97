"""A running searchd on waitress while writers add and delete documents: no errors, changes seen without a restart.

Client threads search (dense, hybrid, keyword, GET and POST), ask for facets, stats and
documents without pause; two writer threads (taking the index's writer lock, so one waits for
the other) add a document with a word no other document has, wait until dense and hybrid
search rank it first, delete it, and wait until no mode finds it. Every answer must be a 200.
"""
from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

import pytest

from indexer.documents import Document
from indexer.writer_lock import writer_lock
from tests.sample_index import SAMPLE
from tests.search_fixtures import KeywordEmbedder, build_sample_index, sample_chunker
from tests.test_reload import fixture_settings, keyword_loader

SEEN_WITHIN = 20.0  # seconds for a change to show in search (the daemon checks the manifest on each request)


@pytest.fixture
def served(tmp_path):
    """searchd over the sample index, on waitress with 8 threads on a loopback port; (settings, base url)."""
    from waitress import create_server

    from searchd.server import create_app

    settings = fixture_settings(tmp_path)
    build_sample_index(settings, SAMPLE).close()
    app = create_app(settings, load=True, loader=keyword_loader)
    for thread in threading.enumerate():
        if thread.name == "searchd-load":
            thread.join(60)
    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    stopping = threading.Event()

    def serve() -> None:
        try:
            server.run()
        except OSError:  # close() pulls the socket from under the select loop
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield settings, f"http://127.0.0.1:{server.effective_port}"
    stopping.set()
    server.close()
    thread.join(10)
    app.extensions["searchd"].close()


def fetch(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode(errors="replace")[:300]}


def client_loop(base: str, stop: threading.Event, statuses: Counter, failures: list, seed: int) -> None:
    rng = random.Random(seed)
    queries = ["veteran PTSD", "warfarin bleeding", "service connection", "zoo bite", "malpractice negligence"]
    while not stop.is_set():
        q = rng.choice(queries)
        url, body = rng.choice([(f"{base}/search?q={q.replace(' ', '+')}&mode={m}", None)
                                for m in ("dense", "hybrid", "keyword")]
                               + [(f"{base}/search", {"q": q, "mode": "hybrid", "k": 5}), (f"{base}/facets", None),
                                  (f"{base}/stats", None), (f"{base}/documents/1", None)])
        try:
            status, answer = fetch(url, body)
        except Exception as exc:  # noqa: BLE001 - a dropped connection is a failure to report, not to raise here
            failures.append(f"{url}: {exc!r}")
            continue
        statuses[status] += 1
        if status != 200:
            failures.append(f"{url}: {status} {answer}")


def top_ids(base: str, q: str, mode: str) -> list[str]:
    status, answer = fetch(f"{base}/search?q={q}&mode={mode}&k=5")
    assert status == 200, answer
    return [h["external_id"] for h in answer["hits"]]


def wait_for(check, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < SEEN_WITHIN, f"{what} not seen within {SEEN_WITHIN} s"
        time.sleep(0.05)
    return time.monotonic() - started


def writer(settings, base: str, name: str, rounds: int, seen: list, failures: list) -> None:
    from indexer.pipeline import change

    try:
        for r in range(rounds):
            word = f"quokka{name}{r}"
            doc = Document(f"{name}-{r}", f"Zoo bite claim {word}", f"The claimant was bitten by {word} at the zoo.",
                           {"source": "test"})
            with writer_lock(settings.index.dir, f"test writer {name}", say=lambda m: None):
                change(settings, KeywordEmbedder(), "sample", [doc], [], sample_chunker)
            for mode in ("dense", "hybrid"):
                seen.append(wait_for(lambda: top_ids(base, word, mode)[:1] == [doc.id], f"{doc.id} in {mode}"))
            with writer_lock(settings.index.dir, f"test writer {name}", say=lambda m: None):
                change(settings, KeywordEmbedder(), "sample", [], [doc.id], sample_chunker)
            for mode in ("dense", "hybrid", "keyword"):
                wait_for(lambda: doc.id not in top_ids(base, word, mode), f"{doc.id} gone from {mode}")
    except Exception as exc:  # noqa: BLE001 - reported by the test thread
        failures.append(f"writer {name}: {exc!r}")


def run_load(served, clients: int, rounds: int) -> tuple[Counter, list, list]:
    settings, base = served
    stop, statuses, failures, seen = threading.Event(), Counter(), [], []
    threads = [threading.Thread(target=client_loop, args=(base, stop, statuses, failures, i)) for i in range(clients)]
    writers = [threading.Thread(target=writer, args=(settings, base, name, rounds, seen, failures))
               for name in ("a", "b")]
    for t in threads + writers:
        t.start()
    for t in writers:
        t.join(600)
    stop.set()
    for t in threads:
        t.join(60)
    status, stats = fetch(f"{base}/stats")
    assert status == 200
    assert stats["store"]["documents"] == stats["manifest"]["documents"] == 12
    assert stats["vectors"] == stats["store"]["chunks"] == stats["manifest"]["chunks"] and stats["in_step"]
    return statuses, failures, seen


def test_searches_stay_200_while_writers_add_and_delete(served):
    statuses, failures, seen = run_load(served, clients=4, rounds=2)
    assert not failures, failures[:5]
    assert sum(statuses.values()) >= 50 and set(statuses) == {200}
    print(f"{sum(statuses.values())} requests, all 200; changes seen in search after at most {max(seen):.2f} s")


@pytest.mark.slow
def test_sixteen_clients_and_two_writers_for_longer(served):
    statuses, failures, seen = run_load(served, clients=16, rounds=8)
    assert not failures, failures[:5]
    assert set(statuses) == {200}
    print(f"{sum(statuses.values())} requests, all 200; changes seen in search after at most {max(seen):.2f} s")
