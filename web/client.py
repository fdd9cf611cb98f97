"""SearchClient: how the front end reaches searchd, in-process or over its JSON API.

Both clients speak in the dataclasses of searchd.results, so the views never know which one
they hold. Failures arrive as three domain errors the views map to pages: QueryError (400,
the user can fix the request), DocumentNotFound (404) and SearchUnavailable (503: no index
loaded, or searchd unreachable).
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import fields
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from werkzeug.datastructures import MultiDict

from indexer.errors import ConfigError, DocumentNotFound, MedlexError, QueryError
from indexer.settings import Settings
from searchd.live import LiveService, Loader
from searchd.results import (ActiveFilter, DocumentView, EntityBadge, Facet, FacetValue, Highlight, Hit,
                             SearchResult, Snippet)

if TYPE_CHECKING:  # torch and faiss load only once there is an index
    from searchd.service import SearchService


class SearchUnavailable(MedlexError):
    """No index is loaded, or the search daemon cannot be reached."""


class SearchClient(Protocol):
    """What the web front end needs from searchd; searchd parses the request parameters (one parser)."""

    def search(self, params: MultiDict) -> SearchResult: ...
    def document(self, doc_id: int) -> DocumentView: ...
    def similar(self, doc_id: int, k: int) -> list[Hit]: ...
    def stats(self) -> dict[str, Any]: ...
    def close(self) -> None: ...  # at shutdown: frees what the client opened itself


class InProcessClient:
    """Runs SearchService in this process; loads the index on first use and retries until one exists.

    A client that loads the index itself keeps it live (searchd/live.py), as `searchd serve`
    does: each call holds the current service until it returns, and a changed manifest.json
    swaps in the new index without dropping calls in flight.
    """

    def __init__(self, settings: Settings, service: SearchService | None = None, loader: Loader | None = None):
        """`service`: an already loaded SearchService to use as it is (the caller closes it) instead of loading one.

        `loader(settings, previous)`: how to load the index (default SearchService.load, reusing the embedder).
        """
        self.settings = settings
        self._given = service
        self._loader = loader
        self._live: LiveService | None = None
        self._lock = threading.Lock()

    def service(self) -> SearchService:
        """The current SearchService, loading the index now if needed (and reloading it if it changed)."""
        with self._lease() as service:
            return service

    @contextmanager
    def _lease(self) -> Iterator[SearchService]:
        if self._given is not None:
            yield self._given
            return
        live = self._live_service()
        service = live.acquire()
        if service is None:
            raise SearchUnavailable("the search service is shutting down")
        try:
            yield service
        finally:
            live.release(service)

    def _live_service(self) -> LiveService:
        with self._lock:
            if self._live is None:
                index_dir = self.settings.index.dir
                if not (index_dir / "manifest.json").is_file():
                    raise SearchUnavailable(f"no index at {str(index_dir)!r}; build one with `indexer build`")
                live = LiveService(self.settings, self._loader) if self._loader is not None else LiveService(self.settings)
                try:
                    live.load()
                except MedlexError as exc:
                    raise SearchUnavailable(f"the index at {str(index_dir)!r} could not be loaded: {exc}") from exc
                self._live = live
            return self._live

    def close(self) -> None:
        """Close the index this client loaded; a service given to it is left to its owner."""
        with self._lock:
            live, self._live = self._live, None
        if live is not None:
            live.close()

    def search(self, params: MultiDict) -> SearchResult:
        """Parse the request parameters as searchd does and run the query."""
        with self._lease() as service:
            return _translated(lambda: service.search(service.parse(params)))

    def document(self, doc_id: int) -> DocumentView:
        """One document with its entity highlights."""
        with self._lease() as service:
            return _translated(lambda: service.document(doc_id))

    def similar(self, doc_id: int, k: int) -> list[Hit]:
        """Documents nearest to this one."""
        with self._lease() as service:
            return _translated(lambda: service.similar(doc_id, k))

    def stats(self) -> dict[str, Any]:
        """Index statistics, with the collection names for the collection selector."""
        with self._lease() as service:
            return {**service.stats(), "collection_names": service.store.collections()}


def _translated(call):
    """searchd's time-limit error as SearchUnavailable, the page the front end shows for it."""
    from searchd.service import SearchTimeout

    try:
        return call()
    except SearchTimeout as exc:
        raise SearchUnavailable(str(exc)) from None


class HttpClient:
    """Talks to `searchd serve` over its JSON API."""

    def __init__(self, base_url: str, timeout_s: float = 10.0):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"web.searchd_url {base_url!r} is not an http(s) URL such as http://127.0.0.1:8600")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def close(self) -> None:
        """Nothing to free: every request opens and closes its own connection."""

    def _get(self, path: str, params: list[tuple[str, str]] | None = None) -> Any:
        """GET a JSON answer; searchd's error answers become domain errors."""
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise _http_error(exc, path) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SearchUnavailable(f"searchd at {self.base_url} is unreachable: {reason}") from None

    def search(self, params: MultiDict) -> SearchResult:
        """Forward the request parameters to searchd's /search."""
        return result_from_json(self._get("/search", list(params.items(multi=True))))

    def document(self, doc_id: int) -> DocumentView:
        """One document from searchd."""
        return document_from_json(self._get(f"/documents/{int(doc_id)}"))

    def similar(self, doc_id: int, k: int) -> list[Hit]:
        """Documents nearest to this one, from searchd."""
        data = self._get(f"/documents/{int(doc_id)}/similar", [("k", str(k))])
        hits = data["hits"] if isinstance(data, dict) else data
        return [hit_from_json(h) for h in hits]

    def stats(self) -> dict[str, Any]:
        """searchd's index statistics, with the collection names its /facets lists."""
        stats = self._get("/stats")
        facets = self._get("/facets").get("facets", [])
        names = [v["id"] for f in facets if f.get("name") == "collection" for v in f.get("values", [])]
        return {**stats, "collection_names": names}


def _http_error(exc: urllib.error.HTTPError, path: str) -> MedlexError:
    """Map searchd's {"error": {"code", "message"}} answers to domain errors."""
    try:
        message = json.load(exc)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = f"searchd answered {exc.code} for {path}"
    if exc.code == 400:
        return QueryError(message)
    if exc.code == 404:
        return DocumentNotFound(message)
    return SearchUnavailable(message)


def _build(cls, data: dict[str, Any], **nested: Any):
    """A results dataclass from its JSON dict, ignoring keys a newer searchd may add."""
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    values.update(nested)
    return cls(**values)


def snippet_from_json(d: dict[str, Any]) -> Snippet:
    return _build(Snippet, d, highlights=[_build(Highlight, h) for h in d.get("highlights", [])])


def hit_from_json(d: dict[str, Any]) -> Hit:
    """A Hit from searchd's JSON."""
    return _build(Hit, d, snippet=snippet_from_json(d["snippet"]),
                  entities=[_build(EntityBadge, e) for e in d.get("entities", [])])


def result_from_json(d: dict[str, Any]) -> SearchResult:
    """A SearchResult from searchd's JSON (asdict of the dataclass)."""
    facets = [_build(Facet, f, values=[_build(FacetValue, v) for v in f["values"]]) for f in d["facets"]]
    return _build(SearchResult, d, hits=[hit_from_json(h) for h in d["hits"]], facets=facets,
                  filters=[_build(ActiveFilter, a) for a in d["filters"]])


def document_from_json(d: dict[str, Any]) -> DocumentView:
    """A DocumentView from searchd's JSON."""
    return _build(DocumentView, d, highlights=[_build(Highlight, h) for h in d["highlights"]],
                  entities=[_build(EntityBadge, e) for e in d["entities"]])


def make_client(settings: Settings) -> SearchClient:
    """HTTP to searchd when web.searchd_url is set, else in-process."""
    if settings.web.searchd_url:
        return HttpClient(settings.web.searchd_url)
    return InProcessClient(settings)
