"""Shards on Ray Serve replicas (cluster.serve_shards; the optional [cluster] extra, ray[serve]).

With cluster.serve_shards = true, searchd deploys one Ray Serve application per shard file: a
deployment of cluster.replicas_per_shard replicas, each of which loads its shard's FAISS file once
(`ShardReplica`). Each shard is then a `ServedShard`: the read calls `ShardedIndex` makes
(search_rows, vectors, row_ids) answered through the deployment's handle. So the merge, the
per-shard slicing of the allowed-row mask that the search service resolved once in the store, and
the thread per shard that waits for its answer are the code of the threaded path; only where a
shard's scan runs differs. Row masks travel bit-packed (one bit per row of the shard).

Lifetime: the first deployment in a process (or `start_ray`, which searchd serve calls in its main
thread) joins cluster.address or starts a local cluster (indexer.cluster.start), and Serve starts
without an HTTP proxy (calls come by handle only). The shards of one deployment are given back
together when the last of them is closed: their applications are deleted, or, when they were the
last in this process, a local cluster this process started is shut down whole, Serve with it;
from a joined cluster it only disconnects (its Serve keeps running).
Application names carry a random token, so a reload (old and new service side by side) or a
second searchd never share replicas. Replicas open the shard files by path: on several machines
the index directory must be on a shared filesystem. Ray is imported only here, when asked for.
"""
from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from indexer.errors import ConfigError
from indexer.settings import IndexSettings, Settings

QUIET = {"log_level": "WARNING", "enable_access_log": False}  # no log line per shard call
_lock = threading.Lock()
# Ray is per process: the applications this process runs, whether it called ray.init, and whether that started
# a local cluster (shut down whole after the last application) rather than joining one
_live = {"apps": 0, "inited": False, "local": False}


class ShardReplica:
    """A Ray Serve replica: one shard's FAISS file, loaded once; answers the shard's read calls."""

    def __init__(self, path: str, settings: IndexSettings, description: str, mmap: bool, gpu: bool):
        from indexer.vector_index import FaissIndex

        self.index = FaissIndex.load(Path(path), settings, description, mmap=mmap)
        self.gpu = None
        if gpu:  # given a GPU (gpus_per_replica > 0), a replica makes its own GPU copy as searchd would
            from indexer.models import resolve_device  # imports torch: only here, not in CPU replicas

            self.gpu = self.index.to_gpu() if resolve_device(settings.device) == "cuda" else None

    def info(self) -> dict[str, Any]:
        """What the driver keeps about the shard: its row order, ids and kind."""
        i = self.index
        return {"row_ids": i.row_ids(), "ids": i.ids(), "dim": i.dim, "description": i.description,
                "exact": i.exact, "ntotal": i.ntotal, "gpu": self.gpu}

    def search_rows(self, q: np.ndarray, k: int, packed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) of the shard within a bit-packed row mask (None: every row)."""
        rows = None if packed is None else np.unpackbits(packed, count=len(self.index.row_ids())).astype(bool)
        return self.index.search_rows(q, k, rows)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self.index.vectors(ids)


class ServedShard:
    """One shard's replica group behind a DeploymentHandle, read like a `FaissIndex` by `ShardedIndex`."""

    version = 0  # a served shard never changes: a changed index is a new service with new deployments

    def __init__(self, app: str, handle: Any, info: dict[str, Any], replicas: int, timeout_s: float,
                 group: "_Group"):
        self.app, self.handle, self.timeout_s, self._group = app, handle, timeout_s, group
        self._row_ids, self._ids = info["row_ids"], info["ids"]
        self.dim, self.exact, self.ntotal, self._gpu = info["dim"], info["exact"], info["ntotal"], info["gpu"]
        self.description = f"{info['description']} on Ray Serve ({replicas} replica{'s' * (replicas != 1)})"
        self._closed = False

    def ids(self) -> np.ndarray:
        return self._ids

    def row_ids(self) -> np.ndarray:
        return self._row_ids

    def search_rows(self, q: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The shard's top k within `rows` (a boolean mask over `row_ids()`), from one of its replicas."""
        packed = None if rows is None else np.packbits(rows)
        return self._result(self.handle.search_rows.remote(np.asarray(q, np.float32), int(k), packed))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        return self._result(self.handle.vectors.remote(np.asarray(ids, np.int64)))

    def to_gpu(self) -> str | None:
        """The replicas made their GPU copies when they loaded (on nodes with a GPU); what they reported."""
        return self._gpu

    def _result(self, response: Any) -> Any:
        from indexer.store import StoreTimeout

        try:
            return response.result(timeout_s=self.timeout_s)
        except TimeoutError:
            raise StoreTimeout(f"the replicas of {self.app} did not answer within {self.timeout_s:g} s") from None

    def close(self) -> None:
        """Give back this shard: once every shard of its deployment is closed, their applications go together."""
        if not self._closed:
            self._closed = True
            self._group.close_one()


class _Group:
    """The applications one `serve_shards` call deployed, released together when the last of its shards closes."""

    def __init__(self, names: list[str]):
        self.names, self.open = names, len(names)

    def close_one(self) -> None:
        with _lock:
            self.open -= 1
            done = self.open == 0
        if done:
            _release(self.names)


def check_serve(settings: Settings) -> None:
    c = settings.cluster
    if c.replicas_per_shard < 1 or c.cpus_per_replica <= 0 or c.gpus_per_replica < 0:
        raise ConfigError(f"cluster.replicas_per_shard must be at least 1, cpus_per_replica above 0 and "
                          f"gpus_per_replica 0 or more; got replicas_per_shard={c.replicas_per_shard}, "
                          f"cpus_per_replica={c.cpus_per_replica}, gpus_per_replica={c.gpus_per_replica}")


def start_ray(settings: Settings) -> None:
    """Start or join Ray now, in the calling thread (searchd serve's main thread, before it installs its SIGTERM
    handler: ray.init replaces the process's SIGTERM handler with one that aborts); the first deployment then finds
    it running, and the last application closed shuts it down as if that deployment had started it."""
    from indexer.cluster import start

    check_serve(settings)
    with _lock:
        _, started = start(settings, 0, 0, "cluster.serve_shards", library="serve")
        if started:
            _live["inited"], _live["local"] = True, not settings.cluster.address


def serve_shards(settings: Settings, files: list[tuple[Path, str]], mmap: bool = False) -> list[ServedShard]:
    """Deploy one application per (shard file, index type) and wait until every replica has loaded its file."""
    from indexer.cluster import import_ray, start

    check_serve(settings)
    import_ray("serve")
    from ray import serve
    from ray.serve.config import ProxyLocation

    c = settings.cluster
    need = len(files) * c.replicas_per_shard
    names = [f"medlex-{uuid.uuid4().hex[:8]}-shard-{i:03d}" for i in range(len(files))]
    with _lock:
        _, started = start(settings, need_cpu=need * c.cpus_per_replica, need_gpu=need * c.gpus_per_replica,
                           what=f"{len(files)} shards x {c.replicas_per_shard} replicas (cluster.serve_shards)",
                           knobs="cluster.replicas_per_shard or cpus_per_replica/gpus_per_replica", library="serve")
        if started:
            _live["inited"], _live["local"] = True, not c.address
        _live["apps"] += len(files)  # (start_ray may have started Ray earlier: it is then already marked ours)
    try:
        _wait_for_room(need * c.cpus_per_replica, need * c.gpus_per_replica)
        serve.start(proxy_location=ProxyLocation.Disabled, logging_config=QUIET)
        targets = [serve.RunTarget(
            serve.deployment(ShardReplica).options(
                name="shard", num_replicas=c.replicas_per_shard,
                ray_actor_options={"num_cpus": c.cpus_per_replica, "num_gpus": c.gpus_per_replica}
            ).bind(str(Path(path).resolve()), settings.index, kind, mmap, c.gpus_per_replica > 0),
            name=name, route_prefix=None, logging_config=QUIET) for name, (path, kind) in zip(names, files)]
        handles = serve.run_many(targets)  # returns once every application is running: each file loaded
        infos = [h.info.remote().result() for h in handles]
    except BaseException:
        _release(names)  # a failed deployment: remove what was made
        raise
    timeout_s = max(settings.search.time_limit_ms / 1000, 1.0)
    group = _Group(names)
    return [ServedShard(name, handle, info, c.replicas_per_shard, timeout_s, group)
            for name, handle, info in zip(names, handles, infos)]


def _wait_for_room(cpus: float, gpus: float, wait_s: float = 30.0) -> None:
    """Refuse to deploy replicas the cluster has no room for (Serve would wait for them forever), after giving a
    closing service's replicas `wait_s` to hand their CPUs back: a reload deploys beside the running shards."""
    import ray

    give_up = time.monotonic() + wait_s
    while True:
        free = ray.available_resources()
        if free.get("CPU", 0) >= cpus - 1e-9 and free.get("GPU", 0) >= gpus - 1e-9:
            return
        if time.monotonic() > give_up:
            raise ConfigError(f"the shard replicas need {cpus:g} CPUs and {gpus:g} GPUs, but the Ray cluster has "
                              f"{free.get('CPU', 0):g} CPUs and {free.get('GPU', 0):g} GPUs free (a reload deploys "
                              f"the new shards beside the running ones); lower cluster.replicas_per_shard or "
                              f"cpus_per_replica/gpus_per_replica, or add nodes")
        time.sleep(0.5)


def _release(names: list[str]) -> None:
    """Give back applications: delete them, and after the last one of this process shut down what it started.

    A local cluster this process started goes down whole, Serve's controller and the replicas with it, without
    deleting first: at Ctrl-C the cluster's processes may already be gone, and a delete would wait a minute for
    them (serve.shutdown would also kill the controller's pending calls, which Ray reports on stdout). A joined
    cluster's applications are deleted (in the background) and its Serve is left running."""
    import ray

    with _lock:
        _live["apps"] -= len(names)
        last = _live["apps"] <= 0
        inited, local = (_live["inited"], _live["local"]) if last else (False, False)
        if last:
            _live["inited"] = _live["local"] = False
        if not (inited and local) and ray.is_initialized():
            try:
                from ray import serve

                for name in names:
                    serve.delete(name, _blocking=False)
            except Exception:  # Serve never started (a failed deployment): nothing to delete
                pass
        if inited and ray.is_initialized():
            ray.shutdown()
