"""LiveService: the SearchService of an index directory, replaced when the directory changes.

Writers (`indexer build`, `add`, `update`, `delete`) rename vectors.faiss into place first and
manifest.json last, so a new manifest means a complete new index. Each request takes the
current service with `acquire` and gives it back with `release`; a reload loads a fresh
service beside the old one, swaps them under a lock, and closes the old one once the last
request still using it is done, so no query in flight is dropped. A load that fails (a
writer still at work, an index out of step) keeps the old service and is retried later.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from indexer.errors import MedlexError
from indexer.settings import Settings

if TYPE_CHECKING:  # torch and faiss load only once there is an index
    from searchd.service import SearchService

log = logging.getLogger("searchd")
Loader = Callable[[Settings, "SearchService | None"], "SearchService"]


def manifest_stamp(settings: Settings) -> str | None:
    """A checksum of the index directory's manifest.json (None while there is none)."""
    from indexer.pipeline import MANIFEST

    try:
        return hashlib.sha256((settings.index.dir / MANIFEST).read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return None


def _load(settings: Settings, previous: SearchService | None) -> SearchService:
    from searchd.service import SearchService

    return SearchService.load(settings, embedder=previous.embedder if previous is not None else None)


class LiveService:
    """The current SearchService of settings.index.dir, reloaded when its manifest changes."""

    def __init__(self, settings: Settings, loader: Loader = _load):
        self.settings, self._loader = settings, loader
        self.generation = 0  # services loaded so far
        self.stamp: str | None = None  # manifest checksum of the current service
        self._current: SearchService | None = None
        self._users: dict[int, int] = {}  # id(service) -> requests using it
        self._retired: dict[int, SearchService] = {}  # replaced, closed when their last request ends
        self._lock, self._reloading = threading.Lock(), threading.Lock()
        self._checked = 0.0
        self._closed = False

    def load(self) -> SearchService:
        """Load the index now (the first time, or to replace the current one); raises what loading raises."""
        stamp = manifest_stamp(self.settings)  # read first: a write during the load only causes one more reload
        service = self._loader(self.settings, self._current)
        self._swap(service, stamp)
        return service

    def acquire(self) -> SearchService | None:
        """The current service, counted as in use until `release`; reloads first when the manifest changed."""
        self.maybe_reload()
        with self._lock:
            service = self._current
            if service is not None:
                self._users[id(service)] = self._users.get(id(service), 0) + 1
            return service

    def release(self, service: SearchService) -> None:
        """A request is done with `service`; a replaced service closes with its last request."""
        with self._lock:
            left = self._users[id(service)] = self._users.get(id(service), 1) - 1
            done = self._retired.pop(id(service), None) if left <= 0 else None
            if left <= 0:
                self._users.pop(id(service), None)
        if done is not None:
            done.close()

    def maybe_reload(self) -> bool:
        """Reload when the manifest changed since the last check (at most every server.reload_check_seconds)."""
        now = time.monotonic()
        if self._current is None or now - self._checked < self.settings.server.reload_check_seconds:
            return False
        self._checked = now
        if manifest_stamp(self.settings) in (self.stamp, None):
            return False
        if not self._reloading.acquire(blocking=False):
            return False  # another request is loading it; this one is served by the current service
        try:
            self.load()
            log.info("reloaded the index at %s (generation %d)", self.settings.index.dir, self.generation)
            return True
        except MedlexError as exc:
            log.warning("kept the loaded index; the changed one at %s did not load: %s", self.settings.index.dir, exc)
            return False
        except Exception:  # noqa: BLE001 - a running service must keep answering; the next check retries
            log.exception("kept the loaded index; loading the changed one at %s failed", self.settings.index.dir)
            return False
        finally:
            self._reloading.release()

    def info(self) -> dict[str, Any]:
        """Which load is serving: generation, manifest checksum and when it loaded."""
        with self._lock:
            return {"generation": self.generation, "manifest_checksum": self.stamp,
                    "loaded_at": self._current.loaded_at if self._current is not None else None}

    def _swap(self, service: SearchService, stamp: str | None) -> None:
        with self._lock:
            if self._closed:
                old = service  # shut down while loading: the new one is not needed
            else:
                old, self._current, self.stamp = self._current, service, stamp
                self.generation += 1
                if old is not None and self._users.get(id(old)):
                    self._retired[id(old)], old = old, None  # closed by its last release
        if old is not None:
            old.close()

    def close(self) -> None:
        """Close the current service and any replaced one still waiting (at shutdown)."""
        with self._lock:
            self._closed = True
            services = [s for s in (self._current, *self._retired.values()) if s is not None]
            self._current, self._retired = None, {}
        for service in services:
            service.close()
