"""The `searchd eval` reports under eval.output_dir, read for the evaluation pages.

A report is a folder holding results.json (written by searchd/eval/report.py), usually with
per_query.jsonl and metrics.png beside it; folders nest (a sweep writes <set>/<variant>/). A
report is addressed by its folder's path relative to the output directory, and only folders
found by `list_reports` are ever opened, so a request cannot name a file outside it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS, PER_QUERY, PLOT = "results.json", "per_query.jsonl", "metrics.png"
MAX_DEPTH = 4  # folder levels searched below the output directory
HEADLINE = ("ndcg@10", "mrr@10", "map@100", "recall@10", "accuracy@1")


@dataclass
class ReportInfo:
    """One report folder and the summary the index page shows."""

    id: str  # folder relative to the output directory, with '/'
    path: Path
    dataset: str
    split: str
    fold: str | None
    queries: int
    documents: int
    systems: list[str]
    best: tuple[str, float] | None  # system with the highest NDCG@10
    seconds: float | None
    written: str  # UTC time of results.json
    has_plot: bool


@dataclass
class Outcome:
    """One query where two systems differ on a metric."""

    query_id: str
    text: str | None
    a: float
    b: float

    @property
    def delta(self) -> float:
        return self.b - self.a


@dataclass
class Report:
    """A whole report: summary, systems side by side, comparisons, per-query scores, query texts."""

    info: ReportInfo
    results: dict[str, Any]
    per_query: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # system -> query -> metric
    texts: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> list[str]:
        """Metric names of the systems table, the headline ones first."""
        names: list[str] = []
        for summary in self.results.get("systems", {}).values():
            names += [m for m in summary.get("mean", {}) if m not in names]
        return [m for m in HEADLINE if m in names] + [m for m in names if m not in HEADLINE]

    def outcomes(self, a: str, b: str, metric: str) -> tuple[list[Outcome], list[Outcome], int]:
        """(queries where b beats a, queries where a beats b, ties), largest differences first."""
        qa, qb = self.per_query.get(a, {}), self.per_query.get(b, {})
        wins, losses, ties = [], [], 0
        for qid in sorted(qa.keys() & qb.keys()):
            sa, sb = qa[qid].get(metric), qb[qid].get(metric)
            if sa is None or sb is None:
                continue
            row = Outcome(qid, self.texts.get(qid), float(sa), float(sb))
            if abs(row.delta) < 1e-12:
                ties += 1
            else:
                (wins if row.delta > 0 else losses).append(row)
        wins.sort(key=lambda o: (-o.delta, o.query_id))
        losses.sort(key=lambda o: (o.delta, o.query_id))
        return wins, losses, ties


def list_reports(root: Path) -> list[ReportInfo]:
    """Every report folder under `root`, newest first; an unreadable results.json is skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for results in sorted(root.rglob(RESULTS)):
        folder = results.parent
        if len(folder.relative_to(root).parts) > MAX_DEPTH or folder.is_symlink():
            continue
        info = _info(root, folder)
        if info is not None:
            found.append(info)
    return sorted(found, key=lambda r: (r.written, r.id), reverse=True)


def load_report(root: Path, report_id: str) -> Report | None:
    """The report with this id (as `list_reports` names it), or None."""
    info = next((r for r in list_reports(root) if r.id == report_id), None)
    if info is None:
        return None
    results = _read_json(info.path / RESULTS) or {}
    return Report(info, results, _per_query(info.path / PER_QUERY), _texts(results))


def _info(root: Path, folder: Path) -> ReportInfo | None:
    results = _read_json(folder / RESULTS)
    if not isinstance(results, dict) or not isinstance(results.get("systems"), dict):
        return None
    data = results.get("dataset") or {}
    systems = results["systems"]
    scored = [(n, float(s["mean"]["ndcg@10"])) for n, s in systems.items() if "ndcg@10" in s.get("mean", {})]
    written = datetime.fromtimestamp((folder / RESULTS).stat().st_mtime, timezone.utc)
    return ReportInfo(folder.relative_to(root).as_posix(), folder, str(data.get("name", folder.name)),
                      str(data.get("split", "")), data.get("fold"), int(data.get("queries", 0) or 0),
                      int(data.get("documents", 0) or 0), list(systems), max(scored, key=lambda x: x[1], default=None),
                      results.get("seconds"), written.strftime("%Y-%m-%d %H:%M UTC"), (folder / PLOT).is_file())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _per_query(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """system -> query id -> metric -> score, from per_query.jsonl (bad lines skipped)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "system" in row and "query_id" in row:
            system, qid = str(row.pop("system")), str(row.pop("query_id"))
            out.setdefault(system, {})[qid] = {k: v for k, v in row.items() if isinstance(v, (int, float))}
    return out


def _texts(results: dict[str, Any]) -> dict[str, str]:
    """Query id -> the text searched: recorded in the report, else read from the dataset's queries.jsonl."""
    recorded = results.get("query_texts")
    if isinstance(recorded, dict):
        return {str(k): str(v) for k, v in recorded.items()}
    path = Path(str((results.get("dataset") or {}).get("path", "")))
    if not (path / "queries.jsonl").is_file():
        return {}
    from indexer.errors import MedlexError
    from indexer.readers.beir import load_queries

    try:
        return load_queries(path)
    except (MedlexError, OSError, ValueError):  # rewritten since: the page shows ids without links
        return {}
