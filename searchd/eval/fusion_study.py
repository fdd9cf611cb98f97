"""`searchd fusion-study`: fusion rules and chunk-to-document scores, side by side on one eval set.

Each query is retrieved once: the dense top `search.candidates` chunks and every chunk BM25 scores
(the same index, embedder and FTS5 weights `searchd eval` uses). Every variant then ranks from
those lists in memory, so a dozen rules cost one retrieval. Variants: document score from its
chunks (max, the sum of its best 2 or 3, the best chunk with the first chunk boosted by 10%), per
retriever; and the fusion of the two windows of `search.result_window` documents by each rule of
searchd/fusion.py at a few weights (and, marked "w100", of windows of 100 documents). Each is tested
against dense and BM25 (max) with the paired tests of report.py. The service's own hybrid is the
configured rule (search.fusion, dense_weight:keyword_weight) with `max`.

`cross_validate` adds a row per fold scheme: each query ranked by the hybrid variant that scored best
on the other queries (searchd/eval/crossval.py), the honest figure for "pick the weights on this kind
of query"; the tuned best row alone overstates it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from indexer.settings import Settings
from searchd import fusion
from searchd.eval.crossval import cross_validate
from searchd.eval.metrics import Cutoffs, score_run
from searchd.eval.report import compare

Chunks = tuple[np.ndarray, np.ndarray]  # chunk ids, scores


def _aggregate(ids: np.ndarray, scores: np.ndarray, doc_rows: np.ndarray, first: np.ndarray,
               rule: str) -> list[tuple[int, int, float]]:
    """(document row, best chunk, document score) best first; `first`: whether each chunk opens its document."""
    keep = doc_rows >= 0
    ids, scores, doc_rows, first = ids[keep], scores[keep], doc_rows[keep], first[keep]
    if rule == "first":
        scores = np.where(first, scores * np.where(scores > 0, 1.1, 1 / 1.1), scores)
    order = np.lexsort((ids, -scores))
    per_doc: dict[int, list[tuple[float, int]]] = {}
    for i in order.tolist():
        per_doc.setdefault(int(doc_rows[i]), []).append((float(scores[i]), int(ids[i])))
    top = {"max": 1, "first": 1, "sum2": 2, "sum3": 3}[rule]
    out = [(d, v[0][1], sum(s for s, _ in v[:top])) for d, v in per_doc.items()]
    out.sort(key=lambda r: (-r[2], r[1]))
    return out


AGGREGATIONS = ("max", "sum2", "sum3", "first")
FUSION_VARIANTS: list[tuple[str, str, tuple[float, float]]] = [
    ("rrf 1:1", "rrf", (1.0, 1.0)), ("rrf 2:1", "rrf", (2.0, 1.0)), ("rrf 1:2", "rrf", (1.0, 2.0)),
    ("minmax 1:1", "minmax", (1.0, 1.0)), ("minmax 2:1", "minmax", (2.0, 1.0)), ("minmax 3:1", "minmax", (3.0, 1.0)),
    ("minmax 1:2", "minmax", (1.0, 2.0)),
    ("zscore 1:1", "zscore", (1.0, 1.0)), ("zscore 2:1", "zscore", (2.0, 1.0)), ("zscore 3:1", "zscore", (3.0, 1.0)),
    ("zscore 1:2", "zscore", (1.0, 2.0)), ("zscore 3:2", "zscore", (3.0, 2.0)),
]
WIDE_WINDOW = 100  # the "w100" variants fuse windows of this many documents per retriever
# variant -> the search.fusion_profiles spec that serves it (the variants SearchService can run; `--save` picks one)
SPECS = {**{f"hybrid {name}": f"{rule} {w[0]:g}:{w[1]:g}" for name, rule, w in FUSION_VARIANTS},
         **{f"hybrid {name}, w{WIDE_WINDOW}": f"{rule} {w[0]:g}:{w[1]:g} w{WIDE_WINDOW}"
            for name, rule, w in FUSION_VARIANTS}}


def retrieve(service: Any, queries: dict[str, str], candidates: int) -> dict[str, tuple[Chunks, Chunks]]:
    """Per query: the dense top `candidates` chunks and every BM25-scored chunk."""
    from tqdm import tqdm

    out = {}
    for qid, text in tqdm(queries.items(), desc="retrieve", unit="query", dynamic_ncols=True):
        qv = service.embedder.embed_queries([text])[0]
        scores, ids = service.index.search(qv, candidates)
        match = service.keyword_query(text).fts()
        lexical = service.store.keyword_scored(match, None, service.bm25_weights()) if match else \
            (np.zeros(0, dtype=np.int64), np.zeros(0))
        out[qid] = ((np.asarray(ids, dtype=np.int64), np.asarray(scores, dtype=np.float64)), lexical)
    return out


def study(service: Any, data: Any, settings: Settings) -> list[dict[str, Any]]:
    """Rows of (variant, mean NDCG@10, MAP@100, p against dense, BM25 and the configured hybrid) for one eval set."""
    snap = service.snapshot()
    ext = {i: info.external_id for i, info in service.store.doc_infos(snap.doc_ids.tolist()).items()}
    ext_of_row = [ext.get(int(d), "") for d in snap.doc_ids]
    _, opening = np.unique(snap.chunk_doc, return_index=True)  # chunk ids ascend, so each document's first
    first_ids = set(snap.chunk_ids[opening].tolist())
    s = settings.search
    window = max(s.result_window, 1)
    # enough dense chunks for WIDE_WINDOW documents of long decisions (tens of chunks each)
    runs = retrieve(service, data.queries, max(s.candidates, 20 * WIDE_WINDOW))

    memo: dict[tuple[str, int, str], list[tuple[int, int, float]]] = {}

    def ranked(qid: str, side: int, rule: str) -> list[tuple[int, int, float]]:
        """Documents of one retriever (0 dense, 1 BM25) for a query, by one chunk-to-document rule."""
        if (qid, side, rule) not in memo:
            ids, scores = runs[qid][side]
            first = np.fromiter((i in first_ids for i in ids.tolist()), dtype=bool, count=len(ids))
            memo[qid, side, rule] = _aggregate(ids, scores, snap.chunk_doc_rows(ids), first, rule)
        return memo[qid, side, rule]

    def run(make: Callable[[str], list[tuple[int, int, float]]]) -> dict[str, list[str]]:
        return {qid: [ext_of_row[d] for d, _, _ in make(qid)][:settings.eval.depth] for qid in data.queries}

    def fused(qid: str, rule: str, weights: tuple[float, float], agg: str = "max",
              size: int = window) -> list[tuple[int, int, float]]:
        return fusion.fuse([ranked(qid, 0, agg)[:size], ranked(qid, 1, agg)[:size]], weights, rule, s.rrf_k)

    variants: dict[str, dict[str, list[str]]] = {}
    for rule in AGGREGATIONS:
        variants[f"dense {rule}"] = run(lambda q, rule=rule: ranked(q, 0, rule)[:window])
        variants[f"bm25 {rule}"] = run(lambda q, rule=rule: ranked(q, 1, rule))
    # what the service runs for an unfiltered query of this index: its fusion profile (searchd/profiles.py)
    choice = service.profiles.choose(settings, snap, np.ones(len(snap.doc_ids), dtype=bool))
    variants[CONFIGURED] = run(lambda q: fusion.fuse_windows(
        ranked(q, 0, "max")[:choice.depth], ranked(q, 1, "max")[:choice.depth], choice.rule,
        (choice.dense_weight, choice.keyword_weight), window, s.rrf_k))
    for name, rule, weights in FUSION_VARIANTS:
        variants[f"hybrid {name}"] = run(lambda q, rule=rule, w=weights: fused(q, rule, w))
        variants[f"hybrid {name}, w{WIDE_WINDOW}"] = run(
            lambda q, rule=rule, w=weights: fused(q, rule, w, size=WIDE_WINDOW))
    for agg in ("sum2", "first"):
        variants[f"hybrid rrf 1:1, {agg}"] = run(lambda q, agg=agg: fused(q, "rrf", (1.0, 1.0), agg))
    cut = Cutoffs(accuracy=tuple(settings.eval.k_values), precision_recall=tuple(settings.eval.k_values))
    scored = {name: score_run(r, data.qrels, cut).per_query for name, r in variants.items()}
    ndcg = {name: {q: m["ndcg@10"] for q, m in pq.items()} for name, pq in scored.items()}
    maps = {name: {q: m["map@100"] for q, m in pq.items()} for name, pq in scored.items()}
    fused_names = [n for n in variants if n in SPECS]  # the choice must be one the service can run
    for folds, label in ((0, "leave-one-out"), (2, "2-fold")):
        cv = cross_validate({n: ndcg[n] for n in fused_names}, folds, settings.eval.sample_seed)
        name = f"cross-validated choice ({label})"
        ndcg[name], maps[name] = cv.scores, {q: maps[v][q] for q, v in cv.chosen.items()}
        ndcg[name + " chosen"] = {}  # a note row: which variants the folds chose
        maps[name + " chosen"] = {"counts": cv.counts()}  # type: ignore[dict-item]
    rows = _rows(ndcg, maps, settings)
    best = best_variant({n: ndcg[n] for n in fused_names})
    rows.append({"variant": SAVE_ROW, "save": {
        "spec": SPECS[best], "variant": best, "queries": len(data.queries),
        "ndcg@10": float(np.mean(list(ndcg[best].values()))),
        "loo_ndcg@10": float(np.mean(list(ndcg["cross-validated choice (leave-one-out)"].values()))),
        "bm25_ndcg@10": float(np.mean(list(ndcg["bm25 max"].values()))),
        "configured": f"{choice.profile}: {choice.rule} {choice.dense_weight:g}:{choice.keyword_weight:g} w{choice.depth}"}})
    return rows


SAVE_ROW = "choice for new queries"


CONFIGURED = "hybrid configured (search.fusion, dense_weight:keyword_weight)"
BASES = ("dense max", "bm25 max", CONFIGURED)


def _rows(ndcg: dict[str, dict[str, float]], maps: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """A row per variant: means and the paired NDCG@10 and MAP@100 tests against each of BASES."""
    ev = settings.eval
    rows = []
    for name, per_query in ndcg.items():
        if name.endswith(" chosen"):
            rows.append({"variant": name, "chosen": maps[name]["counts"]})
            continue
        row: dict[str, Any] = {"variant": name, "ndcg@10": float(np.mean(list(per_query.values()))),
                               "map@100": float(np.mean(list(maps[name].values())))}
        for base in BASES:
            for metric, table in (("ndcg@10", ndcg), ("map@100", maps)):
                c = compare(name, table[name], base, table[base], metric, ev.permutations, ev.sample_seed)
                row[f"{metric} vs {base}"] = (c.mean_a - c.mean_b, c.wins, c.losses, c.p_randomisation)
        rows.append(row)
    return rows


def markdown(name: str, rows: list[dict[str, Any]]) -> str:
    """The study's table: one row per variant (NDCG@10 tests in the table, MAP@100's against BM25 beside)."""
    lines = [f"### {name}", "", "| variant | NDCG@10 | MAP@100 | vs dense (diff, W/L, p) | vs bm25 (diff, W/L, p) "
             "| vs configured hybrid (diff, W/L, p) | MAP@100 vs bm25 |", "|---|---:|---:|---|---|---|---|"]
    for r in rows:
        if "save" in r:
            sv = r["save"]
            lines += ["", f"Best on all {sv['queries']} queries, what `--save` records: {sv['variant']} "
                      f"(spec \"{sv['spec']}\", NDCG@10 {sv['ndcg@10']:.4f}; leave-one-out estimate "
                      f"{sv['loo_ndcg@10']:.4f}; BM25 {sv['bm25_ndcg@10']:.4f}). The configured row ran "
                      f"{sv['configured']}."]
            continue
        if "chosen" in r:
            picks = ", ".join(f"{v} x{n}" for v, n in r["chosen"])
            lines.append(f"| {r['variant']} | | | {picks} | | | |")
            continue
        tests = [r[f"ndcg@10 vs {b}"] for b in BASES] + [r["map@100 vs bm25 max"]]
        cells = [f"{d:+.4f}, {w}/{l}, p={p:.3g}" for d, w, l, p in tests]
        lines.append(f"| {r['variant']} | {r['ndcg@10']:.4f} | {r['map@100']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_study(dataset: Path, split: str, settings: Settings, fold: str | None, max_queries: int | None,
              save: bool = False, save_to: Path | None = None, collections: tuple[str, ...] = ()) -> str:
    """Load the eval set and its index (built or reused as `searchd eval` does) and return the table.

    `save`: record the choice in the studied index's fusion.json (for its collections), where SearchService
    (and so `searchd eval`) picks it up; `save_to`: in that index directory instead, for `collections`
    (default: the studied index's), e.g. the served index holding the user's own collection.
    """
    from searchd.eval.evaluate import Services, embedder_dirs, load_eval_data
    from searchd.profiles import save_learned

    data = load_eval_data(dataset, split, settings, fold, max_queries)
    services = Services(dataset, data.name, settings)
    try:
        service = services.get(embedder_dirs(settings)["configured"])
        label = f"{data.name} ({split}{', fold ' + fold if fold else ''}, {len(data.queries)} queries)"
        rows = study(service, data, settings)
        out = markdown(label, rows)
        if save or save_to is not None:
            entry = {**next(r["save"] for r in rows if "save" in r), "dataset": str(dataset), "split": split,
                     "fold": fold, "learned_on": label}
            names = collections or tuple(service.snapshot().meta["collection"].values)
            for target in ([service.settings.index.dir] if save else []) + ([save_to] if save_to else []):
                path = save_learned(Path(target), names, entry)
                out += f"\n\nSaved \"{entry['spec']}\" for {', '.join(names)} in {path}"
        return out
    finally:
        services.close()


def best_variant(scores: dict[str, dict[str, float]]) -> str:
    """The variant with the highest mean over every query (the one leave-one-out would pick for a new query)."""
    names = list(scores)
    return names[int(np.argmax([np.mean(list(scores[n].values())) for n in names]))]
