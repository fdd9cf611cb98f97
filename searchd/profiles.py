"""Which fusion a hybrid query gets: the user's settings, weights learned for its collection, or its kind's profile.

Precedence, first match wins (README, "Search and the JSON API"):

1. `search.fusion_profile = "settings"`, or any of search.fusion, dense_weight, keyword_weight and
   fusion_depth set by the user (`--set`, or a value other than its default): those four settings.
2. `search.fusion_profile` = a name in `search.fusion_profiles`: that profile for every query.
3. auto: the collection holding most (over half) of the documents the query may return (its filters
   applied) has weights saved by `searchd fusion-study --save` in the index's fusion.json: those.
4. auto: the kind most of those documents are (legal when `is_legal_document` says so, else
   medical) has an entry in `search.fusion_profiles`: that.
5. the four settings.

The kind is read from each document's court and doc_type in the store snapshot, so documents added
after the build count at once, and a collection (or court, doc_type) filter picks its own kind.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from indexer.legal_filter import is_legal_document
from indexer.settings import Settings, parse_fusion_spec

FUSION_KEYS = ("search.fusion", "search.dense_weight", "search.keyword_weight", "search.fusion_depth")
LEARNED_FILE = "fusion.json"  # in the index directory, beside manifest.json


@dataclass(frozen=True)
class FusionChoice:
    """The fusion one hybrid query ran with, and why (shown in the JSON answer)."""

    profile: str  # settings | legal | medical | learned:<collection>
    rule: str
    dense_weight: float
    keyword_weight: float
    depth: int  # documents per retriever fused
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def from_settings(settings: Settings, reason: str) -> FusionChoice:
    """The four search settings as a choice."""
    s = settings.search
    return FusionChoice("settings", s.fusion, s.dense_weight, s.keyword_weight, _depth(s.fusion_depth, settings),
                        reason)


def from_spec(profile: str, spec: str, settings: Settings, reason: str) -> FusionChoice:
    """A "rule dense:keyword [wDEPTH]" spec as a choice."""
    rule, dense, keyword, depth = parse_fusion_spec(spec, profile)
    return FusionChoice(profile, rule, dense, keyword, _depth(depth, settings), reason)


def _depth(depth: int, settings: Settings) -> int:
    window = max(settings.search.result_window, 1)
    return max(depth, window) if depth > 0 else window


def legal_rows(snap: Any) -> np.ndarray:
    """Per document row of a store snapshot: whether is_legal_document reads it as legal (one call per
    distinct court and doc_type)."""
    court, doc_type = snap.meta["court"], snap.meta["doc_type"]
    pairs = np.stack([court.codes, doc_type.codes], axis=1) if len(court.codes) else np.zeros((0, 2), np.int32)
    distinct, inverse = np.unique(pairs, axis=0, return_inverse=True)
    legal = np.asarray([bool(is_legal_document({"court": court.values[c] if c >= 0 else None,
                                                "doc_type": doc_type.values[t] if t >= 0 else None}))
                        for c, t in distinct.tolist()], dtype=bool)
    return legal[inverse.reshape(-1)] if len(distinct) else np.zeros(0, dtype=bool)


class Profiles:
    """Picks a FusionChoice per query; reads the index's fusion.json again whenever the file changes."""

    def __init__(self, index_dir: Path):
        self.path = Path(index_dir) / LEARNED_FILE
        self._learned: tuple[tuple[int, int] | None, dict[str, Any]] = (None, {})
        self._kinds: tuple[Any, np.ndarray] | None = None  # (snapshot, legal per document row)

    def learned(self) -> dict[str, Any]:
        """collection -> saved entry ({"spec", ...}); empty without a fusion.json."""
        try:
            st = os.stat(self.path)
        except OSError:
            return {}
        key = (st.st_mtime_ns, st.st_size)
        if self._learned[0] != key:
            self._learned = (key, read_learned(self.path))
        return self._learned[1]

    def choose(self, settings: Settings, snap: Any, mask: np.ndarray) -> FusionChoice:
        """The fusion of a hybrid query whose filters allow the documents in `mask` (rows of `snap`)."""
        s = settings.search
        chosen = [k for k in FUSION_KEYS if settings.is_set(k)]
        if s.fusion_profile == "settings" or chosen:
            why = "search.fusion_profile = settings" if not chosen else f"set by the user: {', '.join(chosen)}"
            return from_settings(settings, why)
        if s.fusion_profile != "auto":
            return from_spec(s.fusion_profile, s.fusion_profiles[s.fusion_profile], settings,
                             f"search.fusion_profile = {s.fusion_profile}")
        n = int(mask.sum())
        if n == 0:
            return from_settings(settings, "no document passes the filters")
        learned = self.learned()
        if learned:
            codes = snap.meta["collection"].codes[mask]
            counts = np.bincount(codes[codes >= 0], minlength=len(snap.meta["collection"].values))
            top = int(np.argmax(counts)) if len(counts) else -1
            name = snap.meta["collection"].values[top] if top >= 0 else None
            if name in learned and 2 * counts[top] > n:
                return from_spec(f"learned:{name}", learned[name]["spec"], settings,
                                 f"{counts[top]} of {n} documents in collection {name!r}, weights saved by "
                                 f"searchd fusion-study in {LEARNED_FILE}")
        legal = int(self._legal(snap)[mask].sum())
        kind = "legal" if 2 * legal > n else "medical" if 2 * legal < n else None
        if kind is not None and kind in s.fusion_profiles:
            share = legal if kind == "legal" else n - legal
            return from_spec(kind, s.fusion_profiles[kind], settings, f"{share} of {n} documents are {kind}")
        return from_settings(settings, f"{legal} of {n} documents are legal: no profile for that")

    def _legal(self, snap: Any) -> np.ndarray:
        """Legal per document row of this snapshot. Cached by the snapshot object itself: under concurrent writes
        two snapshots may share a store version while holding different rows (seen as a 12-vs-13 row mismatch)."""
        cached = self._kinds
        if cached is None or cached[0] is not snap:
            cached = self._kinds = (snap, legal_rows(snap))
        return cached[1]


def read_learned(path: Path) -> dict[str, Any]:
    """The collections of a fusion.json, each spec checked (a bad file is an error naming it)."""
    from indexer.errors import ConfigError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        collections = data["collections"]
        for name, entry in collections.items():
            parse_fusion_spec(entry["spec"], f"{path} collection {name!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a fusion.json written by searchd fusion-study --save: {exc}") from None
    return collections


def save_learned(index_dir: Path, collections: Iterable[str], entry: dict[str, Any]) -> Path:
    """Record `entry` ({"spec": "zscore 1:2 w100", ...how it was learned}) for each collection in
    index_dir/fusion.json, keeping other collections' entries; written aside and renamed."""
    path = Path(index_dir) / LEARNED_FILE
    parse_fusion_spec(entry["spec"], "saved fusion")
    current = read_learned(path) if path.is_file() else {}
    stamped = {**entry, "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    current.update({name: stamped for name in collections})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"collections": current}, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path
