"""Embedder protocol and the sentence-transformers implementation (the only place it is loaded)."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from indexer.models import resolve_device, resolve_embedder_dir
from indexer.settings import EmbedderSettings, Settings

EXPORT_COMMAND = "indexer export-models"
# sub-token lengths a query encoder on OpenVINO also compiles a fixed-shape graph for (one query padded to the
# next of them; a longer one takes the dynamic graph): typed queries are mostly 8-30 sub-tokens
QUERY_LENGTHS = (16, 32, 64)


class Embedder(Protocol):
    """Texts to unit-norm vectors: what the index pipeline and the search service need of a model."""

    name: str  # model directory or id, recorded in the index manifest
    dim: int
    checksum: str | None  # of the model directory; None for a model without one (the name stands in)
    backend: str  # torch | onnx | openvino, recorded in the manifest
    precision: str  # fp32 | bf16 | int8

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...  # (n, dim) float32, unit norm

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")


def model_checksum(model_dir: Path, suffixes: tuple[str, ...] | None = WEIGHT_SUFFIXES,
                   exclude: tuple[str, ...] = ()) -> str:
    """sha256 over a model directory's files (names and bytes), to pin an index or a tagging to it.

    `suffixes` picks the files (None: every file); `exclude` names files left out (e.g. the card).
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name not in exclude
                       and (suffixes is None or p.suffix in suffixes)):
        digest.update(str(path.relative_to(model_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class SentenceTransformerEmbedder:
    """Any sentence-transformers (or plain Hugging Face BERT) directory, mean-pooled and L2-normalised.

    Runs on torch, or on an ONNX Runtime / OpenVINO export of the whole pipeline (transformer,
    pooling, dense, normalisation) chosen by `embedder.backend` and `embedder.precision`.
    With `prepare` a missing or stale export is made (indexer commands); without, it is an
    error naming the command (searchd never exports at query time). `purpose` "query" (searchd)
    lets `auto` pick by one query's latency; when that variant's export is not made, the build
    choice (whose export `indexer build` made) answers, and the reason says so.
    """

    def __init__(self, model_dir: str | Path, settings: EmbedderSettings | None = None, exports: Path | None = None,
                 prepare: bool = False, calibration: Callable[[], Sequence[str]] = tuple, purpose: str = "build"):
        from indexer.inference.exports import staleness
        from indexer.inference.select import Choice, choice_for, open_variant

        self.settings = settings or EmbedderSettings()
        self.model_dir = Path(model_dir)
        self.name = str(self.model_dir)
        self.checksum = model_checksum(self.model_dir)
        device = resolve_device(self.settings.device)
        self.choice = choice_for(self.settings.backend, self.settings.precision, device, exports, self.checksum, purpose)
        if purpose == "query" and not prepare and self.choice.variant.backend != "torch" and exports is not None:
            why = staleness(exports, self.checksum, self.choice.variant, "embedder")
            if why is not None:
                build = choice_for(self.settings.backend, self.settings.precision, device, exports, self.checksum)
                if build.variant != self.choice.variant:
                    self.choice = Choice(build.variant, f"{build.reason}; queries would run {self.choice.variant} "
                                                        f"sooner, but its export is {why} (`{EXPORT_COMMAND}` makes it)")
        self.backend, self.precision = self.choice.variant.backend, self.choice.variant.precision
        self.session = open_variant("embedder", self.model_dir, self.checksum, self.choice, exports,
                                    self.settings.threads, prepare, calibration, EXPORT_COMMAND, say=_say,
                                    streams=1 if purpose == "query" else self.settings.streams,
                                    lengths=QUERY_LENGTHS if purpose == "query" else ())
        if self.session is None:
            self._load_torch(device)
        else:
            from indexer.inference.runtime import load_tokenizer

            self.tokenizer = load_tokenizer("embedder", self.model_dir)
            self.dim = int(self._run(["probe"]).shape[1])

    def _load_torch(self, device: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(self.model_dir), device=device)
        self.model.max_seq_length = self.settings.max_length
        self.dim = int((getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension)())
        self._torch = torch

    def _run(self, texts: list[str]) -> np.ndarray:
        """One batch through the export; sentence-transformers strips texts before tokenising, so do we."""
        from indexer.inference.runtime import tokenize

        feeds = tokenize(self.tokenizer, [t.strip() for t in texts], self.settings.max_length, self.session.input_names)
        out = self.session.run(feeds)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _encode(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = [prefix + t for t in texts]
        if self.session is not None:
            step = max(1, self.settings.batch_size)
            batches = [texts[i:i + step] for i in range(0, len(texts), step)]
            return np.ascontiguousarray(np.concatenate(self.session.map(self._run, batches)), dtype=np.float32)
        with self._torch.inference_mode():
            vectors = self.model.encode(texts, batch_size=self.settings.batch_size,
                                        normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 vectors of passages (document prefix applied)."""
        return self._encode(texts, self.settings.document_prefix)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 vectors of queries (query prefix applied)."""
        return self._encode(texts, self.settings.query_prefix)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def load_embedder(settings: Settings, prepare: bool = False,
                  calibration: Callable[[], Sequence[str]] | None = None,
                  purpose: str = "build") -> SentenceTransformerEmbedder:
    """The configured embedder: a given dir, the trained one when present, else packaged MiniLM.

    `prepare` (indexer commands) makes a missing export, calibrating int8 on `calibration`, by
    default the index's first chunks. `purpose` "query" is searchd's (see the class).
    """
    from indexer.inference.select import store_texts

    return SentenceTransformerEmbedder(resolve_embedder_dir(settings), settings.embedder, settings.models.exports_dir,
                                       prepare, calibration or (lambda: store_texts(settings.store.url or settings.index.dir)),
                                       purpose)
