"""Query: what a search asks for, parsed from request parameters, with a label for each filter.

`Query.from_params` is the one parser of user input for the JSON API and the web front end:
every bad value raises a QueryError that names it and the valid choices.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from indexer.errors import QueryError, choices
from indexer.settings import SearchSettings
from indexer.store import METADATA_FILTERS

MODES = ("dense", "keyword", "hybrid")
META_LABELS = {"collection": "Collection", "source": "Source", "doc_type": "Document type", "court": "Court",
               "year": "Year"}
RESERVED = ("q", "mode", "k", "offset", "year_from", "year_to", "negated")
MAX_FILTER_VALUES = 50  # values per filter name
MAX_VALUE_CHARS = 200  # length of one filter value
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Query:
    q: str
    mode: str = "hybrid"  # dense | keyword | hybrid
    k: int = 10
    offset: int = 0
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> values (OR); AND across names
    year_from: int | None = None
    year_to: int | None = None
    include_negated: bool = False  # entity filters also match negated mentions

    @classmethod
    def from_params(cls, params: Mapping[str, Any], search_settings: SearchSettings,
                    labels: Iterable[str] | None = None) -> "Query":
        """Parse GET/JSON parameters; `labels` are the entity labels filters may name (default: facet_labels)."""
        s = search_settings
        entity_names = {lab.lower() for lab in (labels if labels is not None else s.facet_labels)}
        known = set(RESERVED) | set(METADATA_FILTERS) | entity_names
        unknown = sorted(set(params) - known)
        if unknown:
            raise QueryError(f"unknown parameter or filter {unknown[0][:40]!r}; valid: {choices(known)}")
        q = _one(params, "q", "")
        if not q.strip():
            raise QueryError("the query `q` is empty; give some words to search for")
        if len(q) > s.max_query_chars:
            raise QueryError(f"the query is {len(q)} characters long; the limit is {s.max_query_chars}")
        mode = _one(params, "mode", s.default_mode)
        if mode not in MODES:
            raise QueryError(f"mode {mode!r} is not one of {choices(MODES)}")
        k = _int(params, "k", s.default_k, 1, s.max_k)
        offset = _int(params, "offset", 0, 0, s.max_offset)
        filters = {}
        for name in sorted((set(METADATA_FILTERS) | entity_names) & set(params)):
            values = tuple(dict.fromkeys(v.strip() for v in _many(params, name) if v.strip()))
            if len(values) > MAX_FILTER_VALUES or any(len(v) > MAX_VALUE_CHARS for v in values):
                raise QueryError(f"filter {name!r} takes at most {MAX_FILTER_VALUES} values of at most "
                                 f"{MAX_VALUE_CHARS} characters")
            if values:
                filters[name] = values
        year_from = _int(params, "year_from", None, 0, 9999)
        year_to = _int(params, "year_to", None, 0, 9999)
        if year_from is not None and year_to is not None and year_from > year_to:
            raise QueryError(f"year_from {year_from} is after year_to {year_to}")
        negated = _one(params, "negated", "0").strip().lower()
        if negated not in _TRUE + _FALSE:
            raise QueryError(f"negated {negated!r} is not one of {choices(_TRUE + _FALSE)}")
        return cls(q.strip(), mode, k, offset, filters, year_from, year_to, negated in _TRUE)


def filter_label(name: str) -> str:
    """Human name of a filter: 'disease' -> 'Disease', 'doc_type' -> 'Document type'."""
    return META_LABELS.get(name, name.replace("_", " ").capitalize())


def _many(params: Mapping[str, Any], name: str) -> list[str]:
    """All values of a parameter: a list (multi-valued GET, JSON array) or one string."""
    if hasattr(params, "getlist"):
        raw: Any = params.getlist(name)
    else:
        raw = params.get(name, [])
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                     for v in raw):
        raise QueryError(f"parameter {name!r} must be a string or a list of strings, got {raw!r:.80}")
    values = [str(v) for v in raw]
    for value in values:
        check_text(name, value)
    return values


def check_text(name: str, value: str) -> str:
    """The value itself, or a QueryError when it cannot be encoded (a lone UTF-16 surrogate from JSON)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start:exc.end]
        raise QueryError(f"parameter {name!r} holds {bad!r} at character {exc.start}, a lone UTF-16 surrogate "
                         f"that is no text; send the character whole (both halves of its pair)") from None
    return value


def _one(params: Mapping[str, Any], name: str, default: str) -> str:
    values = _many(params, name)
    if len(values) > 1:
        raise QueryError(f"parameter {name!r} was given {len(values)} times; give it once")
    return values[0] if values else default


_INT = re.compile(r"^\s*[+-]?\d{1,9}\s*$")


def _int(params: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = _one(params, name, "")
    if raw.strip() == "":
        return default
    if not _INT.match(raw):
        raise QueryError(f"{name} {raw!r:.40} is not a whole number; give one from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise QueryError(f"{name} {value} is out of range; give one from {low} to {high}")
    return value
