"""Paired comparison of systems from two eval reports: a setting changed between runs, same queries.

`searchd eval` compares the systems of one run. A setting that changes a system itself (BM25
column weights, the fusion rule) needs two runs; their per_query.jsonl files hold each query's
scores, and the same paired tests as report.py apply to the queries both runs scored.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from indexer.errors import ReaderError, choices
from searchd.eval.report import Comparison, compare


def per_query(report_dir: Path, system: str, metric: str) -> dict[str, float]:
    """query id -> `metric` of `system` in a report folder's per_query.jsonl."""
    path = Path(report_dir) / "per_query.jsonl"
    if not path.is_file():
        raise ReaderError("no per_query.jsonl: give a folder written by `searchd eval`", str(report_dir))
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    systems = sorted({r["system"] for r in rows})
    if system not in systems:
        raise ReaderError(f"no system {system!r} in this report; it has {choices(systems)}", str(path))
    return {r["query_id"]: float(r[metric]) for r in rows if r["system"] == system}


def compare_runs(a: tuple[Path, str], b: tuple[Path, str], metrics: Sequence[str], permutations: int,
                 seed: int) -> list[Comparison]:
    """Paired tests of (report folder, system) a against b on each metric."""
    out = []
    for metric in metrics:
        x, y = per_query(a[0], a[1], metric), per_query(b[0], b[1], metric)
        out.append(compare(f"{a[0].name}:{a[1]}", x, f"{b[0].name}:{b[1]}", y, metric, permutations, seed))
    return out


def markdown(comparisons: Sequence[Comparison]) -> str:
    """One table row per comparison."""
    lines = ["| metric | A | B | n | mean A | mean B | A wins | B wins | ties | p (randomisation) | p (Wilcoxon) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in comparisons:
        wil = "-" if c.p_wilcoxon is None else f"{c.p_wilcoxon:.3g}"
        lines.append(f"| {c.metric} | {c.a} | {c.b} | {c.n} | {c.mean_a:.4f} | {c.mean_b:.4f} | {c.wins} | "
                     f"{c.losses} | {c.ties} | {c.p_randomisation:.3g} | {wil} |")
    return "\n".join(lines)
