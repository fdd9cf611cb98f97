"""Text + highlight offsets -> flat segments the templates render with autoescaping.

Highlights may nest or overlap (a query term inside a disease mention), so the text is cut at
every highlight boundary and each piece carries the set of highlights covering it. No HTML
is ever assembled here: a segment is plain text plus CSS class names from a fixed set.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from markupsafe import Markup

from searchd.results import Highlight

# Entity labels with a fixed colour; any other label gets one of the spare slots by a stable hash.
LABEL_SLOTS = {"Disease": 0, "Drug": 1}
SPARE_SLOTS = (2, 3, 4, 5)


# Embedding, override and isolate controls reorder the text after them ("Trojan Source"): a title
# holding U+202E would show its own words, and the page's, backwards. Each becomes U+FFFD, one
# character for one, so highlight offsets stay exact and the reader sees that something was there.
BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)], "\ufffd")


def neutralise_bidi(value: object) -> object:
    """Text with bidi embedding/override/isolate controls replaced (Jinja's finalize: every {{ }} output)."""
    if isinstance(value, Markup):
        return Markup(str(value).translate(BIDI_CONTROLS))
    if isinstance(value, str):
        return value.translate(BIDI_CONTROLS)
    return value


def label_slot(label: str | None) -> int:
    """The colour slot (CSS class ent-N) of an entity label."""
    if label in LABEL_SLOTS:
        return LABEL_SLOTS[label]
    return SPARE_SLOTS[zlib.crc32((label or "").encode("utf-8")) % len(SPARE_SLOTS)]


@dataclass(frozen=True)
class Segment:
    text: str
    classes: tuple[str, ...] = ()  # empty for plain text
    title: str = ""  # tooltip: entity label, id and negation
    entity: Highlight | None = None  # the innermost entity covering the segment

    @property
    def marked(self) -> bool:
        return bool(self.classes)


@dataclass
class Paragraph:
    segments: list[Segment] = field(default_factory=list)
    reflow: bool = False  # hard-wrapped prose: single line breaks are shown as spaces


# Court decisions are often hard-wrapped at 60-80 columns; blocks whose lines are that long are
# prose and read better reflowed, while short-line blocks (captions, addresses) keep their breaks.
REFLOW_MIN_LINE = 50


def is_hard_wrapped(text: str) -> bool:
    """True when every line but the last is long: a paragraph broken only to fit a column."""
    lines = text.split("\n")
    return len(lines) > 1 and all(len(line.strip()) >= REFLOW_MIN_LINE for line in lines[:-1])


def _classes(active: Sequence[Highlight]) -> tuple[tuple[str, ...], str, Highlight | None]:
    classes: list[str] = []
    entity = None
    if any(h.kind == "term" for h in active):
        classes.append("term")
    entities = [h for h in active if h.kind == "entity"]
    if entities:
        entity = min(entities, key=lambda h: h.end - h.start)  # the innermost one wins
        classes += ["ent", f"ent-{label_slot(entity.label)}"]
        if entity.negation in ("negated", "hypothetical"):
            classes.append(entity.negation)
    title = ""
    if entity is not None:
        parts = [entity.label or "entity", entity.norm_id or ""]
        if entity.negation and entity.negation != "affirmed":
            parts.append(entity.negation)
        title = " · ".join(p for p in parts if p)
    return tuple(classes), title, entity


def segments(text: str, highlights: Iterable[Highlight]) -> list[Segment]:
    """Cut text at every highlight boundary; out-of-range or empty highlights are dropped."""
    valid = [h for h in highlights if 0 <= h.start < h.end <= len(text)]
    cuts = sorted({0, len(text), *(h.start for h in valid), *(h.end for h in valid)})
    out: list[Segment] = []
    for a, b in zip(cuts, cuts[1:]):
        active = [h for h in valid if h.start <= a and b <= h.end]
        classes, title, entity = _classes(active)
        out.append(Segment(text[a:b], classes, title, entity))
    return out


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


def paragraphs(text: str, highlights: Sequence[Highlight]) -> list[Paragraph]:
    """Split text at blank lines into paragraphs, each with its own segments (offsets stay exact)."""
    spans, start = [], 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for a, b in spans:
        if a >= b:
            continue
        local = [Highlight(max(h.start, a) - a, min(h.end, b) - a, h.kind, h.label, h.negation, h.norm_id)
                 for h in highlights if h.start < b and h.end > a]
        out.append(Paragraph(segments(text[a:b], local), is_hard_wrapped(text[a:b])))
    return out
