"""VetClaims-JSON (LLT Lab, Hofstra): BVA PTSD decisions with rhetorical-role sentences.

PATH is the `vetclaims` folder (every *.json below it, e.g. both `BVA Decisions JSON Format`
folders) or one JSON file. Two schemas occur: the first 50 files have `docID`, `metadm`
(decisionDate, docketNumber, judge) and sentences with a `rhetRole` list; the 25 later ones
have `caseNumber`, `caseInfo` and sentences with a `rhetClass` string. The sentences carry no
offsets, so each is located in the decision text (in order, whitespace-tolerant);
meta["roles"] holds [start, end, role, sentID] spans that slice the text exactly and
meta["roles_unlocated"] counts sentences that could not be found.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from indexer.documents import Document
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.bva import decision_meta, decision_title
from indexer.readers.util import decode, files_under, iso_date, locate, normalise_newlines


def role_spans(text: str, sentences: list[dict]) -> tuple[list[list], int]:
    """[start, end, role, sentID] for each sentence found in text, and how many were not found."""
    spans, missing, cursor = [], 0, 0
    for sent in sentences:
        role = sent.get("rhetRole", sent.get("rhetClass"))
        roles = role if isinstance(role, list) else [role]
        span = locate(text, normalise_newlines(str(sent.get("text", ""))).strip(), cursor)
        if span is None:
            missing += 1
            continue
        cursor = span[1]
        spans.extend([span[0], span[1], str(r), sent.get("sentID")] for r in roles if r)
    return spans, missing


def to_document(data: Any, source: str) -> Document:
    """One decision model as a Document; ValueError names what is missing."""
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        raise ValueError("expected an object with a string `text` (a VetClaims decision model)")
    citation = str(data.get("docID") or data.get("caseNumber") or "").strip()
    if not citation:
        raise ValueError("decision has neither `docID` nor `caseNumber`")
    if not isinstance(data.get("sentences", []), list):
        raise ValueError("`sentences` is not a list")
    text = normalise_newlines(data["text"])
    title, meta = decision_meta(citation, text, source)
    extra = data.get("metadm") or {}
    meta["date"] = iso_date(extra.get("decisionDate")) or meta["date"]
    if extra.get("docketNumber"):
        meta["docket"] = extra["docketNumber"]
    if extra.get("judge"):
        meta["judge"] = extra["judge"]
    meta["roles"], meta["roles_unlocated"] = role_spans(text, data.get("sentences") or [])
    return Document(citation, decision_title(title, meta), text, meta)


def count(path: Path, options: ReadOptions) -> int:
    """Number of JSON files."""
    return len(files_under(path, (".json",)))


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Decisions of every VetClaims JSON file under PATH."""
    for file in files_under(path, (".json",)):
        try:
            data = json.loads(decode(file.read_bytes()))
            yield to_document(data, options.source or "vetclaims")
        except json.JSONDecodeError as exc:
            yield ReaderError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", str(file))
        except ValueError as exc:
            yield ReaderError(str(exc), str(file))
