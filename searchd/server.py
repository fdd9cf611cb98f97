"""The JSON API around SearchService (Flask app, served by waitress with threads).

Errors are JSON `{"error": {"code", "message"}}`: 400 for a bad request, 404 for an unknown
document, 503 while no index is loaded (or loading failed), 504 past the per-query time limit.
"""
from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from indexer.errors import DocumentNotFound, MedlexError, QueryError
from indexer.settings import Settings
from searchd.live import LiveService, Loader
from searchd.service import SearchService, SearchTimeout


log = logging.getLogger("searchd")
MAX_JSON_DEPTH = 8  # a search body is an object of filters holding lists: 3 levels; more is an attack


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ServiceHolder:
    """The loaded SearchService, or why there is none yet; it closes the service it loaded itself.

    A holder that loaded the index itself keeps it live (searchd/live.py): each request takes the
    current service and gives it back at teardown, and a changed manifest.json swaps in a new one.
    """

    def __init__(self, service: SearchService | None = None):
        self.service = service
        self.error: str | None = None
        self.loading = False
        self.live: LiveService | None = None
        self._owned: SearchService | None = None  # a service given by the caller is the caller's to close
        self._closed = False
        self._lock = threading.Lock()

    def load_in_background(self, settings: Settings, loader: Loader | None = None) -> threading.Thread:
        """Load the index in a thread; requests get 503 until it is ready, and see later rebuilds."""
        self.loading = True
        live = LiveService(settings, loader) if loader is not None else LiveService(settings)

        def work() -> None:
            try:
                live.load()
                self._keep_live(live)
            except MedlexError as exc:
                self.error = str(exc)
            finally:
                self.loading = False

        thread = threading.Thread(target=work, name="searchd-load", daemon=True)
        thread.start()
        return thread

    def _keep_live(self, live: LiveService) -> None:
        with self._lock:
            if not self._closed:
                self.live, self.service = live, live.acquire()
                live.release(self.service)
                return
        live.close()  # the server shut down while the index was loading

    def _keep(self, service: SearchService) -> None:
        with self._lock:
            if not self._closed:
                self.service = self._owned = service
                return
        service.close()  # the server shut down while the index was loading

    def close(self) -> None:
        """Close the service this holder loaded (at shutdown); later requests get 503."""
        with self._lock:
            self._closed = True
            owned, self._owned, live, self.live = self._owned, None, self.live, None
        if owned is not None or live is not None:
            self.service, self.error = None, "searchd is shutting down"
        if owned is not None:
            owned.close()
        if live is not None:
            live.close()

    def get(self) -> SearchService:
        """The service for this request; a live one is held until the request's teardown (see release_all)."""
        live = self.live
        if live is not None:
            service = live.acquire()
            if service is not None:
                self.service = service
                g.setdefault("searchd_leases", []).append((live, service))
                return service
        if self.service is None:
            why = "the index is still loading" if self.loading else f"no index is loaded: {self.error or 'not started'}"
            raise ApiError(503, "index_not_loaded", why)
        return self.service

    @staticmethod
    def release_all(_exc: BaseException | None = None) -> None:
        """Give back the services this request took (Flask teardown), so a replaced one can close."""
        for live, service in g.pop("searchd_leases", []):
            live.release(service)


def _body(max_bytes: int) -> dict[str, Any]:
    """The JSON object of a POST body, within the size limit."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(400, "body_too_large", f"the request body has {request.content_length} bytes; "
                                              f"the limit is {max_bytes}")
    raw = request.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(400, "body_too_large", f"the request body is over the limit of {max_bytes} bytes")
    too_deep = False
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # nested past Python's recursion limit: reported like any deep body
        data, too_deep = None, True
    if too_deep or _depth(data) > MAX_JSON_DEPTH:
        raise ApiError(400, "malformed_json", f"the request body nests arrays or objects more than "
                                              f"{MAX_JSON_DEPTH} deep; a search needs at most 3")
    if not isinstance(data, dict):
        raise ApiError(400, "malformed_json", f"the request body must be a JSON object, got {type(data).__name__}")
    filters = data.pop("filters", None) or {}
    if not isinstance(filters, dict):
        raise ApiError(400, "malformed_json", "`filters` must be an object of name -> value or list of values")
    clash = sorted(set(filters) & set(data))
    if clash:
        raise ApiError(400, "invalid_parameter", f"{clash[0]!r} is given both at the top level and in `filters`")
    return {**data, **filters}


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                break
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _params(max_bytes: int) -> Any:
    return request.args if request.method == "GET" else _body(max_bytes)


def _doc_id(raw: str) -> int:
    # str.isdigit() also accepts '²' and '①', which int() refuses: only ASCII digits are ids
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ApiError(400, "invalid_parameter", f"document id {raw[:40]!r} is not a whole number")
    return int(raw)


def create_app(settings: Settings, service: SearchService | None = None, load: bool = False,
               loader: Loader | None = None) -> Flask:
    """The searchd Flask app; with load=True the index loads in the background (503 until ready) and is
    reloaded when its manifest changes (`loader`: how to load it, default SearchService.load)."""
    app = Flask("searchd")
    no_redirects(app)
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.json.sort_keys = False
    holder = ServiceHolder(service)
    app.extensions["searchd"] = holder
    app.teardown_request(holder.release_all)
    if load and service is None:
        holder.load_in_background(settings, loader)

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[Response, int]:
        return jsonify({"error": {"code": exc.code, "message": exc.message}}), exc.status

    @app.errorhandler(QueryError)
    def query_error(exc: QueryError) -> tuple[Response, int]:
        return api_error(ApiError(400, "invalid_parameter", str(exc)))

    @app.errorhandler(DocumentNotFound)
    def not_found(exc: DocumentNotFound) -> tuple[Response, int]:
        return api_error(ApiError(404, "not_found", str(exc)))

    @app.errorhandler(SearchTimeout)
    def timeout(exc: SearchTimeout) -> tuple[Response, int]:
        return api_error(ApiError(504, "timeout", str(exc)))

    @app.errorhandler(404)
    def no_route(_exc) -> tuple[Response, int]:
        return api_error(ApiError(404, "not_found", f"no endpoint {request.path}; see /health, /search, "
                                                    f"/documents/<id>, /documents/<id>/similar, /facets, /stats"))

    @app.errorhandler(405)
    def bad_method(_exc) -> tuple[Response, int]:
        return api_error(ApiError(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}"))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        if isinstance(exc, HTTPException):  # any other HTTP error Flask raises, as JSON too
            return api_error(ApiError(exc.code or 500, "http_error", exc.description or exc.name))
        log.exception("unexpected error on %s %s", request.method, request.path[:200])
        return api_error(ApiError(500, "internal_error", f"searchd hit an unexpected error "
                                                         f"({type(exc).__name__}); it has been logged"))

    @app.errorhandler(413)
    def too_large(_exc) -> tuple[Response, int]:
        return api_error(ApiError(400, "body_too_large", f"the request body is over the limit of "
                                                         f"{settings.server.max_body_bytes} bytes"))

    @app.route("/search", methods=["GET", "POST"])
    def search() -> Response:
        svc = holder.get()
        return jsonify(svc.search(svc.parse(_params(settings.server.max_body_bytes))).to_dict())

    @app.get("/documents/<raw_id>")
    def document(raw_id: str) -> Response:
        return jsonify(holder.get().document(_doc_id(raw_id)).to_dict())

    @app.get("/documents/<raw_id>/similar")
    def similar(raw_id: str) -> Response:
        svc = holder.get()
        k = svc.parse({"q": "similar", "k": request.args.get("k", str(settings.search.default_k))}).k
        hits = svc.similar(_doc_id(raw_id), k)
        return jsonify({"doc_id": _doc_id(raw_id), "hits": [asdict(h) for h in hits]})

    @app.route("/facets", methods=["GET", "POST"])
    def facets() -> Response:
        svc = holder.get()
        params = dict(_flat(_params(settings.server.max_body_bytes)))
        had_query = params.get("q") not in (None, "", [], [""])
        if not had_query:
            params["q"] = "*"  # facets of the filters alone need no query text
        query = svc.parse(params)
        keyword = had_query and query.mode == "keyword"
        return jsonify({"facets": [asdict(f) for f in svc.facets(query, keyword)],
                        "filters": [asdict(f) for f in svc.active_filters(query)]})

    @app.get("/health")
    def health() -> tuple[Response, int]:
        if holder.service is None:
            status = "loading" if holder.loading else "error"
            return jsonify({"status": status, "error": holder.error}), 503
        return jsonify({"status": "ok", "vectors": int(holder.service.index.ntotal)}), 200

    @app.get("/stats")
    def stats() -> Response:
        svc = holder.get()
        live = holder.live
        return jsonify({**svc.stats(), "reload": live.info() if live is not None else None})

    return app


def no_redirects(app: Flask) -> None:
    """Route exactly as written: no slash-merging or trailing-slash redirects, which werkzeug builds
    from the request's Host header (a foreign Host would get a 308 to itself). Call before adding routes."""
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False


def _flat(params: Any) -> dict[str, Any]:
    """Request args (multi-valued) or a JSON dict as a plain dict of lists/values."""
    if hasattr(params, "getlist"):
        return {k: params.getlist(k) for k in params}
    return dict(params)


def make_server(app: Flask, host: str, port: int, threads: int):
    """A waitress server (not yet running); port 0 picks a free port (see .effective_port)."""
    from waitress.server import create_server

    return create_server(app, host=host, port=port, threads=threads, ident="searchd")


def serve(settings: Settings, host: str, port: int) -> None:
    """Serve until interrupted; the index loads in the background so /health answers at once.

    (`searchd serve --workers N` runs searchd/workers.py instead: N processes, each loading first.)"""
    if settings.cluster.serve_shards and settings.index.shards > 1:  # Ray's SIGTERM handler first, so ours replaces it
        from indexer.shard_serve import start_ray

        start_ray(settings)
    app = create_app(settings, load=True)
    server = make_server(app, host, port, settings.server.threads)
    print(f"searchd listening on http://{host}:{server.effective_port} (index {settings.index.dir})", flush=True)
    started = time.monotonic()
    # SIGTERM (a service manager's stop) closes the index as Ctrl-C does: with served shards that also stops the
    # Ray cluster searchd started, whose agents a killed searchd would leave behind
    if threading.current_thread() is threading.main_thread():  # signal handlers belong to the main thread
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    finally:
        app.extensions["searchd"].close()
        print(f"searchd stopped after {time.monotonic() - started:.0f} s", flush=True)
