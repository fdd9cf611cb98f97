"""AILA 2019 (FIRE): Indian Supreme Court judgments (`Object_casedocs/C*.txt`) and statutes
(`Object_statutes/S*.txt`).

PATH is any folder with those two folders below it (e.g. `aila2019`), or one of them. A case file
begins with its name, (a `Status:` note,) the court and the date (`26 September 1973`): title =
first line, court = the `... Court ...` line, date = the first header line that parses. A statute
file is `Title: ...` and `Desc: ...`: title = the Title, text = title and description. ids are the
file stems (C1, S12), as in the AILA qrels; doc_type is `case` or `statute`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from indexer.documents import Document
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.util import iso_date, read_text

CASES, STATUTES = "Object_casedocs", "Object_statutes"
HEADER_LINES = 8  # the name, status, court and date all sit in the first few lines


def _folders(path: Path) -> list[Path]:
    if path.name in (CASES, STATUTES):
        return [path]
    found = sorted(p for p in path.rglob("*") if p.is_dir() and p.name in (CASES, STATUTES))
    if not found:
        raise ReaderError(f"no {CASES} or {STATUTES} folder under this directory", str(path))
    return found


def case_document(doc_id: str, text: str, source: str) -> Document:
    """A judgment: title, court and date from its header lines."""
    head = [line.strip() for line in text.split("\n")[:HEADER_LINES]]
    meta = {"source": source, "doc_type": "case"}
    court = next((line for line in head[1:] if "Court" in line), None)
    if court:
        meta["court"] = court
    date = next((d for d in (iso_date(line) for line in head[1:] if line) if d and len(d) == 10), None)
    if date:
        meta["date"] = date
    return Document(doc_id, head[0] if head else "", text, meta)


def statute_document(doc_id: str, text: str, source: str) -> Document:
    """A statute: `Title: ...` then `Desc: ...`."""
    title, _, desc = text.partition("\nDesc:")
    title = title.removeprefix("Title:").strip()
    if not desc.strip():
        raise ValueError("expected `Title: ...` and `Desc: ...` lines")
    return Document(doc_id, title, f"{title}\n\n{desc.strip()}", {"source": source, "doc_type": "statute"})


def count(path: Path, options: ReadOptions) -> int:
    """Number of case and statute files."""
    return sum(len(list(folder.glob("*.txt"))) for folder in _folders(path))


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """AILA cases and statutes."""
    source = options.source or "aila"
    for folder in _folders(path):
        # C1, C2, ..., C10: numeric order, as the collection numbers them
        files = sorted(folder.glob("*.txt"), key=lambda p: (len(p.stem), p.stem))
        for file in files:
            text = read_text(file).strip()
            try:
                if not text:
                    raise ValueError("file is empty")
                make = case_document if folder.name == CASES else statute_document
                yield make(file.stem, text, source)
            except ValueError as exc:
                yield ReaderError(str(exc), str(file))
