"""Reranker protocol and the cross-encoder implementation (one logit per (query, passage) pair).

The model is what `indexer train-reranker` saves (a sentence-transformers CrossEncoder directory:
a BERT sequence classifier with one label and its tokenizer). It runs on torch or on an ONNX /
OpenVINO export made by indexer/inference (kind "reranker"), chosen like the embedder's backend
(search.rerank_backend / rerank_precision); searchd never exports, `indexer export-models` does.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from indexer.errors import ModelError
from indexer.models import resolve_device, resolve_model_dir
from indexer.settings import Settings

EXPORT_COMMAND = "indexer export-models"


class Reranker(Protocol):
    """Scores passages against a query; higher is more relevant."""

    name: str

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray: ...  # (n,) float32


class CrossEncoderReranker:
    """A cross-encoder directory on torch or on one of its exports."""

    def __init__(self, model_dir: str | Path, max_length: int = 128, backend: str = "torch", precision: str = "fp32",
                 device: str = "cpu", exports: Path | None = None, threads: int = 0, prepare: bool = False,
                 calibration: Callable[[], Sequence[tuple[str, str]]] = tuple, batch_size: int = 32):
        from indexer.embedder import model_checksum
        from indexer.inference.runtime import load_tokenizer
        from indexer.inference.select import choice_for, open_variant

        self.model_dir = Path(model_dir)
        self.name = str(self.model_dir)
        self.max_length, self.batch_size = max_length, batch_size
        if not (self.model_dir / "config.json").is_file():
            raise ModelError(f"reranker directory {self.name!r} has no config.json; train one with "
                             f"`indexer train-reranker`")
        self.checksum = model_checksum(self.model_dir, exclude=("medlex-model.json", "training.json"))
        self.choice = choice_for(backend, precision, device, exports, self.checksum)
        self.session = open_variant("reranker", self.model_dir, self.checksum, self.choice, exports, threads,
                                    prepare, calibration, EXPORT_COMMAND, say=_say)
        self.tokenizer = load_tokenizer("reranker", self.model_dir)
        if self.session is None:
            import torch
            from transformers import AutoModelForSequenceClassification

            self._torch = torch
            self.model = AutoModelForSequenceClassification.from_pretrained(self.model_dir).to(device).eval()
            self.device = device
        if self._logits([("probe", "probe")]).shape != (1,):
            raise ModelError(f"{self.name!r} is not a one-logit cross-encoder (its head gives "
                             f"{self._logits([('probe', 'probe')]).shape} per pair)")

    def _logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        from indexer.inference.runtime import tokenize

        if self.session is not None:
            feeds = tokenize(self.tokenizer, pairs, self.max_length, self.session.input_names)
            return self.session.run(feeds).reshape(len(pairs), -1)[:, 0]
        enc = self.tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation="longest_first",
                             max_length=self.max_length, return_tensors="pt").to(self.device)
        with self._torch.inference_mode():
            out = self.model(**enc).logits
        return out.float().cpu().numpy().reshape(len(pairs), -1)[:, 0]

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """One logit per passage (float32)."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query.strip(), p.strip()) for p in passages]
        step = max(1, self.batch_size)
        return np.concatenate([self._logits(pairs[i:i + step]) for i in range(0, len(pairs), step)]).astype(np.float32)


def resolve_reranker_dir(settings: Settings) -> Path | None:
    """search.rerank_model, or (auto) the first reranker on the models search path, or None."""
    if settings.search.rerank_model == "auto":
        from indexer.registry import find

        found = find(settings, "reranker")
        return found.path if found is not None else None
    return resolve_model_dir(settings.search.rerank_model)


def load_reranker(settings: Settings, prepare: bool = False,
                  calibration: Callable[[], Sequence[tuple[str, str]]] | None = None) -> CrossEncoderReranker:
    """The configured reranker, or a ModelError saying how to get one.

    `prepare` (indexer commands, eval) makes a missing export, calibrating int8 on `calibration`,
    by default (title, passage) pairs from the index's store.
    """
    path = resolve_reranker_dir(settings)
    if path is None:
        raise ModelError("search.rerank_depth is set but no reranker is on the models search path "
                         "(`indexer models` lists them); run `indexer train-reranker` or set search.rerank_model")
    s = settings.search
    return CrossEncoderReranker(path, s.rerank_max_length, s.rerank_backend, s.rerank_precision,
                                resolve_device(settings.embedder.device), settings.models.exports_dir,
                                settings.embedder.threads, prepare,
                                calibration or (lambda: store_pairs(settings.store.url or settings.index.dir)))


def store_pairs(index_dir: Path | str, limit: int = 256) -> list[tuple[str, str]]:
    """Calibration pairs: (a document's title, one of its chunks) for the first chunks of the store."""
    from indexer.store import DocumentStore

    from indexer.store import MissingStore
    from indexer.store.schema import is_url

    path = index_dir if is_url(index_dir) else Path(index_dir) / "store.sqlite"  # store.url, or the index's file
    try:
        store = DocumentStore(path, create=False)
    except MissingStore:
        return []
    try:
        return [(title or text[:80], text) for title, text in store.chunk_texts(store.chunk_ids()[:limit]).values()]
    finally:
        store.close()


def _say(message: str) -> None:
    print(message, file=sys.stderr)
