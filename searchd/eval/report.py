"""Paired significance tests between systems, and the report files: Markdown, JSON, per-query scores, a bar chart."""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

TABLE_METRICS = ("accuracy@1", "accuracy@3", "accuracy@5", "accuracy@10", "precision@1", "precision@10",
                 "recall@1", "recall@3", "recall@5", "recall@10", "ndcg@5", "ndcg@10", "mrr@10", "map@100")
PLOT_METRICS = ("accuracy@1", "accuracy@10", "recall@10", "ndcg@10", "mrr@10", "map@100")


@dataclass(frozen=True)
class Comparison:
    """Two systems on one metric over the same queries: means, per-query wins and losses, p-values."""

    a: str
    b: str
    metric: str
    n: int
    mean_a: float
    mean_b: float
    wins: int  # queries where a scores higher than b
    losses: int  # queries where b scores higher
    ties: int
    p_randomisation: float  # two-sided paired randomisation (sign-flip) test of the mean difference
    p_wilcoxon: float | None  # two-sided Wilcoxon signed-rank; None when every pair ties


def paired_test(a: Sequence[float], b: Sequence[float], permutations: int, seed: int) -> tuple[float, float | None]:
    """p-values of the paired randomisation test and the Wilcoxon signed-rank test on a - b."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or np.allclose(x, y):
        return 1.0, None
    # permutation_type="samples" swaps a and b within each query: the paired randomisation test
    result = stats.permutation_test((x, y), lambda u, v, axis: np.mean(u - v, axis=axis), vectorized=True,
                                    permutation_type="samples", n_resamples=permutations, rng=seed)
    try:
        wilcoxon = float(stats.wilcoxon(x, y, zero_method="wilcox").pvalue)
    except ValueError:  # fewer non-zero differences than the test needs
        wilcoxon = None
    return float(result.pvalue), wilcoxon


def compare(name_a: str, a: Mapping[str, float], name_b: str, b: Mapping[str, float], metric: str,
            permutations: int = 10_000, seed: int = 42) -> Comparison:
    """Compare two systems' per-query scores on the queries both have."""
    qids = sorted(set(a) & set(b))
    x, y = [a[q] for q in qids], [b[q] for q in qids]
    diffs = [u - v for u, v in zip(x, y)]
    p_rand, p_wil = paired_test(x, y, permutations, seed)
    return Comparison(name_a, name_b, metric, len(qids), float(np.mean(x)) if x else 0.0,
                      float(np.mean(y)) if y else 0.0, sum(d > 1e-12 for d in diffs), sum(d < -1e-12 for d in diffs),
                      sum(abs(d) <= 1e-12 for d in diffs), p_rand, p_wil)


def compare_all(per_query: Mapping[str, Mapping[str, Mapping[str, float]]], metrics: Sequence[str],
                permutations: int, seed: int) -> list[Comparison]:
    """Every pair of systems on every listed metric (per_query: system -> query -> metric -> score)."""
    out = []
    for metric in metrics:
        for sa, sb in itertools.combinations(per_query, 2):
            out.append(compare(sa, {q: m[metric] for q, m in per_query[sa].items()},
                               sb, {q: m[metric] for q, m in per_query[sb].items()}, metric, permutations, seed))
    return out


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def markdown(report: Mapping[str, Any]) -> str:
    """The human report: results table, significance, ANN quality, timings."""
    d = report["dataset"]
    fold = f", fold {d['fold']} (seed {d['fold_seed']}, {d['dev_fraction']:.0%} of judged queries)" if d.get("fold") else ""
    sample = (f"; a seeded sample (seed {d['sample_seed']}) of {d['judged_queries']} judged queries"
              if d["queries"] < d["judged_queries"] else "")
    lines = [f"# Retrieval evaluation: {d['name']} ({d['split']}{fold})", "",
             f"{d['queries']} queries{sample}; corpus {d['documents']} documents. "
             f"Every query went through SearchService.search with k={report['depth']}. "
             f"Total eval time {report['seconds']:.1f} s on {report['device']}.", ""]
    systems = report["systems"]
    cols = [m for m in TABLE_METRICS if any(m in s["mean"] for s in systems.values())]
    lines += ["| system | mode | embedder | " + " | ".join(cols) + " |",
              "|---|---|---|" + "---:|" * len(cols)]
    for name, s in systems.items():
        lines.append(f"| {name} | {s['mode']} | {s['embedder_label']} | "
                     + " | ".join(f"{s['mean'].get(m, float('nan')):.4f}" for m in cols) + " |")
    for note in report.get("notes", []):
        lines += ["", f"Note: {note}"]
    lines += _significance_lines(report) + _ann_lines(report) + _timing_lines(report)
    return "\n".join(lines) + "\n"


def _significance_lines(report: Mapping[str, Any]) -> list[str]:
    comps = report.get("comparisons", [])
    if not comps:
        return []
    lines = ["", f"## Paired significance ({report['permutations']} permutations, seed {report['seed']})", "",
             "| metric | A | B | mean A | mean B | A wins | B wins | ties | p (randomisation) | p (Wilcoxon) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in comps:
        lines.append(f"| {c['metric']} | {c['a']} | {c['b']} | {c['mean_a']:.4f} | {c['mean_b']:.4f} | {c['wins']} | "
                     f"{c['losses']} | {c['ties']} | {_fmt_p(c['p_randomisation'])} | {_fmt_p(c['p_wilcoxon'])} |")
    return lines


def _ann_lines(report: Mapping[str, Any]) -> list[str]:
    ann = report.get("ann")
    if not ann:
        return []
    return ["", "## ANN quality", "",
            f"Index type `{ann['index_type']}` ({ann['description']}) against exact inner-product search on the "
            f"same {ann['queries']} query vectors: recall@{ann['k']} = {ann['recall']:.4f}"
            + (" (the index is exact)" if ann["exact"] else "") + "."]


def _timing_lines(report: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Timings", "", "| system | search s | mean ms/query | p95 ms | errors | entity-filtered queries |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in report["systems"].items():
        lines.append(f"| {name} | {s['seconds']:.1f} | {s['latency_ms_mean']:.1f} | {s['latency_ms_p95']:.1f} | "
                     f"{s['errors']} | {s['entity_filtered_queries']} |")
    lines.append("")
    for name, s in report["systems"].items():
        if s.get("fusion"):  # which fusion profile each hybrid query ran with (searchd/profiles.py)
            lines.append(f"- {name} fused with " + "; ".join(f"{k} ({n} queries)" for k, n in s["fusion"].items()))
    for info in report.get("indexes", {}).values():
        built = ("reused" if info.get("reused") else
                 f"built in {info.get('build_seconds', 0):.1f} s ({info.get('documents')} documents, "
                 f"{info.get('chunks')} chunks; {info.get('encoded')} encoded, {info.get('cache_hits')} from the cache)")
        lines.append(f"- index `{info['dir']}` (embedder checksum {info['checksum']}): {built}")
    return lines


def bar_chart(report: Mapping[str, Any], path: Path) -> None:
    """Grouped bars: one group per metric, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    systems = report["systems"]
    metrics = [m for m in PLOT_METRICS if any(m in s["mean"] for s in systems.values())]
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(1.6 * len(metrics) + 2, 4.5))
    for i, (name, s) in enumerate(systems.items()):
        xs = np.arange(len(metrics)) + (i - (len(systems) - 1) / 2) * width
        bars = ax.bar(xs, [s["mean"].get(m, 0.0) for m in metrics], width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(np.arange(len(metrics)), metrics)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    d = report["dataset"]
    ax.set_title(f"{d['name']} ({d['split']}{', fold ' + d['fold'] if d.get('fold') else ''}), "
                 f"{d['queries']} queries")
    ax.legend(fontsize=8, ncols=min(5, len(systems)), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict[str, Any], per_query: Mapping[str, Mapping[str, Mapping[str, float]]],
                 rankings: Mapping[str, Mapping[str, Sequence[str]]], out_dir: Path) -> dict[str, Path]:
    """report.md, results.json, per_query.jsonl, runs/<system>.trec and metrics.png in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "runs").mkdir(exist_ok=True)
    paths = {"markdown": out_dir / "report.md", "json": out_dir / "results.json",
             "per_query": out_dir / "per_query.jsonl", "plot": out_dir / "metrics.png"}
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    paths["json"].write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    with open(paths["per_query"], "w", encoding="utf-8") as handle:
        for system, queries in per_query.items():
            for qid, scores in queries.items():
                handle.write(json.dumps({"system": system, "query_id": qid, **scores}) + "\n")
    for system, runs in rankings.items():
        with open(out_dir / "runs" / f"{system}.trec", "w", encoding="utf-8") as handle:
            for qid, docs in runs.items():  # TREC run format, for trec_eval / ir-measures
                handle.writelines(f"{qid} Q0 {doc} {rank} {len(docs) - rank + 1} {system}\n"
                                  for rank, doc in enumerate(docs, 1))
    bar_chart(report, paths["plot"])
    return paths


def comparisons_as_dicts(comps: Sequence[Comparison]) -> list[dict[str, Any]]:
    """Comparisons in JSON-ready form."""
    return [asdict(c) for c in comps]
