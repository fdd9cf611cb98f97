"""`indexer build --engine ray`: tagging and encoding as one Ray Data job (the optional [cluster] extra).

The driver does what the local build does around the models: it works out what is pending
(documents the tagger has not seen, chunks not in the vector index or its checkpoint), writes
every result and checkpoints, so the build resumes exactly like `pipeline.sync`. The job:

    from_items(blocks of pending ids) -> map_batches(_read_block): the store's texts, per block
        -> map_batches(_Worker, ActorPoolStrategy(workers)): each actor loads the embedder and
           the tagger once and encodes chunk rows / tags document rows
        -> iter_batches on the driver: mentions written ner.build_batch documents per store
           transaction, vectors added and checkpointed every index.checkpoint_every chunks.

Read tasks open the store by path, so every Ray node must see the index directory (one machine,
or a shared filesystem). Ray is imported only here and only when the engine is asked for.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from indexer.documents import Mention
from indexer.embedder import Embedder
from indexer.errors import ConfigError
from indexer.settings import Settings
from indexer.store import DocumentStore

if TYPE_CHECKING:  # the protocol only; indexer.ner imports torch
    from indexer.ner import Tagger

TAG, ENCODE = 0, 1  # the two kinds of rows in the job
USES = {"data": "indexer build --engine ray", "serve": "cluster.serve_shards"}  # what needs each Ray library


def import_ray(library: str = "data"):
    """The ray module with its `library` (data: the build; serve: searchd's shard replicas), or a ConfigError that
    says how to install it."""
    try:
        import ray
        importlib.import_module(f"ray.{library}")  # each library is an extra of ray: ray[data], ray[serve]
    except ImportError as exc:
        raise ConfigError(f"{USES[library]} needs Ray {library.title()} ({exc.name} is not installed); "
                          f"install the extra with `pip install -e .[cluster]`") from None
    return ray


def check_cluster(settings: Settings) -> None:
    c = settings.cluster
    if c.workers < 1 or c.batch_size < 1 or c.block_size < 1 or c.cpus_per_worker <= 0 or c.gpus_per_worker < 0:
        raise ConfigError(f"cluster.workers, batch_size and block_size must be at least 1, cpus_per_worker above 0 "
                          f"and gpus_per_worker 0 or more; got workers={c.workers}, batch_size={c.batch_size}, "
                          f"block_size={c.block_size}, cpus_per_worker={c.cpus_per_worker}, "
                          f"gpus_per_worker={c.gpus_per_worker}")


def start(settings: Settings, need_cpu: float | None = None, need_gpu: float | None = None,
          what: str | None = None, knobs: str = "cluster.workers or cpus_per_worker/gpus_per_worker",
          library: str = "data"):
    """Join cluster.address, or start a local cluster (cluster.local_cpus CPUs); returns (ray, whether we started it).

    The cluster must offer `need_cpu` CPUs and `need_gpu` GPUs for `what` (default: the build's actor pool);
    `library`: the Ray library it is for (import_ray)."""
    ray = import_ray(library)
    if ray.is_initialized():
        return ray, False
    c = settings.cluster
    local = not c.address
    # a local cluster's workers import medlex as this process does (its PYTHONPATH); a remote one has its own install
    env = {k: os.environ[k] for k in ("PYTHONPATH", "MEDLEX_DATA_DIR") if k in os.environ} if local else {}
    ray.init(address=c.address or None, num_cpus=(c.local_cpus or None) if local else None,
             # the build streams its actors' output; searchd's stdout (searchd search --json) carries answers only:
             # a replica's failure still comes back as the exception of its call
             include_dashboard=False, logging_level="warning", log_to_driver=library == "data",
             runtime_env={"env_vars": env} if env else None)
    have = ray.cluster_resources()
    if what is None:
        need_cpu, need_gpu = c.workers * c.cpus_per_worker, c.workers * c.gpus_per_worker
        what = f"cluster.workers={c.workers} actors"
    if have.get("CPU", 0) < need_cpu or have.get("GPU", 0) < need_gpu:
        ray.shutdown()
        raise ConfigError(f"{what} need {need_cpu:g} CPUs and {need_gpu:g} GPUs, but the "
                          f"Ray cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; lower "
                          f"{knobs}")
    return ray, True


def _blocks(kind: int, ids: np.ndarray, size: int) -> list[dict[str, Any]]:
    return [{"kind": kind, "ids": np.asarray(ids[i:i + size], dtype=np.int64).tobytes()} for i in range(0, len(ids), size)]


def _read_block(batch: dict[str, np.ndarray], settings: Settings) -> dict[str, np.ndarray]:
    """Rows (kind, id, text) of the blocks in `batch`: document texts to tag, 'Title. chunk' texts to encode."""
    from indexer.pipeline import embed_text, open_store

    kinds, ids, texts, legal = [], [], [], []
    store = open_store(settings, create=False)
    try:
        for kind, raw in zip(batch["kind"], batch["ids"]):
            block = np.frombuffer(raw, dtype=np.int64)
            if kind == TAG:
                rows = [r for part in store.document_texts(block.tolist(), len(block)) for r in part]
                known = store.legal_documents([i for i, _ in rows])
                legal += [i in known for i, _ in rows]
            else:
                found = store.chunk_texts(block.tolist())
                rows = [(i, embed_text(*found[i], settings)) for i in block.tolist() if i in found]
                legal += [False] * len(rows)
            kinds += [int(kind)] * len(rows)
            ids += [i for i, _ in rows]
            texts += [t for _, t in rows]
    finally:
        store.close()
    return {"kind": np.asarray(kinds, np.int8), "id": np.asarray(ids, np.int64), "text": np.asarray(texts, dtype=object),
            "legal": np.asarray(legal, dtype=bool)}


class _Worker:
    """A Ray actor: the embedder and (when tagging) the tagger, loaded once; encodes and tags rows."""

    def __init__(self, settings: Settings, tag: bool):
        from indexer.embedder import load_embedder

        threads = max(1, int(settings.cluster.cpus_per_worker))  # an onnx/openvino session per actor: its own CPUs, not all
        settings = settings.replace(
            embedder=dataclasses.replace(settings.embedder, threads=settings.embedder.threads or threads),
            ner=dataclasses.replace(settings.ner, threads=settings.ner.threads or threads))
        self.settings = settings
        self.embedder = load_embedder(settings)
        self.tagger = None
        if tag:
            from indexer.ner import load_tagger

            self.tagger = load_tagger(settings, prepare=False)  # the driver prepared any export

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from indexer.pipeline import encode_texts

        kinds, texts = batch["kind"], batch["text"]
        vectors = np.zeros((len(kinds), self.embedder.dim), np.float32)
        mentions = np.full(len(kinds), "[]", dtype=object)
        encode = np.flatnonzero(kinds == ENCODE)
        if len(encode):
            vectors[encode] = encode_texts(self.embedder, [texts[i] for i in encode], self.settings.index.build_batch)
        tag = np.flatnonzero(kinds == TAG)
        step = max(1, self.settings.ner.build_batch)  # the local build's tagger calls, so the same windows batch
        for start in range(0, len(tag), step):
            part = tag[start:start + step]
            hints = [True if batch["legal"][i] else None for i in part]  # as tagging.tag_documents gives them
            for i, found in zip(part, self.tagger.tag([texts[i] for i in part], legal=hints)):
                mentions[i] = json.dumps([dataclasses.asdict(m) for m in found])
        return {"kind": kinds, "id": batch["id"], "vector": vectors, "mentions": mentions}


def sync_on_ray(settings: Settings, store: DocumentStore, embedder: Embedder, rebuild: bool = False,
                tagger: Tagger | None = None) -> dict[str, Any]:
    """`pipeline.sync` with tagging and encoding run by Ray actors; the same manifest, index and mentions."""
    from indexer import pipeline as p

    check_cluster(settings)
    started = time.perf_counter()
    d, c = settings.index.dir, settings.cluster
    identity = p.embedder_identity(embedder)
    untagged = np.asarray(store.untagged_documents(tagger.checksum) if tagger is not None else [], dtype=np.int64)
    store_ids = np.asarray(store.chunk_ids(), dtype=np.int64)
    index, recorded = p._starting_index(settings, store_ids, identity, rebuild)
    missing, stale = p._diff(store_ids, index.ids())
    if recorded is not None:
        identity = p.extend_identity(index, store, embedder, recorded, settings) if len(missing) else \
            p.recorded_variant(identity, recorded)
    index.remove(stale)
    if len(index.tombstones) > p.COMPACT_ABOVE * max(index.ntotal, 1):
        index = index.compact()
    partial_meta = {"embedder": identity, "index_type": index.description, "configured_type": settings.index.type,
                    "embed_title": settings.index.embed_title, "rebuild": rebuild}
    found: Counter = Counter()
    startup = 0.0
    if len(untagged) or len(missing):
        mark = time.perf_counter()
        ray, started_here = start(settings)
        startup = time.perf_counter() - mark
        try:
            found = _run_job(ray, settings, store, index, untagged, missing, tagger, partial_meta)
        finally:
            if started_here:
                ray.shutdown()
    manifest = p.manifest_for(index, store, identity, settings, time.perf_counter() - started, len(missing))
    manifest.update(tagger=tagger.checksum if tagger is not None else None, tagged_last_build=len(untagged),
                    mentions_last_build=dict(found), engine="ray", workers=c.workers,
                    ray_start_seconds=round(startup, 3))
    p.publish_shards(settings, index, manifest, p.read_json(d / p.MANIFEST))
    p.commit(d, index, manifest)
    p.prune_shards(d, manifest)
    for name in (p.PARTIAL, p.PARTIAL_META):
        (d / name).unlink(missing_ok=True)
    return manifest


def _run_job(ray, settings: Settings, store: DocumentStore, index, untagged: np.ndarray, missing: np.ndarray,
             tagger: Tagger | None, partial_meta: dict[str, Any]) -> Counter:
    """Stream the job's results into the store (mentions) and the index (vectors, with checkpoints)."""
    from tqdm import tqdm

    from indexer import pipeline as p

    c, d = settings.cluster, settings.index.dir
    ray.data.DataContext.get_current().enable_progress_bars = False  # one tqdm bar below instead
    items = _blocks(TAG, untagged, c.block_size) + _blocks(ENCODE, missing, c.block_size)
    ds = ray.data.from_items(items, override_num_blocks=len(items)) \
        .map_batches(_read_block, batch_size=1, fn_args=(settings,), num_cpus=0) \
        .map_batches(_Worker, batch_size=c.batch_size, compute=ray.data.ActorPoolStrategy(size=c.workers),
                     fn_constructor_args=(settings, tagger is not None), num_cpus=c.cpus_per_worker,
                     num_gpus=c.gpus_per_worker or None, batch_format="numpy")
    found: Counter = Counter()
    mentions: dict[int, list[Mention]] = {}
    ids: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    pending = 0
    step = max(1, settings.index.checkpoint_every)
    checkpoint = index.is_trained and step < len(missing)  # IVF trains once on everything, so it adds at the end

    def write_mentions() -> None:
        if mentions:
            found.update(store.replace_model_mentions(dict(mentions), tagger.checksum))
            mentions.clear()

    def add_vectors(save: bool) -> None:
        nonlocal pending
        if ids:
            group, block = np.concatenate(ids), np.vstack(vectors)
            ids.clear(), vectors.clear()
            pending = 0
            index.train(block)
            index.add(block, group)
            if save:
                os.replace(p.write_aside(d / p.PARTIAL, index.save), d / p.PARTIAL)
                p.save_json(d / p.PARTIAL_META, {**partial_meta, "tombstones": index.tombstones.tolist()})

    with tqdm(total=len(untagged) + len(missing), desc="ray: tag and encode", unit="row", dynamic_ncols=True) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            kinds = batch["kind"]
            for i in np.flatnonzero(kinds == TAG):
                mentions[int(batch["id"][i])] = [Mention(**m) for m in json.loads(batch["mentions"][i])]
                if len(mentions) >= max(1, settings.ner.build_batch):
                    write_mentions()
            encode = np.flatnonzero(kinds == ENCODE)
            if len(encode):
                ids.append(batch["id"][encode].astype(np.int64))
                vectors.append(np.asarray(batch["vector"][encode], dtype=np.float32))
                pending += len(encode)
                if checkpoint and pending >= step:
                    add_vectors(save=True)
            bar.update(len(kinds))
    write_mentions()
    add_vectors(save=False)
    return found
