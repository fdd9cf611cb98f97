"""PubTator: `PMID|t|title`, `PMID|a|abstract`, tab-separated mention lines, CID relations.

Offsets index into title + " " + abstract, which becomes Document.text (the title is also
kept as Document.title). Relations go to meta["relations"]. A mention whose text carries
stray surrounding spaces (one in NCBI-disease train) takes the text its offsets slice. A
document repeated with the same id and content (NCBI-disease train has PMID 8528200 twice) is
read once; the same id with different content is reported as malformed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from indexer.documents import Document, Mention, validate_mentions
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.io import open_text


def _norm_id(parts: list[str]) -> str | None:
    """The mention's normalised id, MeSH ids prefixed (D009203 -> MESH:D009203); -1 means none."""
    norm_id = parts[5].strip() if len(parts) > 5 and parts[5].strip() not in ("", "-1") else None
    if norm_id and ":" not in norm_id and norm_id[:1] in "CD" and norm_id[1:2].isdigit():
        norm_id = f"MESH:{norm_id}"
    return norm_id


def _parse_block(lines: list[tuple[int, str]], path: str, options: ReadOptions) -> Record:
    first_no = lines[0][0]
    title = abstract = None
    pmid = None
    mentions: list[Mention] = []
    relations: list[list[str]] = []
    raw_mentions: list[tuple[int, list[str]]] = []
    for no, line in lines:
        if "|t|" in line[:40] and title is None:
            pmid, title = line.split("|t|", 1)
        elif "|a|" in line[:40] and abstract is None:
            pid, abstract = line.split("|a|", 1)
            if pmid is not None and pid != pmid:
                return ReaderError(f"abstract id {pid!r} does not match title id {pmid!r}", path, f"line {no}")
        else:
            parts = line.split("\t")
            if len(parts) >= 4 and parts[1] == "CID":
                relations.append(parts[2:4])
            elif len(parts) >= 5:
                raw_mentions.append((no, parts))
            else:
                return ReaderError(f"cannot parse line {line[:80]!r}", path, f"line {no}")
    if pmid is None or title is None:
        return ReaderError("document has no `PMID|t|title` line", path, f"line {first_no}")
    text = title if abstract is None else f"{title} {abstract}"
    for no, parts in raw_mentions:
        try:
            start, end = int(parts[1]), int(parts[2])
        except ValueError:
            return ReaderError(f"mention offsets {parts[1]!r}, {parts[2]!r} are not integers", path, f"line {no}")
        surface = parts[3] if parts[3].strip() != text[start:end] else text[start:end]
        source_label = parts[4]
        mentions.append(Mention(start, end, surface, options.label_map.get(source_label, source_label),
                                source_label=source_label, norm_id=_norm_id(parts)))
    doc = Document(pmid, title, text, {"source": options.source or "pubtator", "doc_type": "abstract"}, mentions)
    if relations:
        doc.meta["relations"] = relations
    problems = validate_mentions(doc)
    if problems:
        return ReaderError(f"document {pmid}: {problems[0]}", path, f"line {first_no}")
    return doc


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Documents of a PubTator file (or every *.txt / *.PubTator file in a directory), repeats dropped."""
    seen: dict[str, Document] = {}
    for record in _read_all(path, options):
        if isinstance(record, Document):
            first = seen.setdefault(record.id, record)
            if first is not record:
                if first != record:
                    yield ReaderError(f"document {record.id} appears again with different content",
                                      str(path))
                continue
        yield record


def _read_all(path: Path, options: ReadOptions) -> Iterator[Record]:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        block: list[tuple[int, str]] = []
        with open_text(file) as handle:
            for no, line in enumerate(handle, 1):
                line = line.rstrip("\n\r")
                if line.strip():
                    block.append((no, line))
                elif block:
                    yield _parse_block(block, str(file), options)
                    block = []
        if block:
            yield _parse_block(block, str(file), options)
