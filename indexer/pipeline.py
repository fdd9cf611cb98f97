"""Build and update an index directory: store.sqlite + vectors.faiss + manifest.json (wiring only).

The store is the record. `sync` makes the FAISS index hold exactly the store's chunks: it
encodes the chunks whose ids are not indexed and removes (or tombstones) ids no longer in the
store, so a build is incremental and resumable by construction. Progress is checkpointed to
vectors.partial.faiss every index.checkpoint_every chunks and picked up by the next build.
vectors.faiss and manifest.json are only ever replaced by writing aside and renaming, so a
crash leaves the previous index as it was. `change` (indexer add/update/delete) encodes
before its one short store transaction and renames the new files into place after it.
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from indexer.documents import Document
from indexer.embedder import Embedder
from indexer.errors import IndexMismatchError
from indexer.settings import Settings
from indexer.kill_points import reached
from indexer.store import Chunker, DocumentStore, ImportStats, MissingStore, content_hash
from indexer.tagging import tag_untagged
from indexer.vector_index import FaissIndex

if TYPE_CHECKING:  # the protocol only; indexer.ner imports torch
    from indexer.ner import Tagger

STORE, VECTORS, MANIFEST = "store.sqlite", "vectors.faiss", "manifest.json"
PARTIAL, PARTIAL_META = "vectors.partial.faiss", "vectors.partial.json"
FORMAT = 1
COMPACT_ABOVE = 0.2  # rebuild an index without removal support when this share of it is tombstones
COMPATIBLE_COSINE = 0.99  # vectors of another backend/precision this close to the stored ones may extend an index
COMPATIBILITY_SAMPLE = 64  # indexed chunks re-encoded to measure that


def store_location(settings: Settings) -> str | Path:
    """Where the index's store is: store.url when set, else the index directory's store.sqlite."""
    return settings.store.url or settings.index.dir / STORE


def open_store(settings: Settings, create: bool = True) -> DocumentStore:
    """The configured store (a MissingStore error, with create=False, when there is none).

    With create, the index directory is made too, as an SQLite store makes its file's: the vectors go there.
    """
    if create:
        settings.index.dir.mkdir(parents=True, exist_ok=True)
    return DocumentStore(store_location(settings), create=create)


def has_store(settings: Settings) -> bool:
    """True when the configured store exists (a PostgreSQL store: its tables)."""
    if not settings.store.url:
        return (settings.index.dir / STORE).is_file()
    try:
        open_store(settings, create=False).close()
    except MissingStore:
        return False
    return True


def embed_text(title: str, text: str, settings: Settings) -> str:
    """What is encoded for a chunk: 'Title. chunk text' when index.embed_title, else the chunk text."""
    if settings.index.embed_title and title.strip():
        return f"{title.strip().rstrip('.')}. {text}"
    return text


def embedder_identity(embedder: Embedder) -> dict[str, Any]:
    """Name, checksum, dimension, backend and precision of an embedder, as recorded in the manifest."""
    from indexer.embedder import model_checksum

    name = embedder.name
    path = Path(name)
    checksum = embedder.checksum or (model_checksum(path) if path.is_dir() else name)
    return {"name": name, "checksum": checksum, "dim": int(embedder.dim),
            "backend": embedder.backend, "precision": embedder.precision}


def variant_of(identity: dict[str, Any]) -> str:
    """'onnx-int8'; manifests written before backends were recorded are torch fp32."""
    return f"{identity.get('backend', 'torch')}-{identity.get('precision', 'fp32')}"


def extend_identity(index: FaissIndex, store: DocumentStore, embedder: Embedder, recorded: dict[str, Any],
                    settings: Settings) -> dict[str, Any]:
    """The identity to record when `embedder` adds vectors to an index built as `recorded`; refuses a mismatch.

    Another backend or precision may extend an index only when its vectors of a seeded sample of
    indexed chunks are within COMPATIBLE_COSINE of the stored ones; the manifest keeps the
    recorded variant and lists the compatible ones that added vectors.
    """
    current = embedder_identity(embedder)
    mine, theirs = variant_of(current), variant_of(recorded)
    if mine == theirs or index.ntotal == 0 or mine in recorded.get("extended_with", {}):
        return recorded_variant(current, recorded)
    ids = np.intersect1d(index.ids(), np.asarray(store.chunk_ids(), dtype=np.int64))
    sample = np.sort(np.random.default_rng(0).choice(ids, min(COMPATIBILITY_SAMPLE, len(ids)), replace=False))
    cosines = np.sum(_encode(store, embedder, sample, settings, None) * index.vectors(sample), axis=1)
    worst = float(cosines.min()) if len(cosines) else 1.0
    if worst < COMPATIBLE_COSINE:
        raise IndexMismatchError(
            f"the index holds {theirs} vectors and the configured embedder runs {mine}, whose vectors differ "
            f"(lowest cosine {worst:.4f} < {COMPATIBLE_COSINE} on {len(sample)} sampled chunks); run `indexer build "
            f"--rebuild`, or set embedder.backend={recorded.get('backend', 'torch')} "
            f"embedder.precision={recorded.get('precision', 'fp32')}")
    return {**recorded_variant(current, recorded),
            "extended_with": {**recorded.get("extended_with", {}), mine: round(worst, 4)}}


def recorded_variant(current: dict[str, Any], recorded: dict[str, Any]) -> dict[str, Any]:
    """The current identity with the backend and precision (and compatible variants) an index was built with."""
    out = {**current, "backend": recorded.get("backend", "torch"), "precision": recorded.get("precision", "fp32")}
    if recorded.get("extended_with"):
        out["extended_with"] = recorded["extended_with"]
    return out


def read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexMismatchError(f"{str(path)!r} is not valid JSON ({exc.msg}); run `indexer build --rebuild`") from None


def remove_stale_tmp(path: Path) -> list[Path]:
    """Remove the `.NAME.<pid>.tmp` files of `path` left by writers that died (kill -9); the ones removed.

    A live writer's file is kept: two writers may work on one index directory at once.
    """
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-len(".tmp")]
        if pid.isascii() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def write_aside(path: Path, write) -> Path:
    """Call write(tmp) for a temporary file beside `path`; return the temporary path (rename it to commit).

    Temporary files of `path` that dead writers left behind (each as large as the index) go first.
    """
    remove_stale_tmp(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    reached("write_aside")  # a temporary file as large as the index, not renamed yet
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    return tmp


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically."""
    os.replace(write_aside(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")), path)


def manifest_for(index: FaissIndex, store: DocumentStore, embedder: dict[str, Any], settings: Settings,
                 seconds: float, encoded: int) -> dict[str, Any]:
    counts = store.counts()
    return {"format": FORMAT, "embedder": embedder, "dim": index.dim, "metric": "inner_product",
            "index_type": index.description, "configured_type": settings.index.type,
            "embed_title": settings.index.embed_title, "vectors": int(index.index.ntotal),
            "live_vectors": index.ntotal, "tombstones": index.tombstones.tolist(),
            "documents": counts["documents"], "chunks": counts["chunks"], "mentions": counts["mentions"],
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(seconds, 3), "encoded_last_build": encoded}


def open_index(settings: Settings, mmap: bool = False) -> tuple[DocumentStore, FaissIndex, dict[str, Any]]:
    """Open an index directory and check that manifest, FAISS index and store agree (`mmap`: read-only, mapped)."""
    d = settings.index.dir
    try:  # one connection: on PostgreSQL, finding out whether the store exists is opening it
        store = open_store(settings, create=False)
    except MissingStore:
        raise IndexMismatchError(f"no store in {str(d)!r}; run `indexer import` and then `indexer build`") from None
    try:
        manifest = read_json(d / MANIFEST)
        if manifest is None or not (d / VECTORS).is_file():
            raise IndexMismatchError(f"no vector index in {str(d)!r}; run `indexer build`")
        if manifest.get("format") != FORMAT:
            raise IndexMismatchError(f"manifest format {manifest.get('format')!r} is not {FORMAT}; "
                                     "run `indexer build --rebuild`")
        index = FaissIndex.load(d / VECTORS, settings.index, manifest["index_type"], manifest.get("tombstones", []),
                                mmap)
        if index.dim != manifest["dim"] or int(index.index.ntotal) != manifest["vectors"]:
            raise IndexMismatchError(f"vectors.faiss holds {index.index.ntotal} vectors of dimension {index.dim} but "
                                     f"the manifest says {manifest['vectors']} of {manifest['dim']}; run `indexer build`")
        missing, stale = _diff(np.asarray(store.chunk_ids(), dtype=np.int64), index.ids())
        if len(missing) or len(stale):
            raise IndexMismatchError(f"the vector index is out of step with the store: {len(missing)} chunks are not "
                                     f"encoded and {len(stale)} deleted chunks are still indexed; run `indexer build`")
    except BaseException:
        store.close()
        raise
    return store, index, manifest


def check_embedder(settings: Settings, manifest: dict[str, Any]) -> None:
    """Refuse an index built with another embedder than the configured one."""
    from indexer.embedder import model_checksum
    from indexer.models import resolve_embedder_dir

    path = resolve_embedder_dir(settings)
    checksum = model_checksum(path)
    built = manifest["embedder"]
    if built["checksum"] != checksum:
        raise IndexMismatchError(f"the index was built with embedder {built['name']!r} (checksum {built['checksum']}) "
                                 f"but the configured one is {str(path)!r} (checksum {checksum}); run "
                                 f"`indexer build --rebuild`, or set embedder.model to the index's embedder")


def _diff(store_ids: np.ndarray, index_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chunk ids to encode, chunk ids to remove)."""
    return np.setdiff1d(store_ids, index_ids), np.setdiff1d(index_ids, store_ids)


def _starting_index(settings: Settings, store_ids: np.ndarray, identity: dict[str, Any],
                    rebuild: bool) -> tuple[FaissIndex, dict[str, Any] | None]:
    """Resume from a checkpoint, else continue the current index, else start empty; with the identity it was built as."""
    d = settings.index.dir
    candidates = [(d / PARTIAL, read_json(d / PARTIAL_META))]
    if not rebuild:
        candidates.append((d / VECTORS, read_json(d / MANIFEST)))
    for path, meta in candidates:
        if path.is_file() and meta and meta.get("embedder", {}).get("checksum") == identity["checksum"] \
                and meta.get("configured_type") == settings.index.type \
                and meta.get("embed_title") == settings.index.embed_title and meta.get("rebuild", False) == rebuild:
            return FaissIndex.load(path, settings.index, meta["index_type"], meta.get("tombstones", [])), meta["embedder"]
    return FaissIndex.create(identity["dim"], settings.index.type, settings.index, len(store_ids)), None


def sync(settings: Settings, store: DocumentStore, embedder: Embedder, rebuild: bool = False,
         tagger: Tagger | None = None) -> dict[str, Any]:
    """Tag what the tagger has not seen, then bring vectors.faiss in step with the store; returns the manifest.

    Tagging writes each batch of documents' mentions in its own store transaction (and records
    the tagger's checksum with them), so a build stopped while tagging resumes at the next
    untagged document; vectors.faiss and manifest.json are not touched until the end, so the
    previous index keeps answering meanwhile. Vectors of another backend or precision than the
    index's are refused unless measured compatible (`extend_identity`).
    """
    started = time.perf_counter()
    tagged, found = tag_untagged(store, tagger, settings.ner.build_batch) if tagger is not None else (0, {})
    d = settings.index.dir
    identity = embedder_identity(embedder)
    store_ids = np.asarray(store.chunk_ids(), dtype=np.int64)
    index, recorded = _starting_index(settings, store_ids, identity, rebuild)
    missing, stale = _diff(store_ids, index.ids())
    if recorded is not None:  # new vectors must match the old ones' backend and precision (none new: nothing to check)
        identity = extend_identity(index, store, embedder, recorded, settings) if len(missing) else \
            recorded_variant(identity, recorded)
    index.remove(stale)
    if len(index.tombstones) > COMPACT_ABOVE * max(index.ntotal, 1):
        index = index.compact()
    partial_meta = {"embedder": identity, "index_type": index.description, "configured_type": settings.index.type,
                    "embed_title": settings.index.embed_title, "rebuild": rebuild}
    _encode_missing(store, embedder, index, missing, settings, d, partial_meta)
    manifest = manifest_for(index, store, identity, settings, time.perf_counter() - started, len(missing))
    manifest.update(tagger=tagger.checksum if tagger is not None else None, tagged_last_build=tagged,
                    mentions_last_build=found)
    publish_shards(settings, index, manifest, read_json(d / MANIFEST))
    commit(d, index, manifest)
    prune_shards(d, manifest)
    for name in (PARTIAL, PARTIAL_META):
        (d / name).unlink(missing_ok=True)
        remove_stale_tmp(d / name)  # a checkpoint a killed build was writing when it died
    build_impact_lists(settings, store)
    return manifest


def build_impact_lists(settings: Settings, store: DocumentStore) -> int:
    """Rebuild the keyword impact lists when search.impact_lists is on and the store has none for its state."""
    s = settings.search
    weights = (s.bm25_title_weight, s.bm25_text_weight)
    if not s.impact_lists or store.term_impacts(weights) is not None:
        return 0
    return store.build_impacts(weights, s.impact_list_size)


def _encode_missing(store: DocumentStore, embedder: Embedder, index: FaissIndex, missing: np.ndarray,
                    settings: Settings, d: Path, partial_meta: dict[str, Any]) -> None:
    """Encode and add the missing chunks, checkpointing every index.checkpoint_every chunks."""
    from tqdm import tqdm

    step = max(1, settings.index.checkpoint_every)
    with tqdm(total=len(missing), desc="encode chunks", unit="chunk", dynamic_ncols=True) as bar:
        groups = [missing] if not index.is_trained else [missing[i:i + step] for i in range(0, len(missing), step)]
        for group in groups:
            vectors = _encode(store, embedder, group, settings, bar)
            index.train(vectors)  # IVF trains once, on everything still to encode
            index.add(vectors, group)
            if len(group) < len(missing):
                os.replace(write_aside(d / PARTIAL, index.save), d / PARTIAL)
                save_json(d / PARTIAL_META, {**partial_meta, "tombstones": index.tombstones.tolist()})
                reached("build.checkpoint")


def publish_shards(settings: Settings, index: FaissIndex, manifest: dict[str, Any],
                   previous: dict[str, Any] | None) -> None:
    """With index.shards > 1, write the shard files searchd loads and list them in `manifest` (indexer/shards.py)."""
    from indexer.shards import write_shards

    for key in ("shards", "shard_generation"):
        manifest.pop(key, None)
    manifest.update(write_shards(settings, index, previous))


def prune_shards(d: Path, manifest: dict[str, Any]) -> None:
    """After the manifest is committed: remove the shard files it no longer lists."""
    from indexer.shards import prune

    prune(d, manifest)


def commit(d: Path, index: FaissIndex, manifest: dict[str, Any]) -> None:
    """Replace vectors.faiss, then manifest.json, each by a rename."""
    os.replace(write_aside(d / VECTORS, index.save), d / VECTORS)
    reached("commit.vectors")  # vectors.faiss is new, manifest.json still the old one
    save_json(d / MANIFEST, manifest)


def _encode(store: DocumentStore, embedder: Embedder, ids: np.ndarray, settings: Settings, bar) -> np.ndarray:
    """Vectors of chunk ids, encoded in batches of similar length (less padding), in the order of `ids`."""
    texts = store.chunk_texts([int(i) for i in ids])
    inputs = [embed_text(*texts[int(i)], settings) for i in ids]
    return encode_texts(embedder, inputs, settings.index.build_batch, bar)


def encode_texts(embedder: Embedder, texts: Sequence[str], batch: int, bar=None) -> np.ndarray:
    """embed_documents over length-sorted batches, returned in input order."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), embedder.dim), dtype=np.float32)
    for start in range(0, len(texts), batch):
        part = order[start:start + batch]
        out[part] = embedder.embed_documents([texts[i] for i in part])
        if bar is not None:
            bar.update(len(part))
    return out


def change(settings: Settings, embedder: Embedder, collection: str, upserts: Sequence[Document],
           deletes: Sequence[str], chunker: Chunker) -> ImportStats:
    """Add/update/delete documents and their vectors; a failure before the store commit changes nothing.

    The slow part, encoding, runs first and outside any store transaction, so SQLite's write
    lock is held only while the rows are written (one short transaction). Then vectors.faiss and
    manifest.json are renamed into place. A stop between the store commit and those renames
    leaves the store ahead of the vectors: loading refuses with `indexer build`, and the next
    change (or build) brings them in step first.
    """
    d = settings.index.dir
    if not (d / MANIFEST).is_file():  # no index yet: write the store, then build one
        with open_store(settings) as store:
            stats = store.apply_changes(collection, upserts, deletes, chunker)
            sync(settings, store, embedder)
            return stats
    started = time.perf_counter()
    store, index, manifest = _open_for_change(settings, embedder)
    try:  # refuses vectors of another backend/precision before anything is written
        manifest["embedder"] = extend_identity(index, store, embedder, manifest["embedder"], settings)
        chunks, vectors = _encode_changed(store, embedder, collection, upserts, chunker, settings)
        reached("change.encoded")
        stats = store.apply_changes(collection, upserts, deletes, lambda doc: chunks.get(id(doc)) or chunker(doc))
        reached("change.stored")
        _catch_up(store, index, embedder, settings, vectors)
        counts = store.counts()
        manifest.update(vectors=int(index.index.ntotal), live_vectors=index.ntotal, tombstones=index.tombstones.tolist(),
                        documents=counts["documents"], chunks=counts["chunks"], mentions=counts["mentions"],
                        updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        update_seconds=round(time.perf_counter() - started, 3))
        publish_shards(settings, index, manifest, dict(manifest))
        commit(d, index, manifest)
        prune_shards(d, manifest)
        return stats
    finally:
        store.close()


def _open_for_change(settings: Settings, embedder: Embedder) -> tuple[DocumentStore, FaissIndex, dict[str, Any]]:
    """open_index; an index left out of step by a writer that stopped midway is first brought in step by `sync`.

    Only an index of this embedder and index type is mended so; any other mismatch is refused as open_index refuses it.
    """
    try:
        return open_index(settings)
    except IndexMismatchError as exc:
        d = settings.index.dir
        manifest = read_json(d / MANIFEST) or {}
        if not (d / VECTORS).is_file() or manifest.get("format") != FORMAT \
                or manifest.get("embedder", {}).get("checksum") != embedder_identity(embedder)["checksum"] \
                or manifest.get("configured_type") != settings.index.type:
            raise
        from tqdm import tqdm

        why = str(exc).split("; run `")[0]
        tqdm.write(f"note: an earlier writer stopped midway ({why}); bringing the index in step first", file=sys.stderr)
        with open_store(settings, create=False) as store:
            sync(settings, store, embedder)
        return open_index(settings)


def _encode_changed(store: DocumentStore, embedder: Embedder, collection: str, upserts: Sequence[Document],
                    chunker: Chunker, settings: Settings) -> tuple[dict[int, list], dict[str, np.ndarray]]:
    """Chunks of the new or changed documents (keyed by id() of the Document) and the vectors of their texts.

    Documents whose content hash the store already holds are unchanged and cost nothing. This
    only reads the store, so no write lock is held while the model runs.
    """
    known = store.content_hashes(collection, [doc.id for doc in upserts])
    chunks = {id(doc): chunker(doc) for doc in upserts if known.get(doc.id) != content_hash(doc)}
    texts = list(dict.fromkeys(embed_text(doc.title, c.text, settings)
                               for doc in upserts if id(doc) in chunks for c in chunks[id(doc)]))
    from tqdm import tqdm

    with tqdm(total=len(texts), desc="encode chunks", unit="chunk", dynamic_ncols=True, disable=not texts) as bar:
        encoded = encode_texts(embedder, texts, settings.index.build_batch, bar)
    return chunks, dict(zip(texts, encoded))


def _catch_up(store: DocumentStore, index: FaissIndex, embedder: Embedder, settings: Settings,
              vectors: dict[str, np.ndarray]) -> None:
    """Make `index` hold exactly the store's chunks: remove the gone ones, add the new ones from `vectors`.

    A chunk whose text is not in `vectors` (written by another store user meanwhile) is encoded here.
    """
    missing, stale = _diff(np.asarray(store.chunk_ids(), dtype=np.int64), index.ids())
    index.remove(stale)
    if not len(missing):
        return
    texts = store.chunk_texts([int(i) for i in missing])
    inputs = [embed_text(*texts[int(i)], settings) for i in missing]
    out = np.zeros((len(missing), index.dim), dtype=np.float32)
    todo = [j for j, text in enumerate(inputs) if text not in vectors]
    for j, text in enumerate(inputs):
        if text in vectors:
            out[j] = vectors[text]
    if todo:
        out[todo] = encode_texts(embedder, [inputs[j] for j in todo], settings.index.build_batch)
    index.add(out, missing)
