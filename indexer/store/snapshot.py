"""StoreSnapshot: the store's in-memory read model, and the one place filter semantics are applied.

At 100,000 chunks, resolving a broad filter to chunk ids in SQLite (tens of thousands of rows
through the driver) and grouping mentions for seven facets cost tens of milliseconds each;
the same work over numpy arrays takes a few. DocumentStore.load_snapshot reads the rows; `mask`
is the only implementation of DocFilter, and keyword search is restricted to the documents it
allows, so no SQL version of the rules exists to drift from this one.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from indexer.errors import QueryError
from indexer.store.filters import METADATA_FILTERS, DocFilter

MISSING_YEAR = -1


def _rows_in(ordered: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Position of each key in an ascending array of unique ids, -1 when absent."""
    if len(ordered) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(ordered, keys), len(ordered) - 1)
    return np.where(ordered[pos] == keys, pos, -1)


@dataclass
class Column:
    codes: np.ndarray  # per document, index into values; -1 when missing
    values: list[str]
    index: dict[str, int]


def _column(raw: list) -> Column:
    values = sorted({v for v in raw if v is not None})
    index = {v: i for i, v in enumerate(values)}
    return Column(np.fromiter((index.get(v, -1) for v in raw), dtype=np.int32, count=len(raw)), values, index)


class StoreSnapshot:
    """Documents, chunk -> document, and distinct (document, label, value, negation) mentions as arrays."""

    def __init__(self, version: tuple, docs: Sequence[tuple], chunks: Sequence[tuple], mentions: Sequence[tuple]):
        """Arrays from (id, collection, source, doc_type, court, year) per document by id, (chunk id, document
        id) per chunk by id, and (document, label, norm id, norm name, negation, count) per distinct mention."""
        self.version = version
        self.doc_ids = np.asarray([r[0] for r in docs], dtype=np.int64)
        self.meta = {name: _column([r[i + 1] for r in docs]) for i, name in enumerate(METADATA_FILTERS)}
        self.year = np.asarray([MISSING_YEAR if r[5] is None else r[5] for r in docs], dtype=np.int32)
        self.chunk_ids = np.asarray([r[0] for r in chunks], dtype=np.int64)
        self.chunk_doc = self._doc_index(np.asarray([r[1] for r in chunks], dtype=np.int64))
        self._mentions(mentions)

    def _doc_index(self, doc_ids: np.ndarray) -> np.ndarray:
        """Row of each document id in self.doc_ids (-1 when absent)."""
        return _rows_in(self.doc_ids, doc_ids)

    def chunk_doc_rows(self, chunk_ids: np.ndarray) -> np.ndarray:
        """Document row (index into doc_ids and masks) of each chunk id; -1 for chunks not in the store."""
        pos = _rows_in(self.chunk_ids, np.asarray(chunk_ids, dtype=np.int64))
        return np.where(pos >= 0, self.chunk_doc[pos], -1)

    def chunk_documents(self, chunk_ids: np.ndarray) -> dict[int, int]:
        """Chunk id -> document id, for the chunk ids in the store."""
        rows = self.chunk_doc_rows(chunk_ids)
        keep = rows >= 0
        return dict(zip(np.asarray(chunk_ids)[keep].tolist(), self.doc_ids[rows[keep]].tolist()))

    def _mentions(self, rows: Sequence[tuple]) -> None:
        self.labels = sorted({r[1] for r in rows})
        label_code = {lab: i for i, lab in enumerate(self.labels)}
        self.values = sorted({r[2] for r in rows})
        self.value_index = value_code = {v: i for i, v in enumerate(self.values)}
        names: dict[int, Counter] = {}
        self.by_name: dict[tuple[str, str], set[int]] = {}
        seen = set()
        doc, lab, val, affirmed = [], [], [], []
        for d, label, norm_id, name, negation, n in rows:
            v = value_code[norm_id]
            names.setdefault(v, Counter())[name] += n
            self.by_name.setdefault((label, (name or "").lower()), set()).add(v)
            key = (d, label, v, negation)
            if key not in seen:  # one row per document, label, value and negation state
                seen.add(key)
                doc.append(d)
                lab.append(label_code[label])
                val.append(v)
                affirmed.append({"affirmed": 0, "negated": 1}.get(negation, 2))
        self.display = [names[i].most_common(1)[0][0] if i in names else v for i, v in enumerate(self.values)]
        self.m_doc = self._doc_index(np.asarray(doc, dtype=np.int64))
        self.m_label = np.asarray(lab, dtype=np.int32)
        self.m_value = np.asarray(val, dtype=np.int32)
        self.m_state = np.asarray(affirmed, dtype=np.int8)
        # per label, the (document row, value) of its affirmed mentions of documents in the store: what an
        # entity facet counts, so a query gathers those rows alone instead of testing every mention row
        keep = (self.m_state == 0) & (self.m_doc >= 0)
        self.affirmed_rows = [(self.m_doc[keep & (self.m_label == i)], self.m_value[keep & (self.m_label == i)])
                              for i in range(len(self.labels))]

    # ---- filters -------------------------------------------------------------------------
    def mask(self, flt: DocFilter) -> np.ndarray:
        """Which documents pass a filter: the definition of DocFilter's rules."""
        mask = np.ones(len(self.doc_ids), dtype=bool)
        for name, values in flt.meta.items():
            if name not in self.meta:
                raise QueryError(f"unknown metadata filter {name!r}; known: {', '.join(METADATA_FILTERS)}")
            col = self.meta[name]
            mask &= np.isin(col.codes, [col.index[v] for v in values if v in col.index])
        if flt.year_from is not None:
            mask &= (self.year != MISSING_YEAR) & (self.year >= flt.year_from)
        if flt.year_to is not None:
            mask &= (self.year != MISSING_YEAR) & (self.year <= flt.year_to)
        states = (0, 1) if flt.include_negated else (0,)
        for label, values in flt.entities.items():
            codes = self._resolve(label, values)
            rows = np.isin(self.m_value, codes) & np.isin(self.m_state, states)
            rows &= self.m_label == (self.labels.index(label) if label in self.labels else -1)
            has = np.zeros(len(self.doc_ids), dtype=bool)
            has[self.m_doc[rows]] = True
            mask &= has
        return mask

    def _resolve(self, label: str, values: tuple[str, ...]) -> list[int]:
        """Value codes for filter values given as norm ids, lower-cased surface forms or names."""
        codes: set[int] = set()
        for v in values:
            for key in (v, f"text:{v.lower()}"):
                if key in self.value_index:
                    codes.add(self.value_index[key])
            codes |= self.by_name.get((label, v.lower()), set())
        return sorted(codes)

    def of_documents(self, doc_ids: np.ndarray) -> np.ndarray:
        """A document mask from store ids."""
        mask = np.zeros(len(self.doc_ids), dtype=bool)
        idx = self._doc_index(np.asarray(doc_ids, dtype=np.int64))
        mask[idx[idx >= 0]] = True
        return mask

    def documents(self, mask: np.ndarray) -> np.ndarray:
        """Store ids of the documents in a mask, ascending."""
        return self.doc_ids[mask]

    def chunks(self, mask: np.ndarray) -> np.ndarray:
        """Chunk ids of the documents in a mask."""
        return self.chunk_ids[(self.chunk_doc >= 0) & mask[self.chunk_doc]]

    # ---- facets --------------------------------------------------------------------------
    def facet(self, name: str, mask: np.ndarray, limit: int) -> tuple[list[tuple[str, str, int]], bool]:
        """Top (value id, display name, documents) of a facet over the masked documents, and if more exist."""
        if name in self.meta:
            col = self.meta[name]
            codes = col.codes[mask & (col.codes >= 0)]
            return self._top(np.bincount(codes, minlength=len(col.values)), col.values, col.values, limit,
                             ids_sorted=True)
        if name == "year":
            years = self.year[mask & (self.year != MISSING_YEAR)]
            values, counts = np.unique(years, return_counts=True)
            labels = [str(y) for y in values]
            return self._top(counts, labels, labels, limit)
        if name not in self.labels:
            return [], False
        docs, values = self.affirmed_rows[self.labels.index(name)]
        counts = np.bincount(values[mask[docs]], minlength=len(self.values))
        return self._top(counts, self.values, self.display, limit, ids_sorted=True)

    @staticmethod
    def _top(counts: np.ndarray, ids: list[str], names: list[str], limit: int,
             ids_sorted: bool = False) -> tuple[list[tuple[str, str, int]], bool]:
        """Values by count, ties by id; `ids_sorted`: ids ascend, so position breaks ties (no string sort)."""
        nonzero = np.flatnonzero(counts)
        if ids_sorted:  # a stable sort of ascending positions keeps equal counts in id order
            order = nonzero[np.argsort(-counts[nonzero], kind="stable")]
        else:
            order = nonzero[np.lexsort((np.asarray(ids, dtype=object)[nonzero].astype(str), -counts[nonzero]))] \
                if len(nonzero) else nonzero
        top = [(ids[i], names[i], int(counts[i])) for i in order[:limit]]
        return top, len(order) > limit
