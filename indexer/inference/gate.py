"""The quality gate and the choice `auto` makes (pure functions), and the record they read.

A variant passes when none of its metrics falls more than `tolerance` below torch fp32's on the
same evaluation (NDCG@10 on each retrieval dev set for the embedder, micro F1 on BC5CDR dev for
the tagger). `auto` takes the fastest measured variant that passes: by throughput for builds and
tagging, by single-query latency (p50) for the query encoder searchd loads. The measurements are kept
in a record (gate.json beside the model's exports) so that loading a model never measures anything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from indexer.inference import TORCH, Variant

TOLERANCE = 0.005
RECORD = "gate.json"


@dataclass(frozen=True)
class GateResult:
    """Whether a variant kept the reference's quality, and its largest drop."""

    passed: bool
    worst_metric: str | None = None
    worst_drop: float = 0.0

    def describe(self) -> str:
        """'passed (worst: ndcg@10 on scifact -0.0012)' or 'failed (...)'."""
        verdict = "passed" if self.passed else "failed"
        return f"{verdict} (worst: {self.worst_metric} {-self.worst_drop:+.4f})" if self.worst_metric else verdict


def gate(reference: Mapping[str, float], candidate: Mapping[str, float], tolerance: float = TOLERANCE) -> GateResult:
    """Pass when every reference metric drops by at most `tolerance`; a metric the candidate lacks fails."""
    if not reference:
        return GateResult(False, "no reference metrics", float("inf"))
    drops = {k: (v - candidate[k]) if k in candidate else float("inf") for k, v in reference.items()}
    worst = max(drops, key=lambda k: drops[k])
    return GateResult(drops[worst] <= tolerance + 1e-12, worst, drops[worst])


@dataclass(frozen=True)
class Measured:
    """One variant's measured quality and speed (items per second, chunks or tokens; one query's p50 in ms)."""

    variant: Variant
    metrics: dict[str, float] = field(default_factory=dict)
    speed: float = 0.0
    query_ms: float | None = None  # embedder only


def choose(reference: Mapping[str, float], measured: Sequence[Measured], allowed: Iterable[Variant],
           tolerance: float = TOLERANCE, purpose: str = "build") -> tuple[Variant, str] | None:
    """The fastest allowed variant that passes the gate, with the reason; None when none was measured.

    `purpose` "build": the highest throughput; "query": the lowest query p50 among those that recorded one
    (throughput when none did)."""
    allowed = set(allowed)
    speeds = {m.variant: m.speed for m in measured}
    passing = []
    for m in measured:
        result = GateResult(True) if m.variant == TORCH else gate(reference, m.metrics, tolerance)
        if m.variant in allowed and result.passed:
            passing.append((m, result))
    if not passing:
        return None
    failed = sorted(str(m.variant) for m in measured if m.variant in allowed and m.variant != TORCH
                    and not gate(reference, m.metrics, tolerance).passed)
    rest = f"; failed the gate: {', '.join(failed)}" if failed else ""
    timed = [p for p in passing if p[0].query_ms is not None]
    if purpose == "query" and timed:
        m, result = min(timed, key=lambda p: (p[0].query_ms, p[0].variant != TORCH))
        base = next((t.query_ms for t in measured if t.variant == TORCH and t.query_ms), None)
        ratio = f", torch fp32 {base:.1f} ms" if base else ""
        return m.variant, (f"lowest query latency that passes the quality gate here ({m.query_ms:.1f} ms p50{ratio}; "
                           f"gate {result.describe()}){rest}")
    m, result = max(passing, key=lambda p: (p[0].speed, p[0].variant == TORCH))
    base = speeds.get(TORCH)
    ratio = f", {m.speed / base:.2f}x torch fp32" if base else ""
    return m.variant, f"fastest that passes the quality gate here ({m.speed:.1f}/s{ratio}; gate {result.describe()}){rest}"


def read_record(folder: Path) -> dict[str, Any] | None:
    """The gate record of a model's export folder, or None."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def write_record(folder: Path, record: dict[str, Any]) -> Path:
    """Write gate.json (write aside, then rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    tmp.replace(folder / RECORD)
    return folder / RECORD


def measured_from(record: Mapping[str, Any]) -> tuple[dict[str, float], list[Measured]]:
    """(reference metrics, measured variants) from a record's JSON."""
    rows = [Measured(Variant.parse(r["variant"]), dict(r.get("metrics", {})), float(r.get("speed", 0.0)),
                     float(r["query_p50_ms"]) if r.get("query_p50_ms") is not None else None)
            for r in record.get("measured", [])]
    reference = next((m.metrics for m in rows if m.variant == TORCH), {})
    return reference, rows
