"""Eval indexes: an index directory per (dataset, embedder), built once and reused; ANN quality.

An eval index lives in eval.index_dir/<dataset>-<embedder checksum>. It is reused when its
manifest names the same embedder checksum, index type and title setting and its eval.json
records the same corpus file digest and chunking; otherwise it is rebuilt with the same
import and `indexer.pipeline.sync` that `indexer import` and `indexer build` use, encoding
through the vector cache so that a rebuild does not encode the same text twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from indexer.errors import IndexMismatchError
from indexer.settings import Settings

if TYPE_CHECKING:
    from indexer.vector_index import FaissIndex

EVAL_META = "eval.json"
_WORDS = re.compile(r"\w+(?:[-']\w+)*")


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (first 16 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def settings_for(settings: Settings, model_dir: Path, index_dir: Path) -> Settings:
    """Settings that point the index and the embedder at an eval index and one model."""
    return settings.replace(index=dataclasses.replace(settings.index, dir=index_dir),
                            embedder=dataclasses.replace(settings.embedder, model=str(model_dir)))


def _fingerprint(dataset: Path, settings: Settings) -> dict[str, Any]:
    from indexer.readers.beir import find_file

    corpus = find_file(dataset, "corpus")
    return {"corpus": corpus.name, "corpus_sha256": file_digest(corpus),
            "chunk": [settings.chunk.max_tokens, settings.chunk.overlap_tokens]}


def _reusable(s: Settings, fingerprint: dict[str, Any], checksum: str, variant: str) -> bool:
    """True when the index dir opens cleanly and was built from this corpus, embedder and index config."""
    from indexer.pipeline import MANIFEST, open_index, read_json, variant_of

    d = s.index.dir
    if read_json(d / EVAL_META) != fingerprint or not (d / MANIFEST).is_file():
        return False
    try:
        store, _, manifest = open_index(s)
        store.close()
    except IndexMismatchError:
        return False
    return (manifest["embedder"]["checksum"] == checksum and variant_of(manifest["embedder"]) == variant
            and manifest.get("configured_type") == s.index.type
            and manifest.get("embed_title") == s.index.embed_title)


def _clear_database(s: Settings) -> None:
    """A PostgreSQL store (store.url) outlives the eval index directory removed above: empty it too.

    One store.url holds one eval corpus: point each dataset's run at a database of its own.
    """
    if s.store.url:
        from indexer.pipeline import open_store

        with open_store(s) as store:
            store.clear()


def _import(dataset: Path, s: Settings, collection: str) -> dict[str, int]:
    """Read the BEIR corpus into a fresh store, in batches, stopping on a malformed record."""
    from indexer.importing import CorpusReader, import_corpus, stored
    from indexer.readers import ReadOptions

    stats = import_corpus(s, collection, CorpusReader("beir", dataset, ReadOptions(label_map=s.train_ner.label_map)),
                          batch_size=500)
    return {"documents": stored(stats), "chunks": stats.chunks}


def ensure_index(dataset: Path, name: str, model_dir: Path, settings: Settings) -> tuple[Settings, dict[str, Any]]:
    """Settings of a ready eval index for (dataset, model), building it when none matches; and what was done."""
    from indexer.embedder import SentenceTransformerEmbedder, model_checksum
    from indexer.inference.select import choice_for, store_texts
    from indexer.models import resolve_device
    from indexer.pipeline import open_store, save_json, sync
    from searchd.eval.cache import CachedEmbedder, VectorCache

    checksum = model_checksum(model_dir)
    variant = str(choice_for(settings.embedder.backend, settings.embedder.precision,
                             resolve_device(settings.embedder.device), settings.models.exports_dir, checksum).variant)
    key = checksum if variant == "torch-fp32" else f"{checksum}-{variant}"  # vectors differ by backend/precision
    s = settings_for(settings, model_dir, settings.eval.index_dir / f"{name}-{key}")
    fingerprint = _fingerprint(dataset, settings)
    info: dict[str, Any] = {"dir": str(s.index.dir), "embedder": str(model_dir), "checksum": checksum,
                            "variant": variant}
    if _reusable(s, fingerprint, checksum, variant):
        return s, {**info, "reused": True}
    started = time.perf_counter()
    if s.index.dir.exists():
        shutil.rmtree(s.index.dir)  # built from another corpus or config: start clean
    s.index.dir.mkdir(parents=True)
    _clear_database(s)
    info.update(_import(dataset, s, name))
    embedder = SentenceTransformerEmbedder(model_dir, s.embedder, settings.models.exports_dir, prepare=True,
                                           calibration=lambda: store_texts(s.store.url or s.index.dir))
    cached = CachedEmbedder(embedder, VectorCache(settings.eval.cache_dir / key, embedder.dim))
    store = open_store(s, create=False)
    try:
        sync(s, store, cached)
    finally:
        cached.close()
        store.close()
    save_json(s.index.dir / EVAL_META, fingerprint)  # last: only a finished build is ever reused
    return s, {**info, "reused": False, "build_seconds": round(time.perf_counter() - started, 1),
               "cache_hits": cached.hits, "encoded": cached.misses}


def ensure_store(dataset: Path, name: str, model_dir: Path, settings: Settings) -> tuple[Settings, dict[str, Any]]:
    """A store-only eval index (no vectors) for keyword-only runs: BM25 never reads the vectors."""
    from indexer.pipeline import has_store, read_json, save_json

    s = settings_for(settings, model_dir, settings.eval.index_dir / f"{name}-store")
    fingerprint = _fingerprint(dataset, settings)
    info: dict[str, Any] = {"dir": str(s.index.dir), "embedder": "none (keyword only)", "checksum": "-"}
    if read_json(s.index.dir / EVAL_META) == fingerprint and has_store(s):
        return s, {**info, "reused": True}
    started = time.perf_counter()
    if s.index.dir.exists():
        shutil.rmtree(s.index.dir)
    s.index.dir.mkdir(parents=True)
    _clear_database(s)
    info.update(_import(dataset, s, name))
    save_json(s.index.dir / EVAL_META, fingerprint)
    return s, {**info, "reused": False, "build_seconds": round(time.perf_counter() - started, 1),
               "encoded": 0, "cache_hits": 0}


def ann_recall(index: FaissIndex, query_vectors: np.ndarray, k: int, tolerance: float = 1e-5) -> dict[str, Any]:
    """Mean share of the exact top-k that the index returns, against brute force over the stored vectors.

    A returned chunk counts when its exact score reaches the k-th best exact score (less a small
    tolerance): corpora hold duplicate passages, and among equal scores any choice is right
    (the distance-threshold recall of ann-benchmarks).
    """
    ids = index.ids()
    matrix = index.vectors(ids)
    k = min(k, len(ids))
    recalls = []
    for q in query_vectors:
        if k == 0:
            recalls.append(1.0)
            continue
        kth = np.partition(matrix @ q, len(ids) - k)[len(ids) - k]
        _, got = index.search(q, k)
        scores = index.vectors(got) @ q if len(got) else np.zeros(0)
        recalls.append(float(np.sum(scores >= kth - tolerance)) / k)
    return {"k": k, "queries": len(recalls), "recall": float(np.mean(recalls)) if recalls else 1.0,
            "exact": index.exact, "description": index.description}


def entity_lexicon(store: Any, labels: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """Lower-cased surface form -> [(filter name, norm id)] of affirmed mentions with the given labels."""
    out: dict[str, list[tuple[str, str]]] = {}
    for surface, label, norm_id in store.mention_forms(labels):
        surface = " ".join(_WORDS.findall(surface))  # keyed the way query n-grams are built
        if len(surface) >= 3 and (label.lower(), norm_id) not in out.get(surface, ()):  # two-letter forms ("ad", "ms") match too many queries by accident
            out.setdefault(surface, []).append((label.lower(), norm_id))
    return out


def entity_filters(text: str, lexicon: dict[str, list[tuple[str, str]]], max_words: int = 6) -> dict[str, tuple[str, ...]]:
    """Filters for the entities named in a query: every word n-gram found in the lexicon (OR within a label)."""
    words = _WORDS.findall(text.lower())
    found: dict[str, dict[str, None]] = {}
    for n in range(1, max_words + 1):
        for i in range(len(words) - n + 1):
            for name, norm_id in lexicon.get(" ".join(words[i:i + n]), ()):
                found.setdefault(name, {})[norm_id] = None
    return {name: tuple(ids) for name, ids in sorted(found.items())}
