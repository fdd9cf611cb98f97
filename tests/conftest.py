"""Shared fixtures: the sample corpus, a temporary index directory, a tiny random BERT."""
from __future__ import annotations

from pathlib import Path

import pytest

from indexer.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "sample"


def data_dir() -> Path:
    """The shared data directory as configured (MEDLEX_DATA_DIR or config.toml)."""
    return load_settings(REPO / "config.toml").data.dir


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    return SAMPLE


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Repository settings with the index directory in a temporary folder."""
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
