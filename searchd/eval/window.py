"""How the size of the dense/hybrid result set (search.result_window) shapes the facets a query shows.

For each query, mode and window it runs SearchService.search with that window and reports the
size of the result set, the first Disease (or other) facet values and where the value the query
is about ranks among them. A window that is too large counts the corpus instead of the query; one
that is too small leaves relevant documents out of the counts.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from searchd.service import SearchService

# (query, facet, a substring of the value the query is about)
QUERIES = (
    ("veteran denied service connection for PTSD stressor not verified", "disease", "stress disorder"),
    ("physician prescribed opioids to a patient who overdosed", "drug", "opioid"),
    ("warfarin bleeding after surgery, doctor failed to monitor", "drug", "warfarin"),
    ("medical board complaint for gross negligence in surgery", "disease", ""),
)
WINDOWS = (10, 20, 50, 100, 200, 500)


def expected_rank(values: Sequence[str], expected: str) -> str:
    """1-based rank of the first facet value containing `expected`, or '-' when absent or not asked."""
    if not expected:
        return ""
    for rank, name in enumerate(values, 1):
        if expected in name.lower():
            return str(rank)
    return "-"


def study(service: SearchService, windows: Sequence[int] = WINDOWS, modes: Sequence[str] = ("hybrid", "dense"),
          queries: Sequence[tuple[str, str, str]] = QUERIES) -> list[tuple[str, ...]]:
    """Rows of (query, mode, window, result-set size, rank of the expected value, top facet values)."""
    from searchd.query import Query

    rows = []
    settings = service.settings
    documents = service.store.counts()["documents"]
    try:
        for window in windows:
            service.settings = settings.replace(search=dataclasses.replace(settings.search, result_window=window))
            for q, facet, expected in queries:
                for mode in modes:
                    result = service.search(Query(q, mode))
                    values = [v.name for f in result.facets if f.name == facet for v in f.values]
                    top = ", ".join(f"{v.name} {v.count}" for f in result.facets if f.name == facet
                                    for v in f.values[:3])
                    rows.append((q[:40], mode, str(window), f"{result.total}/{documents}",
                                 expected_rank([v.lower() for v in values], expected), f"{facet}: {top}"))
    finally:
        service.settings = settings
    return rows


def markdown(rows: Sequence[tuple[str, ...]]) -> str:
    """The study as a Markdown table."""
    head = ("query", "mode", "window", "result set / corpus", "rank of the query's value", "top facet values")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
