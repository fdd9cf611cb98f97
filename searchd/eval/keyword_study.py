"""`searchd keyword-study`: keyword-side variants for long documents, side by side on one eval set, no vectors.

Each query is retrieved once, phrase by phrase: what every phrase of the parsed query adds to every
chunk (FTS5's bm25() of the one-phrase query; BM25 sums over phrases, so the sum is the score of the
whole OR query, which a test checks). Every variant then ranks from those lists in memory:

- chunk to document: the best chunk (the service's rule), the sum of the best 2 or 3, a soft maximum
  (T log sum exp(s / T) over the document's chunks);
- query words dropped when they occur in more than a share of the documents (document, not chunk,
  frequency: a word recited in every decision is rare among chunks but common among documents);
- boilerplate chunks weighed down: a chunk's score times 1 - lambda * (the share of its word 8-grams
  found in at least F documents), so a regulation recited in every decision counts less;
- pseudo-relevance feedback: the words with the highest tf-idf in the best chunks of the top documents
  added to the query at a weight beta;
- the whole document as one BM25 unit (an in-memory FTS5 table of titles and texts, the same
  tokenizer), alone and z-score fused with the chunk ranking.

Each is tested against today's keyword ranking (`bm25 max`) with the paired tests of report.py.
"""
from __future__ import annotations

import math
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from indexer.settings import Settings
from searchd import fusion
from searchd.eval.metrics import Cutoffs, score_run
from searchd.eval.report import compare
from searchd.keyword import STOP_WORDS, KeywordQuery, parse, stop_list

SHINGLE = 8  # words per shingle for the boilerplate share
_WORDS = re.compile(r"\w+")
_FEEDBACK_WORD = re.compile(r"[^\W\d_]{3,}")


@dataclass
class Retrieved:
    """One query's phrases and, per phrase, its contribution to each chunk row (dense over the snapshot's chunks)."""

    phrases: list[str]
    parts: np.ndarray  # (phrases, chunks) float64

    def total(self, weights: Sequence[float] | None = None) -> np.ndarray:
        w = np.ones(len(self.phrases)) if weights is None else np.asarray(weights, dtype=np.float64)
        return w @ self.parts if len(self.phrases) else np.zeros(self.parts.shape[1])


class Corpus:
    """The snapshot's chunks and documents as arrays, with phrase contributions read from the store."""

    def __init__(self, store: Any, settings: Settings):
        self.store, self.settings = store, settings
        self.snap = store.load_snapshot(store.version())
        self.chunk_ids = np.asarray(self.snap.chunk_ids, dtype=np.int64)
        self.rows = self.snap.chunk_doc_rows(self.chunk_ids)
        self.position = {int(c): i for i, c in enumerate(self.chunk_ids)}
        infos = store.doc_infos(self.snap.doc_ids.tolist())
        self.external = [infos[int(d)].external_id if int(d) in infos else "" for d in self.snap.doc_ids]
        self.weights = (settings.search.bm25_title_weight, settings.search.bm25_text_weight)
        self._phrase: dict[str, np.ndarray] = {}

    def phrase_vector(self, phrase: str) -> np.ndarray:
        """What one phrase adds to each chunk's BM25 (0 where absent)."""
        if phrase not in self._phrase:
            ids, scores = self.store.phrase_impacts(KeywordQuery((phrase,), ()).fts(), self.weights)
            v = np.zeros(len(self.chunk_ids))
            at = np.fromiter((self.position.get(int(i), -1) for i in ids), dtype=np.int64, count=len(ids))
            v[at[at >= 0]] = scores[at >= 0]
            self._phrase[phrase] = v
        return self._phrase[phrase]

    def retrieve(self, text: str) -> Retrieved:
        phrases = list(parse(text, stop_list(self.settings.search.stop_words)).include)
        parts = np.array([self.phrase_vector(p) for p in phrases]).reshape(len(phrases), len(self.chunk_ids))
        return Retrieved(phrases, parts)

    def document_share(self, vector: np.ndarray) -> float:
        """Share of the documents with a chunk where `vector` is non-zero."""
        rows = self.rows[(vector != 0) & (self.rows >= 0)]
        return len(np.unique(rows)) / max(len(self.external), 1)


def documents(corpus: Corpus, scores: np.ndarray, matched: np.ndarray, rule: str = "max",
              depth: int = 100) -> list[tuple[int, float]]:
    """(document row, score) best first from chunk scores of the matched chunks: max | sum2 | sum3 | soft<T>."""
    keep = matched & (corpus.rows >= 0)
    s, r = scores[keep], corpus.rows[keep]
    order = np.lexsort((-s, r))  # by document, best chunk first
    s, r = s[order], r[order]
    if len(r) == 0:
        return []
    starts = np.r_[0, np.flatnonzero(np.diff(r)) + 1]
    ends = np.r_[starts[1:], len(r)]
    if rule == "max":
        values = s[starts]
    elif rule in ("sum2", "sum3"):
        top = int(rule[-1])
        values = np.array([s[a:min(b, a + top)].sum() for a, b in zip(starts, ends)])
    elif rule.startswith("soft"):
        t = float(rule[4:])
        values = np.array([s[a] + t * math.log(np.exp((s[a:b] - s[a]) / t).sum()) for a, b in zip(starts, ends)])
    else:
        raise ValueError(f"unknown chunk-to-document rule {rule!r}")
    docs = r[starts]
    best = np.lexsort((docs, -values))[:depth]
    return list(zip(docs[best].tolist(), values[best].tolist()))


def boilerplate_share(texts: Sequence[tuple[int, str]], doc_of: dict[int, int], min_docs: int) -> dict[int, float]:
    """chunk id -> share of its word 8-grams found in chunks of at least `min_docs` documents."""
    shingles: dict[int, set[int]] = {}
    docs_with: dict[int, set[int]] = {}
    for cid, text in texts:
        words = [w.lower() for w in _WORDS.findall(text)]
        grams = {hash(tuple(words[i:i + SHINGLE])) for i in range(len(words) - SHINGLE + 1)}
        shingles[cid] = grams
        for g in grams:
            docs_with.setdefault(g, set()).add(doc_of[cid])
    return {cid: (sum(len(docs_with[g]) >= min_docs for g in grams) / len(grams) if grams else 0.0)
            for cid, grams in shingles.items()}


def feedback_terms(corpus: Corpus, scores: np.ndarray, query: Sequence[str], top_docs: int, chunks_per_doc: int,
                   terms: int, texts: Callable[[list[int]], dict[int, str]]) -> list[str]:
    """The `terms` words with the highest (mean relative tf in the feedback chunks) * log(N / chunk df), not in the query."""
    ranked = documents(corpus, scores, scores > 0, depth=top_docs)
    picked: list[int] = []
    for row, _ in ranked:
        idx = np.flatnonzero(corpus.rows == row)
        picked += corpus.chunk_ids[idx[np.argsort(-scores[idx], kind="stable")[:chunks_per_doc]]].tolist()
    weight: Counter[str] = Counter()
    for text in texts(picked).values():
        words = [w.lower() for w in _FEEDBACK_WORD.findall(text)]
        counts = Counter(w for w in words if w not in STOP_WORDS)
        for w, n in counts.items():
            weight[w] += n / max(len(words), 1) / max(len(ranked), 1)
    asked = {q.lower() for q in query}
    candidates = [w for w, _ in weight.most_common() if w not in asked][:60]
    dfs = corpus.store.phrase_counts([KeywordQuery((w,), ()).fts() for w in candidates])
    total = max(len(corpus.chunk_ids), 1)
    scored = sorted(((weight[w] * math.log(total / n), w) for w, n in zip(candidates, dfs) if n > 0), reverse=True)
    return [w for _, w in scored[:terms]]


class WholeDocuments:
    """BM25 over whole documents: an in-memory FTS5 table of (title, text) with the chunks' tokenizer."""

    def __init__(self, store: Any, corpus: Corpus):
        from indexer.store.schema import FTS_TOKENIZE

        self.conn = sqlite3.connect(":memory:")
        self.conn.execute(f"CREATE VIRTUAL TABLE d USING fts5(title, text, tokenize='{FTS_TOKENIZE}')")
        infos = store.doc_infos(corpus.snap.doc_ids.tolist())
        for batch in store.document_texts(corpus.snap.doc_ids.tolist(), 200):
            self.conn.executemany("INSERT INTO d(rowid, title, text) VALUES (?, ?, ?)",
                                  [(int(i), infos[i].title, t) for i, t in batch])
        self.row_of = {int(d): r for r, d in enumerate(corpus.snap.doc_ids)}
        self.weights = corpus.weights

    def rank(self, match: str | None, depth: int = 100) -> list[tuple[int, float]]:
        if match is None:
            return []
        rows = self.conn.execute("SELECT rowid, -bm25(d, ?, ?) AS s FROM d WHERE d MATCH ? ORDER BY s DESC LIMIT ?",
                                 (*self.weights, match, depth)).fetchall()
        return [(self.row_of[int(i)], float(s)) for i, s in rows]


BOILERPLATE = ((10, 0.3), (10, 1.0), (50, 0.3))  # (min documents F, lambda)
DROP_SHARES = (0.9, 0.7)
SOFT = ("soft0.5", "soft1")
FEEDBACK = ((5, 2, 5, 0.1), (10, 2, 10, 0.1))  # (top documents, chunks each, terms, beta)


def study(store: Any, data: Any, settings: Settings) -> list[dict[str, Any]]:
    """Rows of (variant, mean NDCG@10, MAP@100, paired tests against `bm25 max`) for one eval set."""
    from tqdm import tqdm

    corpus = Corpus(store, settings)
    depth = settings.eval.depth
    retrieved = {q: corpus.retrieve(t) for q, t in tqdm(data.queries.items(), desc="retrieve", unit="query")}
    doc_of = {int(c): int(r) for c, r in zip(corpus.chunk_ids, corpus.rows) if r >= 0}
    all_texts = [(c, x) for c, (_, x) in store.chunk_texts(list(doc_of)).items()]
    variants: dict[str, dict[str, list[str]]] = {}

    def add(name: str, rank: Callable[[str], list[tuple[int, float]]]) -> None:
        variants[name] = {q: [corpus.external[r] for r, _ in rank(q)[:depth]] for q in data.queries}

    def chunk_rank(q: str, scores: np.ndarray, rule: str = "max") -> list[tuple[int, float]]:
        return documents(corpus, scores, (retrieved[q].total() > 0) | (scores > 0), rule, depth)

    for rule in ("max", "sum2", "sum3") + SOFT:
        add(f"bm25 {rule}", lambda q, rule=rule: chunk_rank(q, retrieved[q].total(), rule))
    for share in DROP_SHARES:
        def dropped(q: str, share: float = share) -> list[tuple[int, float]]:
            r = retrieved[q]
            keep = [corpus.document_share(v) <= share for v in r.parts] if len(r.phrases) else []
            return chunk_rank(q, r.total(keep) if any(keep) else r.total())
        add(f"drop words in > {share:.0%} of documents", dropped)
    for min_docs, lam in BOILERPLATE:
        share_of = boilerplate_share(all_texts, doc_of, min_docs)
        factor = 1 - lam * np.array([share_of.get(int(c), 0.0) for c in corpus.chunk_ids])
        add(f"boilerplate F={min_docs}, lambda={lam}", lambda q, f=factor: chunk_rank(q, retrieved[q].total() * f))
    texts = lambda ids: {c: x for c, (_, x) in store.chunk_texts(ids).items()}  # noqa: E731
    for top, per_doc, terms, beta in FEEDBACK:
        def expanded(q: str, top: int = top, per_doc: int = per_doc, terms: int = terms,
                     beta: float = beta) -> list[tuple[int, float]]:
            base = retrieved[q].total()
            extra = feedback_terms(corpus, base, retrieved[q].phrases, top, per_doc, terms, texts)
            return chunk_rank(q, base + beta * sum((corpus.phrase_vector(w) for w in extra), np.zeros_like(base)))
        add(f"feedback {top} docs x {per_doc} chunks, {terms} words, beta={beta}", expanded)
    whole = WholeDocuments(store, corpus)
    ranked_whole = {q: whole.rank(parse(t, stop_list(settings.search.stop_words)).fts(), depth)
                    for q, t in data.queries.items()}
    add("whole-document BM25", lambda q: ranked_whole[q])

    def both(q: str) -> list[tuple[int, float]]:
        parts = [[(d, 0, s) for d, s in chunk_rank(q, retrieved[q].total())], [(d, 0, s) for d, s in ranked_whole[q]]]
        return [(d, s) for d, _, s in fusion.fuse(parts, [2.0, 1.0], "zscore")]
    add("bm25 max + whole-document BM25 (z-score 2:1, 100 documents each)", both)
    return _rows(variants, data, settings)


def _rows(variants: dict[str, dict[str, list[str]]], data: Any, settings: Settings) -> list[dict[str, Any]]:
    ev = settings.eval
    cut = Cutoffs(accuracy=tuple(ev.k_values), precision_recall=tuple(ev.k_values))
    scored = {name: score_run(r, data.qrels, cut).per_query for name, r in variants.items()}
    rows = []
    for name, per_query in scored.items():
        row: dict[str, Any] = {"variant": name}
        for metric in ("ndcg@10", "map@100"):
            mine = {q: s[metric] for q, s in per_query.items()}
            row[metric] = float(np.mean(list(mine.values())))
            c = compare(name, mine, "bm25 max", {q: s[metric] for q, s in scored["bm25 max"].items()}, metric,
                        ev.permutations, ev.sample_seed)
            row[f"{metric} vs bm25 max"] = (c.mean_a - c.mean_b, c.wins, c.losses, c.p_randomisation)
        rows.append(row)
    return rows


def markdown(name: str, rows: list[dict[str, Any]]) -> str:
    """The study's table: one row per variant."""
    lines = [f"### {name}", "", "| variant | NDCG@10 | MAP@100 | NDCG@10 vs bm25 max (diff, W/L, p) | MAP@100 vs bm25 max |",
             "|---|---:|---:|---|---|"]
    for r in rows:
        cells = ["{:+.4f}, {}/{}, p={:.3g}".format(*r[f"{m} vs bm25 max"]) for m in ("ndcg@10", "map@100")]
        lines.append(f"| {r['variant']} | {r['ndcg@10']:.4f} | {r['map@100']:.4f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def run_study(dataset: Path, split: str, settings: Settings, fold: str | None, max_queries: int | None) -> str:
    """Load the eval set and its store-only index (built or reused as a keyword-only `searchd eval` does); the table."""
    from searchd.eval.evaluate import Services, embedder_dirs, load_eval_data

    data = load_eval_data(dataset, split, settings, fold, max_queries)
    services = Services(dataset, data.name, settings, keyword_only=True)
    try:
        service = services.get(embedder_dirs(settings)["base"])
        return markdown(f"{data.name} ({split}{', fold ' + fold if fold else ''}, {len(data.queries)} queries, "
                        f"title weight {settings.search.bm25_title_weight:g})", study(service.store, data, settings))
    finally:
        services.close()
