"""Paired tests between systems of different `searchd eval` runs on the same queries (e.g. a setting changed).

`searchd eval` compares the systems of one run; a setting such as search.long_query_pooling
applies to a whole run, so its effect is a comparison across runs: the per-query scores of
each run's per_query.jsonl, paired by query id, through the same randomisation and Wilcoxon
tests (searchd/eval/report.py).
"""
from __future__ import annotations

import json
from pathlib import Path

from indexer.errors import ReaderError
from searchd.eval.report import Comparison, compare_all


def load_scores(run_dir: Path, system: str) -> dict[str, dict[str, float]]:
    """query id -> metric -> score of one system in a run's per_query.jsonl."""
    file = run_dir / "per_query.jsonl"
    if not file.is_file():
        raise ReaderError("no per_query.jsonl: not a `searchd eval` report folder", str(run_dir))
    rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    found = {r["query_id"]: {k: v for k, v in r.items() if k not in ("system", "query_id")}
             for r in rows if r["system"] == system}
    if not found:
        systems = sorted({r["system"] for r in rows})
        raise ReaderError(f"no system {system!r} in this run; it has {', '.join(systems)}", str(run_dir))
    return found


def compare_runs(runs: dict[str, tuple[Path, str]], metrics: list[str], permutations: int,
                 seed: int) -> list[Comparison]:
    """label -> (run folder, system): every pair compared on the queries all runs scored."""
    scores = {label: load_scores(d, system) for label, (d, system) in runs.items()}
    shared = set.intersection(*(set(s) for s in scores.values()))
    if not shared:
        raise ReaderError("the runs share no query", ", ".join(str(d) for d, _ in runs.values()))
    return compare_all({label: {q: s[q] for q in sorted(shared)} for label, s in scores.items()},
                       metrics, permutations, seed)
