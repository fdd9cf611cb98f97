"""Shared fixtures: the sample corpus, a temporary index directory, a tiny random BERT, the store backend.

`pytest --store-backend postgres` runs every store-touching test on PostgreSQL: each test gets a
fresh database (tests/pg_cluster.py starts a throwaway cluster, or MEDLEX_TEST_PG_URL names a
server) as MEDLEX_STORE_URL, so every settings the test loads, in this process or in the commands
it starts, name it as store.url; `store_location` is that URL where it would be an SQLite file.
Tests marked `sqlite_only` are skipped there, with their reason.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from indexer.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "sample"


def pytest_addoption(parser):
    parser.addoption("--store-backend", choices=("sqlite", "postgres"), default="sqlite",
                     help="store of the tests that touch one: sqlite (default) or postgres (a throwaway PostgreSQL "
                          "cluster, or the server MEDLEX_TEST_PG_URL names)")


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only(reason): tests SQLite-specific behaviour; skipped on postgres")
    config.addinivalue_line("markers", "postgres_only(reason): needs a PostgreSQL store; skipped on sqlite")


def pytest_runtest_setup(item):
    backend = item.config.getoption("--store-backend")
    for name, skip_on in (("sqlite_only", "postgres"), ("postgres_only", "sqlite")):
        marker = item.get_closest_marker(name)
        if marker is not None and backend == skip_on:
            why = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            pytest.skip(f"{name.replace('_', ' ')}: {why}")


def store_backend(config) -> str:
    return config.getoption("--store-backend")


@pytest.fixture(scope="session")
def pg_server(request):
    """URL of a PostgreSQL server for the session: MEDLEX_TEST_PG_URL, else a throwaway cluster stopped at the end."""
    import os

    from tests.pg_cluster import PG_URL_ENV, Cluster

    if os.environ.get(PG_URL_ENV):
        yield os.environ[PG_URL_ENV]
        return
    cluster = Cluster()
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def pg_database(pg_server):
    """A fresh database on the session's server, dropped after the test."""
    from tests.pg_cluster import create_database, drop_database

    url = create_database(pg_server)
    yield url
    drop_database(url)


@pytest.fixture(autouse=True)
def _store_url_env(request, monkeypatch):
    """On postgres: MEDLEX_STORE_URL = the test's fresh database (every load_settings reads it)."""
    if store_backend(request.config) == "postgres":
        from indexer.settings import STORE_URL_ENV

        monkeypatch.setenv(STORE_URL_ENV, request.getfixturevalue("pg_database"))


@pytest.fixture
def store_url(request) -> str:
    """The test's store.url: empty on sqlite, the fresh database's URL on postgres."""
    return request.getfixturevalue("pg_database") if store_backend(request.config) == "postgres" else ""


@pytest.fixture
def more_store_urls(request):
    """A function giving one more store.url per call: empty on sqlite (each index dir its file), a new database on postgres."""
    if store_backend(request.config) != "postgres":
        yield lambda: ""
        return
    from tests.pg_cluster import create_database, drop_database

    server, made = request.getfixturevalue("pg_server"), []
    yield lambda: made.append(create_database(server)) or made[-1]
    for url in made:
        drop_database(url)


@pytest.fixture
def store_location(request, tmp_path):
    """Where a test's store goes: an SQLite file in tmp_path, or (postgres) a fresh database's URL."""
    if store_backend(request.config) == "postgres":
        return request.getfixturevalue("pg_database")
    return tmp_path / "s.sqlite"


def data_dir() -> Path:
    """The shared data directory as configured (MEDLEX_DATA_DIR or config.toml)."""
    return load_settings(REPO / "config.toml").data.dir


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Repository settings with the index directory in a temporary folder (on postgres, MEDLEX_STORE_URL's store)."""
    # an empty models path: library tests never pick up a model trained on this machine or shared beside the data;
    # torch, so that no test exports a model unless it asks (tests/test_backends.py does)
    return load_settings(REPO / "config.toml", [f'index.dir="{tmp_path / "index"}"', f'models.path=["{tmp_path / "models"}"]',
                                                f'models.exports_dir="{tmp_path / "exports"}"', "embedder.backend=torch",
                                                "embedder.precision=fp32", "ner.backend=torch", "ner.precision=fp32"])


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data directory; tests that need it skip when it is absent."""
    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"data directory {path} is absent")
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT (hidden 32) with the packaged MiniLM's vocabulary, saved to disk."""
    from transformers import BertConfig, BertModel

    from indexer.models import packaged_model_dir

    out = tmp_path_factory.mktemp("tiny-bert")
    base = packaged_model_dir()
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (out / name).write_bytes((base / name).read_bytes())
    return out
