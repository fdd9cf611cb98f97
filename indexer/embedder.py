"""Embedder protocol and the sentence-transformers implementation (the only place it is loaded)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from indexer.models import resolve_device, resolve_embedder_dir
from indexer.settings import EmbedderSettings, Settings


class Embedder(Protocol):
    """Texts to unit-norm vectors: what the index pipeline and the search service need of a model."""

    name: str  # model directory or id, recorded in the index manifest
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...  # (n, dim) float32, unit norm

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


def model_checksum(model_dir: Path) -> str:
    """sha256 over the weight files of a model directory (names and bytes), to pin an index to it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".json")):
        digest.update(str(path.relative_to(model_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class SentenceTransformerEmbedder:
    """Any sentence-transformers (or plain Hugging Face BERT) directory, mean-pooled and L2-normalised."""

    def __init__(self, model_dir: str | Path, settings: EmbedderSettings | None = None):
        import torch
        from sentence_transformers import SentenceTransformer

        self.settings = settings or EmbedderSettings()
        self.model_dir = Path(model_dir)
        self.name = str(self.model_dir)
        device = resolve_device(self.settings.device)
        self.model = SentenceTransformer(str(self.model_dir), device=device)
        self.model.max_seq_length = self.settings.max_length
        self.dim = int((getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension)())
        self._torch = torch

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._torch.inference_mode():
            vectors = self.model.encode([prefix + t for t in texts], batch_size=self.settings.batch_size,
                                        normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 vectors of passages (document prefix applied)."""
        return self._encode(texts, self.settings.document_prefix)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 vectors of queries (query prefix applied)."""
        return self._encode(texts, self.settings.query_prefix)


def load_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    """The configured embedder: a given dir, the trained one when present, else packaged MiniLM."""
    return SentenceTransformerEmbedder(resolve_embedder_dir(settings), settings.embedder)
