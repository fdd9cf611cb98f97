"""DocFilter: which documents a search may return, as data.

The rules are applied in one place, StoreSnapshot.mask (snapshot.py), over the in-memory arrays
of the store. Keyword search takes the documents that mask allows, so dense, keyword and hybrid
search and the facet counts all filter by the same code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

METADATA_FILTERS = ("collection", "source", "doc_type", "court")


@dataclass(frozen=True)
class DocFilter:
    """AND across keys, OR within the values of one key.

    An entity value matches a mention of that label by its norm id, by its lower-cased surface
    form (stored as `text:<form>` when the mention has no id), or by its readable name, which
    selects every norm id that some mention of the label gives that name. Only affirmed
    mentions match unless `include_negated`. A year bound excludes documents without a year.
    """

    entities: dict[str, tuple[str, ...]] = field(default_factory=dict)  # mention label -> norm ids or names
    meta: dict[str, tuple[str, ...]] = field(default_factory=dict)  # collection/source/doc_type/court -> values
    year_from: int | None = None
    year_to: int | None = None
    include_negated: bool = False  # match negated mentions too (affirmed always match)

    def is_empty(self) -> bool:
        """True when the filter lets every document through."""
        return not (self.entities or self.meta or self.year_from is not None or self.year_to is not None)
