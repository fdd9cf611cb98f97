"""New Mexico appellate opinions (Caselaw Access Project sample, `cap-nm-appeals-outcome`).

PATH is `nm_appeals_500.tar.gz` (members read in place), a folder holding it, or a folder of the
JSON files. Each JSON has `name` (the CAP case id, `106477.xml`), `content` (the opinion text)
and `annotations`: document-level outcome labels (Affirm, Reverse, Complex = mixed, Dismiss)
and `Outcome` sentences with character offsets.

The files hold no decision date and no caption, so none is invented: meta["date"] is absent,
meta["court"] comes from the author line ("X, Justice." is the New Mexico Supreme Court, "X,
Judge." the Court of Appeals; a bare "J." says neither and leaves the court unset), and
meta["parties"] lists the [role, name] pairs the opening sentences name ("Plaintiff Peggy
Martinez", "Defendant Allstate Insurance Company"). The title is the court and the parties where
two or more are named, else the court and the opinion's first sentence. HTML entities (&amp;) are unescaped and the outcome
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
_ROLE = r"(?:Plaintiff|Defendant|Petitioner|Respondent|Appellant|Appellee|Claimant|Intervenor|Worker|Employer|Insurer)s?"
_NAME_WORD = r"(?:[A-Z][\w.'&-]*|of|the|and|de|del|la|y|&)"
# "Plaintiff Peggy Martinez", "Defendant-Appellee Allstate Insurance Company", "Plaintiff, D. Paul Chavez,"
_PARTY = re.compile(rf"\b(?P<role>{_ROLE}(?:[-/ ](?:{_ROLE}))?),?\s+(?P<name>[A-Z][\w.'&-]*(?:\s+{_NAME_WORD}){{0,8}})"
                    # or the role after the name: "Arizona Public Service Company (Employer)"
                    rf"|(?P<name2>[A-Z][\w.'&-]*(?:\s+{_NAME_WORD}){{0,8}})\s+\((?P<role2>{_ROLE})\)")
_NAME_END = re.compile(r"(?:\s+(?:of|the|and|de|del|la|y|&))+$")
MAX_PARTIES = 3


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


def _body(text: str, body_start: int) -> str:
    """The opening of the opinion body, without its first paragraph mark ({1}, 1. or (1)) and heading (I.)."""
    return re.sub(r"^\s*(?:[{(]?\s*\d+\s*[})]?\.?\s*)?(?:[IVX]+\.\s+)?", "", text[body_start:body_start + 2000])


def first_sentence(text: str, body_start: int) -> str:
    """The first sentence of the opinion body (at least a few words), shortened to a title."""
    body = re.sub(r"\{\d+\}", " ", _body(text, body_start))  # later paragraph marks run into sentences
    first = ""
    for start, end in sentence_spans(body):
        first = f"{first} {body[start:end]}".strip()
        # a heading ("I.") is not a sentence, and "(Repl." ends no sentence: an open parenthesis continues it
        if len(first) >= 25 and first.count("(") <= first.count(")"):
            break
    first = " ".join(first.split())
    return first if len(first) <= MAX_TITLE else first[:MAX_TITLE].rsplit(" ", 1)[0] + " ..."


def parties(text: str, body_start: int) -> list[list[str]]:
    """[role, name] of the parties the opening of the opinion names, in order, each name once."""
    out: list[list[str]] = []
    for m in _PARTY.finditer(_body(text, body_start)[:600]):
        name = _NAME_END.sub("", re.sub(r"['’]s$", "", m.group("name") or m.group("name2"))).rstrip(".,")
        role = m.group("role") or m.group("role2")
        # "Defendant Appeals" is a sentence, not a name; "the City" is a party's short name
        if len(name) < 3 or name.split()[0] in ("The", "This", "In", "On") or any(name == n for _, n in out):
            continue
        out.append([role, name])
        if len(out) == MAX_PARTIES:
            break
    return out


def opinion_title(meta: dict[str, Any], first: str) -> str:
    """Court and parties (two or more), or court and first sentence, of an opinion."""
    court = meta.get("court") or "New Mexico appellate court"
    found = meta.get("parties", [])
    # one party alone reads worse than the sentence that names it ("Defendant Joe Gurule appeals ...")
    named = "; ".join(f"{role} {name}" for role, name in found) if len(found) > 1 else ""
    return f"{court}: {named or first or 'opinion ' + meta['cap_id']}"


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
    body_start = m.end() if m else 0
    found = parties(text, body_start)
    if found:
        meta["parties"] = found
    return Document(case_id, opinion_title(meta, first_sentence(text, body_start)), text, meta)


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
