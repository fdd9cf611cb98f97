"""US Board of Veterans' Appeals decisions: plain (`bva`) and `#Role#`-annotated (`bva-annotated`).

`bva`: a folder of decision texts named by citation number (`0010438.txt`, e.g. the shared
`bva-decisions/summarization/single_issue_PTSD_sample/`); files with other names (that folder's
`sample_cases.txt` is a list of file names) are not decisions and are passed over. Old files are
Windows-1252 (§, curly quotes) and are decoded as such.

`bva-annotated`: `annot_<citation>.txt` files (`bva-decisions/annotated_casetext/`) whose blocks,
separated by blank lines, start with a `#Role#` line (Procedure, Header, Evidence, LegalRule, ...).
The text is the blocks joined by blank lines; meta["roles"] lists [start, end, role] spans that
slice it exactly. Lines outside any role block are kept in the text without a role.

Both: id = citation number; date from `Decision Date:` (else the year the citation number
begins with); court "Board of Veterans' Appeals"; doc_type "decision"; meta citation, docket
(DOCKET NO.), issue (THE ISSUE(S), or the first ORDER paragraph of newer decisions),
regional_office (the RO appealed from) and outcome (granted, denied, dismissed, remanded or
several, "granted, remanded", from the ORDER and REMAND sections). Nearly every decision in a PTSD sample has the same
issue, so the title puts the citation, docket number and decision date beside it:
"Entitlement to service connection for PTSD: granted (BVA Citation Nr. 0010438, Docket No.
94-39 228, April 20, 2000)".
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from indexer.documents import Document
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.util import files_under, iso_date, long_date, read_text

COURT = "Board of Veterans' Appeals"
DECISION_NAME = re.compile(r"(?:annot_)?(?:BVA)?(\d{7,8})\.txt", re.IGNORECASE)
ROLE_LINE = re.compile(r"#(\w+)#\s*")
_DATE = re.compile(r"Decision Date:\s*(\d{1,2}/\d{1,2}/\d{2,4})")
_DOCKET = re.compile(r"DOCKET NO\.?\s*([\d-]+\s?[\d]*)")
# the issue paragraph, up to a blank line or the next all-capitals heading; newer decisions open
# with ORDER instead of THE ISSUE
_ISSUE = [re.compile(rf"^{h}[ \t]*\n\s*(?:\d+\.\s+)?(.+?)(?:\n\s*\n|\n[A-Z][A-Z ]+\n|\Z)", re.DOTALL | re.MULTILINE)
          for h in ("THE ISSUES?", "ORDER")]
_OFFICE = re.compile(r"On appeal from (?:a decision of )?the\s+Department of Veterans Affairs\s+"
                     r"(?:\(VA\)\s+)?(.+?)\s*\n\s*\n", re.DOTALL)
_ORDER = re.compile(r"^ORDER[ \t]*\n(.+?)(?=\n[A-Z][A-Z ,]+\n|\Z)", re.DOTALL | re.MULTILINE)
_REMAND = re.compile(r"^REMAND[ \t]*$", re.MULTILINE)
_RULINGS = ("granted", "denied", "dismissed")
MAX_TITLE = 300


def _issue(text: str) -> str:
    """THE ISSUE paragraph (or a newer decision's first ORDER paragraph), shortened to a title."""
    found = [m for m in (p.search(text[:6000]) for p in _ISSUE) if m]
    issue = " ".join(found[0].group(1).split()) if found else ""
    return issue if len(issue) <= MAX_TITLE else issue[:MAX_TITLE].rsplit(" ", 1)[0] + " ..."


def outcome(text: str) -> str | None:
    """What the Board did: granted, denied, dismissed, remanded, or several ("granted, remanded"), or None."""
    orders = " ".join(m.group(1) for m in _ORDER.finditer(text)).lower()
    found = [r for r in _RULINGS if re.search(rf"\b(?:(?:is|are)\s+(?:hereby\s+)?)?{r}\b", orders)]
    if _REMAND.search(text):
        found.append("remanded")
    return ", ".join(found) or None


def decision_meta(citation: str, text: str, source: str) -> tuple[str, dict]:
    """(issue, meta) read from a decision's header; decision_title makes the title from both."""
    meta = {"source": source, "doc_type": "decision", "court": COURT, "citation": citation}
    m = _DATE.search(text[:3000])
    date = iso_date(m.group(1)) if m else None
    if date is None and citation[:2].isdigit():
        # citation numbers begin with the two-digit year of the decision (9414262 -> 1994)
        date = str(1900 + int(citation[:2]) if int(citation[:2]) >= 90 else 2000 + int(citation[:2]))
    meta["date"] = date
    m = _DOCKET.search(text[:3000])
    if m:
        meta["docket"] = " ".join(m.group(1).split())
    m = _OFFICE.search(text[:3000])
    if m:
        meta["regional_office"] = " ".join(m.group(1).split())
    ruling = outcome(text)
    if ruling:
        meta["outcome"] = ruling
    issue = _issue(text)
    if issue:
        meta["issue"] = issue
    return issue or f"BVA decision {citation}", meta


def decision_title(issue: str, meta: dict) -> str:
    """The issue, the outcome, and the citation, docket number and date that tell decisions apart."""
    cite = ", ".join(p for p in (f"BVA Citation Nr. {meta['citation']}",
                                 f"Docket No. {meta['docket']}" if meta.get("docket") else None,
                                 long_date(meta.get("date"))) if p)
    if not meta.get("issue"):
        return f"{COURT} decision ({cite})"
    # newer decisions' issue is their ORDER paragraph, which says the outcome already
    said = any(re.search(rf"\b{r}\b", issue) for r in _RULINGS)
    ruling = f": {meta['outcome']}" if meta.get("outcome") and not said else ""
    return f"{issue.rstrip('.')}{ruling} ({cite})"


def _decisions(path: Path) -> Iterator[tuple[str, Path]]:
    """(citation number, file) of the decision files under PATH."""
    for file in files_under(path, (".txt",)):
        m = DECISION_NAME.fullmatch(file.name)
        if m:
            yield m.group(1), file


def count(path: Path, options: ReadOptions) -> int:
    """Number of decision files (either format)."""
    return sum(1 for _ in _decisions(path))


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Plain BVA decisions, one per <citation>.txt file."""
    for citation, file in _decisions(path):
        text = read_text(file)
        if not text.strip():
            yield ReaderError("decision file is empty", str(file))
            continue
        issue, meta = decision_meta(citation, text, options.source or "bva")
        yield Document(citation, decision_title(issue, meta), text, meta)


def parse_annotated(raw: str) -> tuple[str, list[list]]:
    """Text and [start, end, role] spans of a `#Role#`-annotated decision."""
    blocks: list[tuple[str | None, list[str]]] = []
    current: tuple[str | None, list[str]] | None = None
    for line in raw.split("\n"):
        m = ROLE_LINE.fullmatch(line)
        if m:
            current = (m.group(1), [])
            blocks.append(current)
        elif not line.strip():
            current = None
        elif current is None:
            current = (None, [line])
            blocks.append(current)
        else:
            current[1].append(line)
    parts, roles, pos = [], [], 0
    for role, lines in blocks:
        body = "\n".join(lines).strip()
        if not body:
            continue
        if parts:
            pos += 2  # the blank line between blocks
        parts.append(body)
        if role:
            roles.append([pos, pos + len(body), role])
        pos += len(body)
    return "\n\n".join(parts), roles


def read_annotated(path: Path, options: ReadOptions) -> Iterator[Record]:
    """BVA decisions with `#Role#` blocks; role spans go to meta["roles"]."""
    for citation, file in _decisions(path):
        text, roles = parse_annotated(read_text(file))
        if not roles:
            yield ReaderError("no `#Role#` lines: not an annotated decision (use --format bva)", str(file))
            continue
        issue, meta = decision_meta(citation, text, options.source or "bva-annotated")
        meta["roles"] = roles
        yield Document(citation, decision_title(issue, meta), text, meta)
