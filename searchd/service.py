"""SearchService: Query -> SearchResult over an index directory (store + FAISS + manifest).

The web front end, evaluation and the JSON API all call `search`, so what is measured is
what users get. Filters resolve to allowed chunk ids in SQLite and the vector index scores
exactly that set (see indexer/vector_index.py), so filtered results are the true top k of
the filtered set at any selectivity on the flat index.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from indexer.errors import MedlexError, QueryError, StoreError
from indexer.settings import Settings
from indexer.store import METADATA_FILTERS, DocFilter, FacetStore, StoreTimeout
from searchd import fusion
from searchd.keyword import fts_query
from searchd.query import Query, filter_label
from searchd.results import ActiveFilter, DocumentView, Facet, FacetValue, Hit, SearchResult
from searchd.snippets import badges, document_highlights, make_snippet

META_FACETS = ("collection", "source", "doc_type", "court", "year")
BADGES_PER_HIT = 5


class SearchTimeout(MedlexError):
    """A search ran past search.time_limit_ms."""


class DocumentNotFound(StoreError):
    """No document has the requested id."""


class SearchService:
    """Searches one index directory: dense, keyword and hybrid, with filters, facets and snippets."""

    def __init__(self, store: FacetStore, vector_index: Any, embedder: Any, settings: Settings,
                 manifest: dict | None = None):
        self.store = store
        self.index = vector_index
        self.embedder = embedder
        self.settings = settings
        self.manifest = manifest or {}
        self.loaded_at = time.time()
        self._facet_cache: tuple[tuple, list[Facet]] | None = None
        self._labels_cache: tuple[tuple, dict[str, str]] | None = None

    @classmethod
    def load(cls, settings: Settings) -> "SearchService":
        """Open settings.index.dir, check that manifest, store, FAISS and embedder agree, and load the embedder."""
        from indexer.embedder import load_embedder
        from indexer.pipeline import check_embedder, open_index

        store, index, manifest = open_index(settings)
        check_embedder(settings, manifest)
        return cls(store, index, load_embedder(settings), settings, manifest)

    @classmethod
    def from_parts(cls, store: FacetStore, vector_index: Any, embedder: Any, settings: Settings) -> "SearchService":
        """A service over given parts (tests use a fake embedder)."""
        return cls(store, vector_index, embedder, settings)

    # ---- public API ----------------------------------------------------------------------
    def facet_names(self) -> list[str]:
        """Filter/facet parameter names: one per entity label (lower case), then the metadata ones."""
        return sorted(self._labels()) + list(METADATA_FILTERS)

    def parse(self, params: Any) -> Query:
        """Query.from_params with the entity labels of this index."""
        return Query.from_params(params, self.settings.search, labels=self._labels().values())

    def search(self, query: Query) -> SearchResult:
        """Run a query: retrieve, fuse, collapse to documents, page, snippet and count facets."""
        s = self.settings.search
        t0 = time.perf_counter()
        deadline = time.monotonic() + s.time_limit_ms / 1000
        timings: dict[str, float] = {}
        flt = self.doc_filter(query)
        match = fts_query(query.q)
        need = query.offset + query.k
        try:
            ranking, total = self._rank(query, flt, match, need, deadline, timings)
        except StoreTimeout:
            raise SearchTimeout(f"the query ran past the {s.time_limit_ms} ms time limit") from None
        page = ranking[query.offset:need]
        mark = time.perf_counter()
        hits = self._hits(page, match, query.offset)
        timings["hits"] = _ms(mark)
        mark = time.perf_counter()
        keyword = query.mode == "keyword"
        docset = self.store.docset_sql(flt, match if keyword else None)
        if keyword and match is None:  # no searchable words: the result set is empty
            docset = ("SELECT id FROM documents WHERE 0", {})
        facets = self._facets(flt, keyword, docset, deadline)
        timings["facets"] = _ms(mark)
        timings["total"] = _ms(t0)
        exact = query.mode == "keyword" or bool(getattr(self.index, "exact", True))
        return SearchResult(query.q, query.mode, query.k, query.offset, total, hits, facets,
                            self.active_filters(query), timings, exact)

    def document(self, doc_id: int) -> DocumentView:
        """The full document with every entity mention highlighted."""
        info = self.store.doc_infos([int(doc_id)]).get(int(doc_id))
        if info is None:
            raise DocumentNotFound(f"no document with id {doc_id}")
        mentions = self.store.mentions_of([info.id])[info.id]
        text = self.store.document_text(info.id) or ""
        return DocumentView(info.id, info.external_id, info.collection, info.title, text, info.meta,
                            document_highlights(mentions), badges(mentions))

    def similar(self, doc_id: int, k: int = 10) -> list[Hit]:
        """Documents whose chunks lie nearest the mean vector of this document's chunks."""
        if not 1 <= k <= self.settings.search.max_k:
            raise QueryError(f"k {k} is out of range; give one from 1 to {self.settings.search.max_k}")
        chunk_ids = self.store.document_chunk_ids(int(doc_id))
        if not chunk_ids and int(doc_id) not in self.store.doc_infos([int(doc_id)]):
            raise DocumentNotFound(f"no document with id {doc_id}")
        vectors = self.index.vectors(np.asarray(chunk_ids, dtype=np.int64))
        if len(vectors) == 0:
            return []
        centre = vectors.mean(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        docs = self._grow(lambda n: self.index.search(centre, n), k + 1, exclude=int(doc_id))
        return self._hits(docs[:k], None, 0)

    def stats(self) -> dict[str, Any]:
        """Counts of the store and the vector index, the manifest, and when this service loaded it."""
        return {"store": self.store.counts(), "vectors": int(self.index.ntotal),
                "index_type": getattr(self.index, "description", type(self.index).__name__),
                "exact": bool(getattr(self.index, "exact", True)),
                "embedder": getattr(self.embedder, "name", type(self.embedder).__name__),
                "manifest": self.manifest, "loaded_at": self.loaded_at}

    # ---- filters -------------------------------------------------------------------------
    def doc_filter(self, query: Query) -> DocFilter:
        """The store filter of a query; unknown filter names raise a QueryError listing the valid ones."""
        labels = self._labels()
        entities, meta = {}, {}
        for name, values in query.filters.items():
            if name in METADATA_FILTERS:
                meta[name] = tuple(values)
            elif name in labels:
                entities[labels[name]] = tuple(values)
            else:
                raise QueryError(f"unknown filter {name!r}; valid: {', '.join(self.facet_names())}")
        return DocFilter(entities, meta, query.year_from, query.year_to, query.include_negated)

    def _labels(self) -> dict[str, str]:
        """filter name -> entity label, for the configured facet labels and those in the store."""
        key = self._version()
        if self._labels_cache is None or self._labels_cache[0] != key:
            found = set(self.settings.search.facet_labels) | set(self.store.labels())
            self._labels_cache = (key, {lab.lower(): lab for lab in sorted(found)})
        return self._labels_cache[1]

    def _version(self) -> tuple:
        """Changes whenever documents, chunks or mentions are added, replaced or deleted."""
        return tuple(self.store.raw("SELECT (SELECT count(*) FROM documents), "
                                    "(SELECT coalesce(max(seq), 0) FROM sqlite_sequence), "
                                    "(SELECT coalesce(max(id), 0) FROM mentions)")[0])

    def facets(self, query: Query, keyword: bool = False) -> list[Facet]:
        """Facet counts over every document passing the query's filters (and its keyword match if `keyword`)."""
        flt = self.doc_filter(query)
        match = fts_query(query.q) if keyword else None
        deadline = time.monotonic() + self.settings.search.time_limit_ms / 1000
        return self._facets(flt, match is not None, self.store.docset_sql(flt, match), deadline)

    def active_filters(self, query: Query) -> list[ActiveFilter]:
        """Each filter value of a query with a readable label, e.g. "Disease: PTSD"."""
        out = []
        names = self._value_names(query)
        for name, values in query.filters.items():
            out.extend(ActiveFilter(name, v, f"{filter_label(name)}: {names.get((name, v), v)}") for v in values)
        if query.year_from is not None:
            out.append(ActiveFilter("year_from", str(query.year_from), f"Year from: {query.year_from}"))
        if query.year_to is not None:
            out.append(ActiveFilter("year_to", str(query.year_to), f"Year to: {query.year_to}"))
        if query.include_negated:
            out.append(ActiveFilter("negated", "1", "Including negated mentions"))
        return out

    def _value_names(self, query: Query) -> dict[tuple[str, str], str]:
        """Readable names of entity filter values given as ids (e.g. MESH:D013313 -> PTSD)."""
        labels, out = self._labels(), {}
        for name, values in query.filters.items():
            if name in labels:
                for v in values:
                    rows = self.store.raw("SELECT norm_name FROM mentions WHERE label = :l AND norm_id = :v "
                                          "GROUP BY norm_name ORDER BY count(*) DESC LIMIT 1", l=labels[name], v=v)
                    if rows:
                        out[(name, v)] = rows[0][0]
        return out

    # ---- retrieval -----------------------------------------------------------------------
    def _rank(self, query: Query, flt: DocFilter, match: str | None, need: int, deadline: float,
              timings: dict[str, float]) -> tuple[list[tuple[int, int, float]], int]:
        """Ranked (document, best chunk, score) and the size of the whole result set."""
        s = self.settings.search
        rankings: list[list[tuple[int, int, float]]] = []
        weights: list[float] = []
        total = 0
        if query.mode in ("dense", "hybrid"):
            mark = time.perf_counter()
            allowed = None
            if not flt.is_empty():
                allowed, total = self.store.allowed_chunks(flt, deadline)
            else:
                total = self.store.count_docs(("SELECT id FROM documents", {}), deadline)
            timings["filter"] = _ms(mark)
            mark = time.perf_counter()
            qv = self.embedder.embed_queries([query.q])[0]
            timings["encode"] = _ms(mark)
            mark = time.perf_counter()
            if allowed is not None and len(allowed) == 0:
                rankings.append([])
            else:
                rankings.append(self._grow(lambda n: self.index.search(qv, n, allowed), max(need, 1)))
            weights.append(s.dense_weight)
            timings["dense"] = _ms(mark)
        if query.mode in ("keyword", "hybrid"):
            mark = time.perf_counter()
            kw = self._keyword(match, flt, need, deadline)
            if query.mode == "keyword":
                total = self.store.count_docs(self.store.docset_sql(flt, match), deadline) if match else 0
            rankings.append(kw)
            weights.append(s.keyword_weight)
            timings["keyword"] = _ms(mark)
        if time.monotonic() > deadline:
            raise StoreTimeout("deadline passed during retrieval")
        if len(rankings) == 1:
            return rankings[0], total
        mark = time.perf_counter()
        fused = fusion.rrf(rankings, weights, s.rrf_k)
        timings["fuse"] = _ms(mark)
        return fused, total

    def _grow(self, fetch: Callable[[int], tuple[np.ndarray, np.ndarray]], need: int,
              exclude: int | None = None) -> list[tuple[int, int, float]]:
        """Fetch ever more chunks until they collapse to `need` documents or the candidates run out."""
        n = max(self.settings.search.candidates, need * 4)
        while True:
            scores, ids = fetch(n)
            doc_of = self.store.chunk_documents(ids.tolist())
            if exclude is not None:
                doc_of = {c: d for c, d in doc_of.items() if d != exclude}
            docs = fusion.collapse(zip(ids.tolist(), scores.tolist()), doc_of)
            if len(docs) >= need or len(ids) < n:
                return docs
            n *= 4

    def _keyword(self, match: str | None, flt: DocFilter, need: int, deadline: float) -> list[tuple[int, int, float]]:
        """BM25 ranking of documents by their best chunk."""
        if match is None:
            return []
        n = max(self.settings.search.candidates, need * 4)
        while True:
            rows = self.store.keyword(match, flt, n, deadline)
            docs = fusion.collapse(((c, sc) for c, _, sc in rows), {c: d for c, d, _ in rows})
            if len(docs) >= need or len(rows) < n:
                return docs
            n *= 4

    # ---- hits and facets -----------------------------------------------------------------
    def _hits(self, page: Sequence[tuple[int, int, float]], match: str | None, offset: int) -> list[Hit]:
        """Hits with snippets around the best chunk and entity badges."""
        docs = [d for d, _, _ in page]
        infos = self.store.doc_infos(docs)
        mentions = self.store.mentions_of(docs)
        chunks = self.store.chunk_rows([c for _, c, _ in page])
        terms = self.store.term_highlights(match, [c for _, c, _ in page]) if match else {}
        size = self.settings.search.snippet_chars
        hits = []
        for rank, (doc, chunk, score) in enumerate(page, offset + 1):
            info, row = infos.get(doc), chunks.get(chunk)
            if info is None or row is None:  # deleted since it was retrieved
                continue
            _, start, _end, text = row
            snippet = make_snippet(start, text, terms.get(chunk, []), mentions[doc], size)
            hits.append(Hit(doc, info.external_id, info.collection, info.title, float(score), rank, info.meta,
                            snippet, badges(mentions[doc], BADGES_PER_HIT)))
        return hits

    def _facets(self, flt: DocFilter, keyword: bool, docset: tuple[str, dict], deadline: float) -> list[Facet]:
        """Counts of every facet over the whole result set; a facet out of time is marked unavailable."""
        cacheable = flt.is_empty() and not keyword
        if cacheable and self._facet_cache is not None and self._facet_cache[0] == self._version():
            return self._facet_cache[1]
        labels = self._labels()
        names = [lab.lower() for lab in self.settings.search.facet_labels if lab.lower() in labels] + list(META_FACETS)
        limit = self.settings.search.facet_limit
        facets = []
        for name in names:
            key = labels.get(name, name)
            try:
                rows, truncated = self.store.facet_counts(key, None if cacheable else docset, limit, deadline)
            except StoreTimeout:
                facets.append(Facet(name, filter_label(name), [], False, available=False))
                continue
            facets.append(Facet(name, filter_label(name), [FacetValue(str(i), str(n), int(c)) for i, n, c in rows],
                                truncated))
        if cacheable and all(f.available for f in facets):
            self._facet_cache = (self._version(), facets)
        return facets


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
