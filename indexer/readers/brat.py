"""brat standoff: `name.txt` with `name.ann` beside it (T, A/M, N and # lines; R and E are kept as meta).

PATH is a directory (searched recursively; the document id is the path of the .txt relative to it,
without the suffix) or one .txt/.ann file. A `.txt` without an `.ann` is a document without mentions.

- `T1<TAB>Disease 0 5<TAB>fever`: a text-bound mention.
- Discontinuous spans, `T2<TAB>Disease 10 15;20 25<TAB>...`, become ONE mention covering the whole
  extent (10..25) so that the facet keeps the entity whole ("adenomatous ... coli" stays one disease);
  the fragments are listed in meta["discontinuous"] as [id, [[s, e], ...]].
- `A1<TAB>Negation T1` (or Negated, M1 modifiers) marks the mention negated; Speculation, Uncertain,
  Hypothetical mark it hypothetical; a value of false/no/0 leaves it affirmed.
- `N1<TAB>Reference T1 MESH:D003920<TAB>Diabetes` gives norm_id and norm_name.

Offsets are characters of the .txt exactly as stored (no newline translation), as brat counts them.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Iterator

from indexer.documents import Document, Mention, validate_mentions
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.util import decode

NEGATED = {"negation", "negated", "negative"}
HYPOTHETICAL = {"speculation", "speculated", "uncertain", "uncertainty", "hypothetical", "possible"}
FALSE_VALUES = {"false", "no", "0", "n"}


def _pairs(path: Path) -> list[tuple[str, Path, Path | None]]:
    """(document id, .txt, .ann or None) for a directory or a single file."""
    if path.is_file():
        txt = path.with_suffix(".txt")
        ann = path.with_suffix(".ann")
        if not txt.is_file():
            raise ReaderError("no .txt beside this .ann file", str(path))
        return [(txt.stem, txt, ann if ann.is_file() else None)]
    out = []
    for txt in sorted(path.rglob("*.txt")):
        ann = txt.with_suffix(".ann")
        out.append((txt.relative_to(path).with_suffix("").as_posix(), txt, ann if ann.is_file() else None))
    if not out:
        raise ReaderError("no .txt files (brat needs name.txt with name.ann beside it) under this directory",
                          str(path))
    return out


def _span(fields: str) -> list[tuple[int, int]]:
    """`Label 0 5;10 15` -> [(0, 5), (10, 15)] (the label is the first word)."""
    _, _, offsets = fields.partition(" ")
    spans = []
    for part in offsets.split(";"):
        start, end = part.split()
        spans.append((int(start), int(end)))
    return spans


def _text_bound(tid: str, fields: str, surface: str, text: str, options: ReadOptions,
                meta: dict) -> Mention:
    label = fields.split(" ", 1)[0]
    try:
        spans = _span(fields)
    except ValueError:
        raise ValueError(f"cannot read offsets in {fields!r}; expected `Label START END[;START END]`") from None
    start, end = spans[0][0], spans[-1][1]
    if any(not (0 <= s < e <= len(text)) for s, e in spans):
        raise ValueError(f"{tid} span {fields!r} lies outside the text (length {len(text)})")
    pieces = " ".join(text[s:e] for s, e in spans)
    if pieces != surface and pieces.split() != surface.split():
        raise ValueError(f"{tid} text {surface!r} does not match the file text {pieces!r} at {fields!r}")
    if len(spans) > 1:
        meta.setdefault("discontinuous", []).append([tid, [list(s) for s in spans]])
    return Mention(start, end, text[start:end], options.label_map.get(label, label), source_label=label)


def _parse_ann(ann: Path, text: str, options: ReadOptions) -> tuple[list[Mention], dict]:
    """Mentions and extra meta of one .ann file; a bad line raises ReaderError with its number."""
    mentions: dict[str, Mention] = {}
    meta: dict = {}
    with open(ann, "rb") as handle:
        lines = decode(handle.read()).splitlines()
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        ident, _, rest = line.partition("\t")
        fields, _, tail = rest.partition("\t")
        try:
            kind = ident[:1]
            if not ident:
                raise ValueError("line has no annotation id before its tab")
            if kind == "T":
                mentions[ident] = _text_bound(ident, fields, tail, text, options, meta)
            elif kind in "AM" and ident:
                name, target, *value = _words(fields, 2, "`Name T1 [VALUE]`")
                if target[:1] in "ER":  # attributes of events and relations are kept, not applied
                    meta.setdefault("attributes", []).append(fields)
                    continue
                mentions[target] = replace(mentions[target], negation=_negation(name, value, mentions[target]))
            elif kind == "N":
                _ref, target, norm_id = _words(fields, 3, "`Reference T1 DB:ID`")[:3]
                mentions[target] = replace(mentions[target], norm_id=norm_id, norm_name=tail.strip() or None)
            elif kind in "RE*":
                meta.setdefault("relations", []).append(rest.strip())
            elif kind != "#":
                raise ValueError(f"unknown annotation id {ident!r}; expected T, A, M, N, R, E, * or #")
        except KeyError as exc:
            raise ReaderError(f"annotation refers to {exc.args[0]!r}, which is not a T line above it",
                              str(ann), f"line {no}") from None
        except ValueError as exc:
            raise ReaderError(f"{exc} (line {line!r})", str(ann), f"line {no}") from None
    return list(mentions.values()), meta


def _words(fields: str, least: int, shape: str) -> list[str]:
    words = fields.split()
    if len(words) < least:
        raise ValueError(f"expected {shape}, got {fields!r}")
    return words


def _negation(name: str, value: list[str], mention: Mention) -> str:
    """The negation state an attribute sets; other attributes leave it as it was."""
    if value and value[0].lower() in FALSE_VALUES:
        return mention.negation
    if name.lower() in NEGATED:
        return "negated"
    if name.lower() in HYPOTHETICAL:
        return "hypothetical"
    return mention.negation


def count(path: Path, options: ReadOptions) -> int:
    """Number of documents (.txt files)."""
    return len(_pairs(path))


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Documents of a brat directory, one per .txt file."""
    for doc_id, txt, ann in _pairs(path):
        text = decode(txt.read_bytes())  # no newline translation: brat offsets count \r too
        try:
            mentions, extra = _parse_ann(ann, text, options) if ann else ([], {})
        except ReaderError as err:
            yield err
            continue
        mentions.sort(key=lambda m: (m.start, m.end))
        meta = {"source": options.source or "brat", **extra}
        doc = Document(doc_id, "", text, meta, mentions)
        problems = validate_mentions(doc)
        yield ReaderError(problems[0], str(ann)) if problems else doc
