"""What a search returns. Plain dataclasses that serialise to the JSON API unchanged.

This is the contract between searchd (which fills them), the web front end (which renders
them) and evaluation (which scores them). All offsets are character offsets.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Highlight:
    start: int  # offset into the text it belongs to (Snippet.text or DocumentView.text)
    end: int
    kind: str  # "term" (query match) | "entity"
    label: str | None = None  # entity label, e.g. Disease
    negation: str | None = None  # affirmed | negated | hypothetical (entities only)
    norm_id: str | None = None  # facet value id (entities only)


@dataclass(frozen=True)
class Snippet:
    text: str  # the best passage (a chunk, possibly trimmed)
    start: int  # where it starts in the document text
    highlights: list[Highlight] = field(default_factory=list)  # offsets into Snippet.text


@dataclass(frozen=True)
class EntityBadge:
    label: str
    norm_id: str
    name: str
    count: int  # affirmed mentions in the document


@dataclass(frozen=True)
class Hit:
    doc_id: int  # store id, used in /documents/<id>
    external_id: str  # id in the source corpus (what qrels use)
    collection: str
    title: str
    score: float
    rank: int  # 1-based, over the whole result list
    meta: dict[str, Any]  # source, doc_type, court, date, year
    snippet: Snippet
    entities: list[EntityBadge] = field(default_factory=list)
    # 1 / log2(rank + 1), the weight NDCG gives the rank: 1.0, 0.63, 0.5, ... 0.29 at rank 10. It
    # reads the same in every mode, where raw scores (RRF, cosine, BM25) are on unlike scales.
    relevance: float | None = None

    def __post_init__(self) -> None:
        if self.relevance is None:
            object.__setattr__(self, "relevance", rank_relevance(self.rank))


def rank_relevance(rank: int) -> float:
    """The readable relevance of a 1-based rank: 1 / log2(rank + 1), rounded to 3 places."""
    return round(1 / math.log2(max(1, rank) + 1), 3)


@dataclass(frozen=True)
class FacetValue:
    id: str  # the value a filter takes (normalised id, e.g. MESH:D013313, or text:<surface>)
    name: str  # readable name
    count: int  # documents in the whole filtered result set with this value


@dataclass(frozen=True)
class Facet:
    name: str  # request parameter name: disease, drug, doc_type, court, year, collection, source
    label: str  # human label: Disease, Drug, Document type, ...
    values: list[FacetValue]
    truncated: bool  # more values exist than were returned
    available: bool = True  # False when computing it ran out of time ("facet unavailable")


@dataclass(frozen=True)
class ActiveFilter:
    name: str  # parameter name, e.g. disease
    value: str  # raw value, e.g. MESH:D013313
    label: str  # readable, e.g. "Disease: PTSD"


@dataclass(frozen=True)
class SearchResult:
    query: str
    mode: str
    k: int
    offset: int
    total: int  # documents in the result set: keyword matches (keyword mode), else those the query retrieves
    hits: list[Hit]
    facets: list[Facet]
    filters: list[ActiveFilter]
    timings: dict[str, float]  # milliseconds per stage, and "total"
    exact: bool = True  # False when an ANN index served the query (recall < 1 possible)
    # hybrid: {profile, rule, dense_weight, keyword_weight, depth, reason} (searchd/profiles.py); else None
    fusion: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DocumentView:
    doc_id: int
    external_id: str
    collection: str
    title: str
    text: str
    meta: dict[str, Any]
    highlights: list[Highlight]  # every entity mention, offsets into text
    entities: list[EntityBadge]  # summary by type, affirmed counts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
