"""SearchService: Query -> SearchResult over an index directory (store + FAISS + manifest).

The web front end, evaluation and the JSON API all call `search`, so what is measured is
what users get. Filters resolve to allowed chunk ids in the store's in-memory snapshot
(indexer/store/snapshot.py, the one definition of the filter rules) and the vector index scores
exactly that set (see indexer/vector_index.py), so filtered results are the true top k of
the filtered set at any selectivity on the flat index.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

import numpy as np

from indexer.embedder import Embedder
from indexer.errors import DocumentNotFound, MedlexError, QueryError
from indexer.settings import Settings
from indexer.store import METADATA_FILTERS, DocFilter, DocumentStore, StoreSnapshot, StoreTimeout
from searchd import bm25, fusion, long_query
from searchd.keyword import KeywordQuery, parse, stop_list
from searchd.profiles import FusionChoice, Profiles
from searchd.query import Query, filter_label
from searchd.results import ActiveFilter, DocumentView, Facet, FacetValue, Hit, SearchResult
from searchd.snippets import badges, document_highlights, make_snippet

if TYPE_CHECKING:  # faiss loads with the index, not with this module
    from indexer.reranker import Reranker
    from indexer.vector_index import VectorIndex

META_FACETS = ("collection", "source", "doc_type", "court", "year")
BADGES_PER_HIT = 5


class SearchTimeout(MedlexError):
    """A search ran past search.time_limit_ms."""


class StoreOnly:
    """The embedder and vector index of a service opened over a store alone: keyword search works,
    dense and hybrid search and similar documents say why they cannot."""

    name = description = "none (store only)"
    dim = ntotal = version = 0
    exact = True  # keyword search, the only kind it serves, is exact

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise QueryError("dense and hybrid search and similar documents need a vector index; this service "
                         "was opened over the store alone, for keyword search (mode=keyword)")

    embed_documents = embed_queries = add = remove = search = search_rows = row_ids = vectors = save = _refuse

    def close(self) -> None:
        """Nothing to free."""


class SearchService:
    """Searches one index directory: dense, keyword and hybrid, with filters, facets and snippets.

    The service owns what it is given: `close()` (or leaving a `with` block) stops its worker
    threads and closes the vector index and the store.
    """

    def __init__(self, store: DocumentStore, index: VectorIndex, embedder: Embedder, settings: Settings,
                 manifest: dict[str, Any], reranker: Reranker | None = None):
        self.store = store
        self.reranker = reranker  # reorders the fused top search.rerank_depth documents when set
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.manifest = manifest
        self.loaded_at = time.time()
        self._snap: StoreSnapshot | None = None
        self._row_docs: tuple[tuple, np.ndarray] | None = None  # (snapshot, index version) -> doc row per index row
        self._lock = threading.Lock()
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._long = long_query.LongQueries(store, embedder, settings)
        self.profiles = Profiles(settings.index.dir)  # which fusion weights a hybrid query gets (searchd/profiles.py)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="searchd-bm25")

    @classmethod
    def load(cls, settings: Settings, embedder: Embedder | None = None) -> "SearchService":
        """Open settings.index.dir, check that manifest, store, FAISS and embedder agree, and load the embedder.

        `embedder`: the configured one, already loaded (a reload reuses the running service's).
        """
        from indexer.embedder import load_embedder
        from indexer.pipeline import check_embedder
        from indexer.shards import open_search_index

        from indexer.models import resolve_device

        # the shards when the manifest lists them; searchd never writes the index, so it may map it
        store, index, manifest = open_search_index(settings, mmap=settings.search.mmap_vectors)
        try:
            check_embedder(settings, manifest)
            if resolve_device(settings.index.device) == "cuda":
                index.to_gpu()  # faiss-gpu: unfiltered searches only; else an exact torch scan answers all
            embedder = embedder if embedder is not None else load_embedder(settings, purpose="query")
            reranker = None
            if settings.search.rerank_depth > 0:
                from indexer.reranker import load_reranker

                reranker = load_reranker(settings)
        except BaseException:  # a refused index is not left open
            index.close()
            store.close()
            raise
        return cls(store, index, embedder, settings, manifest, reranker)

    @classmethod
    def keyword_only(cls, store: DocumentStore, settings: Settings) -> "SearchService":
        """A service over a store without vectors or a model: keyword mode only (BM25 evaluation)."""
        nothing = StoreOnly()
        return cls(store, nothing, nothing, settings, manifest={})  # no vector index, so no manifest

    def close(self) -> None:
        """Stop the keyword worker threads, then close the vector index and the store."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.index.close()
        self.store.close()

    def __enter__(self) -> "SearchService":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- public API ----------------------------------------------------------------------
    def facet_names(self) -> list[str]:
        """Filter/facet parameter names: one per entity label (lower case), then the metadata ones."""
        return sorted(self._labels()) + list(METADATA_FILTERS)

    def parse(self, params: Any) -> Query:
        """Query.from_params with the entity labels of this index."""
        return Query.from_params(params, self.settings.search, labels=self._labels().values())

    def search(self, query: Query) -> SearchResult:
        """Run a query: filter, retrieve, fuse, collapse to documents, page, snippet and count facets."""
        s = self.settings.search
        t0 = time.perf_counter()
        deadline = time.monotonic() + s.time_limit_ms / 1000
        snap = self.snapshot()
        flt = self.doc_filter(query, snap)
        match = self.keyword_query(query.q, snap).fts()
        mask = snap.mask(flt)
        timings: dict[str, float] = {"filter": _ms(t0)}
        need = query.offset + query.k
        choice = self.profiles.choose(self.settings, snap, mask) if query.mode == "hybrid" else None
        try:
            ranking, result_set = self._rank(query, flt, snap, mask, match, need, deadline, timings, choice)
            ranking = self._rerank(query, ranking, timings)
            if time.monotonic() > deadline:
                raise StoreTimeout("deadline passed during retrieval")
        except StoreTimeout:
            raise SearchTimeout(f"the query ran past the {s.time_limit_ms} ms time limit") from None
        page = ranking[query.offset:need]
        mark = time.perf_counter()
        hits = self._hits(page, match, query.offset)
        timings["hits"] = _ms(mark)
        mark = time.perf_counter()
        facets = self._facets(snap, result_set, deadline)
        timings["facets"] = _ms(mark)
        timings["total"] = _ms(t0)
        exact = query.mode == "keyword" or self.index.exact
        return SearchResult(query.q, query.mode, query.k, query.offset, int(result_set.sum()), hits, facets,
                            self.active_filters(query, snap), timings, exact,
                            choice.to_dict() if choice is not None else None)

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
        docs = self._grow(lambda n: self.index.search(centre, n), self.snapshot(), k + 1, exclude=int(doc_id))
        return self._hits(docs[:k], None, 0)

    def stats(self) -> dict[str, Any]:
        """Counts of the store and the vector index, the manifest, and when this service loaded it.

        `in_step` is false (and `pending_chunks` > 0) in the moment between a writer's store commit and
        its new vectors being loaded: the counts then differ, and say so, rather than disagree silently."""
        counts = self.store.counts()
        vectors = int(self.index.ntotal)
        return {"store": counts, "vectors": vectors, "in_step": counts["chunks"] == vectors,
                "pending_chunks": counts["chunks"] - vectors, "index_type": self.index.description,
                "exact": self.index.exact, "embedder": self.embedder.name, "manifest": self.manifest,
                "loaded_at": self.loaded_at}

    # ---- filters -------------------------------------------------------------------------
    def snapshot(self) -> StoreSnapshot:
        """The in-memory filter and facet arrays, rebuilt when the store has changed."""
        key = self._version()
        with self._lock:
            if self._snap is None or self._snap.version != key:
                self._snap = self.store.load_snapshot(key)
            return self._snap

    def _version(self) -> tuple:
        """Changes whenever documents, chunks or mentions are added, replaced or deleted."""
        return self.store.version()

    def _labels(self, snap: StoreSnapshot | None = None) -> dict[str, str]:
        """filter name -> entity label, for the configured facet labels and those in the store."""
        found = set(self.settings.search.facet_labels) | set((snap or self.snapshot()).labels)
        return {lab.lower(): lab for lab in sorted(found)}

    def doc_filter(self, query: Query, snap: StoreSnapshot | None = None) -> DocFilter:
        """The store filter of a query; unknown filter names raise a QueryError listing the valid ones."""
        labels = self._labels(snap)
        entities, meta = {}, {}
        for name, values in query.filters.items():
            if name in METADATA_FILTERS:
                meta[name] = tuple(values)
            elif name in labels:
                entities[labels[name]] = tuple(values)
            else:
                raise QueryError(f"unknown filter {name!r}; valid: {', '.join(self.facet_names())}")
        return DocFilter(entities, meta, query.year_from, query.year_to, query.include_negated)

    def facets(self, query: Query, keyword: bool = False) -> list[Facet]:
        """Facet counts over every document passing the query's filters (and its keyword match if `keyword`)."""
        snap = self.snapshot()
        flt = self.doc_filter(query, snap)
        mask = snap.mask(flt)
        if keyword:
            mask &= self._keyword_documents(snap, self.keyword_query(query.q, snap).fts(), None)
        return self._facets(snap, mask, time.monotonic() + self.settings.search.time_limit_ms / 1000)

    def active_filters(self, query: Query, snap: StoreSnapshot | None = None) -> list[ActiveFilter]:
        """Each filter value of a query with a readable label, e.g. "Disease: PTSD"."""
        snap = snap or self.snapshot()
        out = []
        for name, values in query.filters.items():
            for v in values:
                code = snap.value_index.get(v) if name not in METADATA_FILTERS else None
                shown = snap.display[code] if code is not None else v
                out.append(ActiveFilter(name, v, f"{filter_label(name)}: {shown}"))
        if query.year_from is not None:
            out.append(ActiveFilter("year_from", str(query.year_from), f"Year from: {query.year_from}"))
        if query.year_to is not None:
            out.append(ActiveFilter("year_to", str(query.year_to), f"Year to: {query.year_to}"))
        if query.include_negated:
            out.append(ActiveFilter("negated", "1", "Including negated mentions"))
        return out

    # ---- retrieval -----------------------------------------------------------------------
    def fusion_choice(self, query: Query) -> FusionChoice:
        """The fusion a hybrid search of `query` runs with (searchd/profiles.py), and why."""
        snap = self.snapshot()
        return self.profiles.choose(self.settings, snap, snap.mask(self.doc_filter(query, snap)))

    def _rank(self, query: Query, flt: DocFilter, snap: StoreSnapshot, mask: np.ndarray, match: str | None,
              need: int, deadline: float, timings: dict[str, float],
              choice: FusionChoice | None = None) -> tuple[list[tuple[int, int, float]], np.ndarray]:
        """Ranked (document, best chunk, score) of the whole result set, and its document mask.

        Keyword mode: every filtered document with a matching chunk. Dense and hybrid: the documents
        the query retrieves, i.e. the dense top `search.result_window` of the filtered set (fused, in
        hybrid, with the keyword top `result_window`). A plain-language query shares some word with
        nearly every document, so "every keyword match" would count the whole corpus again. Hybrid fuses
        `choice.depth` documents of each retriever and keeps the size of the two top-result_window lists' union.
        """
        s = self.settings.search
        words = self.keyword_query(query.q, snap)
        allowed = None if flt.is_empty() or mask.all() else mask
        if query.mode == "keyword":
            mark = time.perf_counter()
            found = bm25.rank(self.store, snap, words, allowed, need, deadline, self.bm25_weights(),
                              s.impact_lists)
            timings["keyword"] = _ms(mark)
            return found.documents, mask & self._documents_of(snap, found.matched)
        window = max(s.result_window, 1)
        depth = choice.depth if choice is not None else window
        # hybrid: BM25 runs in a worker thread while the query is encoded and scored (both release the GIL)
        keyword = self._pool.submit(self._keyword, snap, words, allowed, depth, deadline) \
            if choice is not None else None
        mark = time.perf_counter()
        qv = self._query_vector(query.q)
        timings["encode"] = _ms(mark)
        mark = time.perf_counter()
        rows = None if flt.is_empty() else np.append(mask, False)[self._index_rows(snap)]  # -1 rows: not allowed
        dense = [] if rows is not None and not rows.any() else self._dense(qv, rows, snap, depth, timings)
        timings["dense"] = _ms(mark)
        ranking = dense
        if keyword is not None:
            mark = time.perf_counter()
            lexical = keyword.result()[:depth]
            timings["keyword_wait"] = _ms(mark)
            ranking = fusion.fuse_windows(dense, lexical, choice.rule, [choice.dense_weight, choice.keyword_weight],
                                          window, s.rrf_k)
        return ranking, mask & snap.of_documents(np.asarray([d for d, _, _ in ranking], dtype=np.int64))

    def _dense(self, qv: np.ndarray, rows: np.ndarray | None, snap: StoreSnapshot, window: int,
               timings: dict[str, float]) -> list[tuple[int, int, float]]:
        """Dense document ranking of a query vector, or RRF of one ranking per row of a long query's matrix."""
        vectors = qv.reshape(1, -1) if qv.ndim == 1 else qv
        rankings = [self._grow(lambda n, v=v: self._timed(timings, lambda: self.index.search_rows(v, n, rows)),
                               snap, window) for v in vectors]
        if len(rankings) == 1:
            return rankings[0]
        return fusion.rrf(rankings, [1.0] * len(rankings), self.settings.search.rrf_k)[:window]

    def _rerank(self, query: Query, ranking: list[tuple[int, int, float]],
                timings: dict[str, float]) -> list[tuple[int, int, float]]:
        """The top search.rerank_depth documents reordered by the cross-encoder on their best chunk
        ("Title. chunk", as the index encodes it), scored by its logit; the rest follow in their order.
        A no-op in keyword mode, without a reranker or at depth 0."""
        depth = self.settings.search.rerank_depth
        if self.reranker is None or depth <= 0 or query.mode == "keyword" or len(ranking) < 2:
            return ranking
        mark = time.perf_counter()
        head, tail = ranking[:depth], ranking[depth:]
        texts = self.store.chunk_texts([c for _, c, _ in head])
        passages = [_passage(*texts.get(c, ("", ""))) for _, c, _ in head]
        scores = self.reranker.score(query.q, passages)
        order = np.argsort(-scores, kind="stable")
        timings["rerank"] = _ms(mark)
        return [(head[i][0], head[i][1], float(scores[i])) for i in order] + tail

    def with_reranker(self, reranker: Reranker, depth: int) -> "SearchService":
        """A view of this service (same store, index, embedder and threads) that reranks the top `depth`;
        closing stays with this service."""
        import copy
        import dataclasses

        view = copy.copy(self)
        view.reranker = reranker
        view.settings = self.settings.replace(search=dataclasses.replace(self.settings.search, rerank_depth=depth))
        return view

    def _query_vector(self, q: str) -> np.ndarray:
        """The query's vector (a long query's: see long_query.LongQueries), from a small LRU cache so that paging does not re-encode."""
        size = self.settings.search.query_cache
        with self._lock:
            if q in self._vectors:
                self._vectors.move_to_end(q)
                return self._vectors[q]
        vector = self._long.vector(q) if len(q) > self.settings.search.long_query_chars else \
            self.embedder.embed_queries([q])[0]
        if size > 0:
            with self._lock:
                self._vectors[q] = vector
                while len(self._vectors) > size:
                    self._vectors.popitem(last=False)
        return vector

    def _keyword_documents(self, snap: StoreSnapshot, match: str | None, deadline: float | None) -> np.ndarray:
        """Mask of the documents with a chunk matching the keyword query (none without searchable words)."""
        return self._documents_of(snap, self.store.keyword_chunks(match, deadline)) if match is not None \
            else np.zeros(len(snap.doc_ids), dtype=bool)

    @staticmethod
    def _documents_of(snap: StoreSnapshot, chunk_ids: np.ndarray) -> np.ndarray:
        """Mask of the documents of some chunks (chunks no longer in the store are ignored)."""
        found = np.zeros(len(snap.doc_ids), dtype=bool)
        rows = snap.chunk_doc_rows(chunk_ids)
        found[rows[rows >= 0]] = True
        return found

    def _grow(self, fetch: Callable[[int], tuple[np.ndarray, np.ndarray]], snap: StoreSnapshot, need: int,
              exclude: int | None = None) -> list[tuple[int, int, float]]:
        """Fetch ever more chunks until they collapse to `need` documents (at most) or the candidates run out."""
        n = max(self.settings.search.candidates, need * 4)
        while True:
            scores, ids = fetch(n)
            doc_of = snap.chunk_documents(ids)  # the snapshot, not SQL: chunks deleted since are already absent
            if exclude is not None:
                doc_of = {c: d for c, d in doc_of.items() if d != exclude}
            docs = fusion.collapse(zip(ids.tolist(), scores.tolist()), doc_of)
            if len(docs) >= need or len(ids) < n:
                return docs[:need]
            n *= 4

    def _index_rows(self, snap: StoreSnapshot) -> np.ndarray:
        """Document row of each vector index row (-1: not in the store), computed once per snapshot and index version."""
        key = (snap.version, self.index.version)
        cached = self._row_docs
        if cached is None or cached[0] != key:
            cached = self._row_docs = (key, snap.chunk_doc_rows(self.index.row_ids()))
        return cached[1]

    @staticmethod
    def _timed(timings: dict[str, float], call: Callable[[], Any]) -> Any:
        """Run a vector index call, adding its time to timings["vector"] (the index's own share of "dense")."""
        mark = time.perf_counter()
        out = call()
        timings["vector"] = round(timings.get("vector", 0.0) + _ms(mark), 3)
        return out

    def _keyword(self, snap: StoreSnapshot, words: KeywordQuery, allowed: np.ndarray | None, need: int,
                 deadline: float) -> list[tuple[int, int, float]]:
        """BM25 ranking of the `need` best documents by their best chunk (hybrid's keyword half)."""
        return bm25.top_documents(self.store, snap, words, allowed, need, deadline, self.bm25_weights(),
                                  self.settings.search.impact_lists)

    def keyword_query(self, q: str, snap: StoreSnapshot | None = None) -> KeywordQuery:
        """The words and phrases keyword search looks for in `q` (search.stop_words dropped); a long query
        (over search.long_query_chars) keeps its search.long_query_terms highest tf-idf words instead."""
        if len(q) > self.settings.search.long_query_chars:
            return self._long.keyword_query(q, snap or self.snapshot())
        return parse(q, stop_list(self.settings.search.stop_words))

    def bm25_weights(self) -> tuple[float, float]:
        """FTS5 column weights of (title, text), from search.bm25_title_weight and bm25_text_weight."""
        return self.settings.search.bm25_title_weight, self.settings.search.bm25_text_weight

    # ---- hits and facets -----------------------------------------------------------------
    def _hits(self, page: Sequence[tuple[int, int, float]], match: str | None, offset: int) -> list[Hit]:
        """Hits with snippets around the best chunk and entity badges."""
        docs = [d for d, _, _ in page]
        # the FTS5 highlight query, the slowest of the four, runs in a worker thread beside the other three
        # (SQLite releases the GIL while it executes)
        terms = self._pool.submit(self.store.term_highlights, match, [c for _, c, _ in page]) \
            if match and page else None
        infos = self.store.doc_infos(docs)
        mentions = self.store.mentions_of(docs)
        chunks = self.store.chunk_rows([c for _, c, _ in page])
        terms = terms.result() if terms is not None else {}
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

    def _facets(self, snap: StoreSnapshot, mask: np.ndarray, deadline: float) -> list[Facet]:
        """Counts of every facet over the whole result set; a facet out of time is marked unavailable."""
        labels = self._labels(snap)
        names = [lab.lower() for lab in self.settings.search.facet_labels if lab.lower() in labels] + list(META_FACETS)
        facets = []
        for name in names:
            if time.monotonic() > deadline:
                facets.append(Facet(name, filter_label(name), [], False, available=False))
                continue
            rows, truncated = snap.facet(labels.get(name, name), mask, self.settings.search.facet_limit)
            facets.append(Facet(name, filter_label(name), [FacetValue(i, n, c) for i, n, c in rows], truncated))
        return facets


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)


def _passage(title: str, text: str) -> str:
    """What the reranker reads of a chunk: "Title. text", as the index encodes it."""
    return f"{title}. {text}" if title else text
