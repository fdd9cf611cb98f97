"""Snippets: the best passage of a hit, trimmed around its query terms, with highlight offsets."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from searchd.results import EntityBadge, Highlight, Snippet

MentionRow = tuple[str, str, str, int, int, str]  # label, norm id, norm name, start, end, negation


def _window(text: str, terms: Sequence[tuple[int, int]], size: int) -> tuple[int, int]:
    """[a, b) of at most `size` characters holding the most term matches, cut at word boundaries."""
    if len(text) <= size:
        return 0, len(text)
    best_start, best_count = 0, -1
    for s, _ in terms or [(0, 0)]:
        a = max(0, min(s - size // 4, len(text) - size))  # a little context before the first match
        count = sum(1 for t, e in terms if a <= t and e <= a + size)
        if count > best_count:
            best_start, best_count = a, count
    a, b = best_start, best_start + size
    if a > 0:
        space = text.find(" ", a)
        a = space + 1 if 0 <= space < a + 30 else a
    if b < len(text):
        space = text.rfind(" ", a, b)
        b = space if space > a + size // 2 else b
    return a, b


def make_snippet(chunk_start: int, chunk_text: str, terms: Sequence[tuple[int, int]],
                 mentions: Sequence[MentionRow], size: int) -> Snippet:
    """Snippet of a chunk: `terms` are spans in the chunk text, mentions are in document offsets."""
    a, b = _window(chunk_text, list(terms), size)
    lights = [Highlight(s - a, e - a, "term") for s, e in terms if a <= s and e <= b]
    for label, norm_id, _name, s, e, negation in mentions:
        s, e = s - chunk_start, e - chunk_start
        if a <= s and e <= b:
            lights.append(Highlight(s - a, e - a, "entity", label, negation, norm_id))
    lights.sort(key=lambda h: (h.start, h.end, h.kind))
    return Snippet(chunk_text[a:b], chunk_start + a, lights)


def document_highlights(mentions: Sequence[MentionRow]) -> list[Highlight]:
    """Every entity mention of a document as a highlight in document offsets."""
    return [Highlight(s, e, "entity", label, negation, norm_id) for label, norm_id, _n, s, e, negation in mentions]


def badges(mentions: Sequence[MentionRow], limit: int | None = None) -> list[EntityBadge]:
    """Entity summary of a document: affirmed mentions counted per (label, value), most frequent first."""
    counts: Counter = Counter()
    names: dict[tuple[str, str], str] = {}
    for label, norm_id, name, _s, _e, negation in mentions:
        if negation == "affirmed":
            counts[(label, norm_id)] += 1
            names.setdefault((label, norm_id), name)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [EntityBadge(label, nid, names[(label, nid)], n) for (label, nid), n in ordered[:limit]]
