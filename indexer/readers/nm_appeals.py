"""New Mexico appellate opinions (Caselaw Access Project sample, `cap-nm-appeals-outcome`).

PATH is `nm_appeals_500.tar.gz` (members read in place), a folder holding it, or a folder of the
JSON files. Each JSON has `name` (the CAP case id, `106477.xml`), `content` (the opinion text)
and `annotations`: document-level outcome labels (Affirm, Reverse, Complex = mixed, Dismiss)
and `Outcome` sentences with character offsets.

The files hold no decision date and no case name, so none is invented: meta["date"] is absent,
the title is the opinion's first sentence, and meta["court"] comes from the author line
("X, Justice." is the New Mexico Supreme Court, "X, Judge." the Court of Appeals; a bare "J."
says neither and leaves the court unset). HTML entities (&amp;) are unescaped and the outcome
sentences re-located, so meta["roles"] spans slice the text exactly.
"""
from __future__ import annotations

import html
import json
import re
import tarfile
from pathlib import Path
from typing import Any, Iterator

from indexer.documents import Document, sentence_spans
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.io import tar_members
from indexer.readers.util import decode, files_under, locate

SUPREME, APPEALS = "New Mexico Supreme Court", "New Mexico Court of Appeals"
OUTCOMES = {"affirm": "affirm", "reverse": "reverse", "complex": "mixed", "dismiss": "dismiss"}
_AUTHOR = re.compile(r"\s*(?:MEMORANDUM\s+)?(?:OPINION)?\s*(?P<author>[^{\n]{2,80}?,\s*(?:Chief\s+)?"
                     r"(?P<title>Justice|Judge|J\.|C\.J\.)(?:\s*\([^)]*\))?)[.:]?", re.IGNORECASE)
MAX_TITLE = 200


def _members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the opinion JSON files in the tarball or folder."""
    if path.is_dir():
        tars = sorted(path.glob("*.tar.gz"))
        if not tars:
            for file in files_under(path, (".json",)):
                yield str(file), file.read_bytes()
            return
        path = tars[0]
    for name, data in tar_members(path):
        if name.endswith(".json"):
            yield f"{path}:{name}", data


def _names(path: Path) -> Iterator[str]:
    """Names of the opinion JSON files, from tar headers or the folder."""
    if path.is_dir() and not any(path.glob("*.tar.gz")):
        yield from (str(f) for f in files_under(path, (".json",)))
        return
    archive = sorted(path.glob("*.tar.gz"))[0] if path.is_dir() else path
    with tarfile.open(archive, "r:*") as tar:
        yield from (m.name for m in tar if m.isfile() and m.name.endswith(".json"))


def _court(title: str) -> str | None:
    title = title.lower()
    return SUPREME if "justice" in title else APPEALS if "judge" in title else None


def _title(text: str, body_start: int) -> str:
    """The first sentence of the opinion body, shortened to a title."""
    spans = sentence_spans(text[body_start:body_start + 2000])
    first = " ".join(text[body_start + spans[0][0]:body_start + spans[0][1]].split()) if spans else ""
    first = re.sub(r"^\{?\s*\d+\s*\}?\.?\s*", "", first)  # paragraph marks {1} or 1.
    return first if len(first) <= MAX_TITLE else first[:MAX_TITLE].rsplit(" ", 1)[0] + " ..."


def to_document(data: Any, source: str) -> Document:
    """One opinion as a Document; ValueError names what is missing."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), str) or not data.get("name"):
        raise ValueError("expected an object with `name` and a string `content` (a CAP opinion)")
    text = html.unescape(data["content"])
    case_id = re.sub(r"\.xml$", "", str(data["name"]))
    meta: dict[str, Any] = {"source": source, "doc_type": "opinion", "cap_id": case_id}
    m = _AUTHOR.match(text)
    if m:
        meta["author"] = " ".join(m.group("author").split())
        court = _court(m.group("title"))
        if court:
            meta["court"] = court
    roles, cursor = [], 0
    for ann in data.get("annotations") or []:
        role = str(ann.get("role", ""))
        if role.lower() in OUTCOMES and "content" not in ann:
            meta["outcome"] = OUTCOMES[role.lower()]
        elif ann.get("content"):
            span = locate(text, html.unescape(ann["content"]).strip(), cursor)
            if span:
                roles.append([span[0], span[1], role])
                cursor = span[1]
    meta["roles"] = roles
    return Document(case_id, _title(text, m.end() if m else 0) or f"New Mexico opinion {case_id}", text, meta)


def count(path: Path, options: ReadOptions) -> int:
    """Number of opinion JSON files (tar headers only; nothing is parsed)."""
    return sum(1 for _ in _names(path))


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Opinions of the NM appeals tarball (or folder of its JSON files)."""
    for where, data in _members(path):
        try:
            yield to_document(json.loads(decode(data)), options.source or "nm-appeals")
        except json.JSONDecodeError as exc:
            yield ReaderError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", where)
        except ValueError as exc:
            yield ReaderError(str(exc), where)
