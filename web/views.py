"""The search page and the document page: request args -> Query -> SearchClient -> templates.

The URL is the whole page state: every link (facet value, chip, page) is the current query
string with one change, so any page can be bookmarked or shared and works without scripts.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterable

from flask import Blueprint, current_app, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from indexer.errors import DocumentNotFound, QueryError
from searchd.query import MAX_FILTER_VALUES, MAX_VALUE_CHARS
from searchd.results import DocumentView, EntityBadge, Hit, SearchResult
from web.client import SearchClient, SearchUnavailable
from web.highlight import label_slot, paragraphs, segments

bp = Blueprint("web", __name__)

MODES = (("hybrid", "Hybrid"), ("dense", "Semantic"), ("keyword", "Keyword"))
FILTER_PARAMS = ("disease", "drug", "collection", "source", "doc_type", "court", "year_from", "year_to")
PAGE_WINDOW = 2  # page links shown either side of the current page
EXAMPLES = ("service connection for PTSD, stressor not verified", "physician disciplined for overprescribing opioids",
            "warfarin bleeding malpractice")  # landing-page suggestions (queries only, never results)


def client() -> SearchClient:
    return current_app.extensions["medlex.search"]


def settings():
    return current_app.extensions["medlex.settings"]


def entity_param(label: str | None) -> str | None:
    """The filter parameter of an entity label, when searchd has a facet for it."""
    if label and label in settings().search.facet_labels:
        return label.lower()
    return None


def search_url(args: MultiDict, add: Iterable[tuple[str, str]] = (), remove: Iterable[tuple[str, str | None]] = (),
               offset: int | None = None) -> str:
    """The search URL for the current args with pairs added and removed (value None removes all)."""
    out = MultiDict(args)
    for name, value in remove:
        kept = [v for v in out.getlist(name) if value is not None and v != value]
        out.setlist(name, kept)
    for name, value in add:
        if value not in out.getlist(name):
            out.add(name, value)
    out.pop("offset", None)
    if offset:
        out["offset"] = str(offset)
    return url_for("web.search", **{k: out.getlist(k) for k in out.keys() if out.getlist(k)})


def facet_link(args: MultiDict, name: str, value: str) -> tuple[str, bool]:
    """(URL toggling this facet value, whether it is active now)."""
    if name == "year":
        active = args.get("year_from") == value and args.get("year_to") == value
        if active:
            return search_url(args, remove=[("year_from", None), ("year_to", None)]), True
        return search_url(args, add=[("year_from", value), ("year_to", value)],
                          remove=[("year_from", None), ("year_to", None)]), False
    if value in args.getlist(name):
        return search_url(args, remove=[(name, value)]), True
    return search_url(args, add=[(name, value)]), False


def pagination(result: SearchResult, args: MultiDict) -> dict[str, Any] | None:
    """Previous/next and a window of numbered pages, never past search.max_offset."""
    k = max(1, result.k)
    last_offset = min(max(0, result.total - 1), settings().search.max_offset)
    pages = last_offset // k + 1
    if pages <= 1:
        return None
    current = result.offset // k + 1
    window = range(max(1, current - PAGE_WINDOW), min(pages, current + PAGE_WINDOW) + 1)
    link = lambda page: search_url(args, offset=(page - 1) * k)  # noqa: E731
    return {"current": current, "pages": pages,
            "prev": link(current - 1) if current > 1 else None,
            "next": link(current + 1) if current < pages else None,
            "numbers": [(p, link(p)) for p in window],
            "first": link(1) if window.start > 1 else None,
            "last": (pages, link(pages)) if window.stop <= pages else None}


def badge_view(badge: EntityBadge, args: MultiDict | None = None) -> dict[str, Any]:
    """A badge with its colour slot and the search it links to (by its name when there is no query)."""
    param = entity_param(badge.label)
    href = None
    if param:
        href = search_url(args, add=[(param, badge.norm_id)]) if args is not None else \
            url_for("web.search", q=badge.name, **{param: badge.norm_id})
    return {"badge": badge, "slot": label_slot(badge.label), "href": href}


def hit_view(hit: Hit, args: MultiDict) -> dict[str, Any]:
    """Everything the result template shows for one hit."""
    snippet = hit.snippet
    doc_args = MultiDict(args)
    doc_args.pop("offset", None)
    return {"hit": hit, "segments": segments(snippet.text, snippet.highlights),
            "lead": snippet.start > 0, "trail": not snippet.text.rstrip().endswith((".", "?", "!", '"')),
            "href": url_for("web.document", doc_id=hit.doc_id, **{k: doc_args.getlist(k) for k in doc_args}),
            "badges": [badge_view(b, args) for b in hit.entities],
            "meta": meta_line(hit.meta, hit.collection)}


def meta_line(meta: dict[str, Any], collection: str) -> list[str]:
    """Collection, document type, court and date, the ones present."""
    parts = [collection, meta.get("doc_type"), meta.get("court"), meta.get("date") or meta.get("year")]
    return [str(p) for p in parts if p not in (None, "")]


def collections_of(stats: dict[str, Any], result: SearchResult | None = None) -> list[str]:
    """Collection names for the selector: from the stats when given, plus the collection facet's values."""
    names = {n for n in stats.get("collection_names") or [] if isinstance(n, str)}
    for facet in result.facets if result else ():
        if facet.name == "collection":
            names.update(v.id for v in facet.values)
    return sorted(names)


def index_counts(stats: dict[str, Any]) -> list[tuple[str, int]]:
    """(what, how many) of documents, passages and collections for the landing page."""
    counts = stats.get("store") if isinstance(stats.get("store"), dict) else stats
    shown = (("documents", "documents"), ("chunks", "passages"), ("collections", "collections"))
    return [(label, counts[key]) for key, label in shown if isinstance(counts.get(key), int)]


def page_context(args: MultiDict, **extra: Any) -> dict[str, Any]:
    """Template variables every search page needs: the form state, each value cut to what a search accepts."""
    limit = settings().search.max_query_chars  # a 200 KB query is refused, not echoed back in full
    hidden = [(k, v[:MAX_VALUE_CHARS]) for k in FILTER_PARAMS if k != "collection" for v in args.getlist(k)]
    return {"args": args, "q": args.get("q", "")[:limit], "mode": args.get("mode") or settings().search.default_mode,
            "modes": MODES, "collection": args.get("collection", "")[:MAX_VALUE_CHARS],
            "negated": args.get("negated") == "1", "hidden": hidden[:MAX_FILTER_VALUES],
            "max_query_chars": limit, **extra}


@bp.get("/")
def search():
    """The search page: a landing page without a query, results with one."""
    args = request.args
    stats = client().stats()
    if not args.get("q", "").strip() and not any(args.getlist(n) for n in FILTER_PARAMS):
        return render_template("search.html", **page_context(args, collections=collections_of(stats),
                                                             counts=index_counts(stats), examples=EXAMPLES))
    params = MultiDict(args)
    if "k" not in params:
        params["k"] = str(settings().web.page_size)
    result = client().search(params)
    ctx = page_context(args, collections=collections_of(stats, result))
    chips = [{"filter": f, "href": search_url(args, remove=[(f.name, f.value)])} for f in result.filters]
    facets = [{"facet": f, "entries": [(v, *facet_link(args, f.name, v.id)) for v in f.values]}
              for f in result.facets]
    clear = search_url(MultiDict([(k, v) for k, v in args.items(multi=True) if k in ("q", "mode")]))
    return render_template("search.html", result=result, hits=[hit_view(h, args) for h in result.hits],
                           chips=chips, facets=facets, clear_url=clear, pages=pagination(result, args),
                           took=result.timings.get("total"), **ctx)


@bp.get("/documents/<int:doc_id>")
def document(doc_id: int):
    """A document with every mention highlighted, its entities by type and similar documents."""
    doc: DocumentView = client().document(doc_id)
    similar = [h for h in client().similar(doc_id, settings().web.similar_k) if h.doc_id != doc_id]
    by_label: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
    for badge in sorted(doc.entities, key=lambda b: (b.label, -b.count, b.name)):
        by_label.setdefault(badge.label, []).append(badge_view(badge))
    mentions = {label: sum(1 for h in doc.highlights if h.kind == "entity" and h.label == label) for label in by_label}
    back = url_for("web.search", **{k: request.args.getlist(k) for k in request.args}) if request.args else None
    return render_template("document.html", doc=doc, paragraphs=paragraphs(doc.text, doc.highlights),
                           entities=by_label, mentions=mentions, slots={l: label_slot(l) for l in by_label},
                           similar=[{"hit": h, "href": url_for("web.document", doc_id=h.doc_id),
                                     "meta": meta_line(h.meta, h.collection)} for h in similar],
                           meta=meta_line(doc.meta, doc.collection), back=back)


@bp.app_errorhandler(QueryError)
def bad_query(exc: QueryError):
    """A request the user can fix: keep the form, say what was wrong."""
    return render_template("search.html", error=str(exc), **page_context(request.args, collections=[])), 400


@bp.app_errorhandler(SearchUnavailable)
def unavailable(exc: SearchUnavailable):
    return render_template("error.html", status=503, title="Search is not available",
                           message=str(exc), no_index="no index" in str(exc),
                           **page_context(request.args, collections=[])), 503


@bp.app_errorhandler(DocumentNotFound)
def missing_document(exc: DocumentNotFound):
    return render_template("error.html", status=404, title="Document not found", message=str(exc),
                           **page_context(MultiDict(), collections=[])), 404
