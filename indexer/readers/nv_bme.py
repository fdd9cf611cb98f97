"""Nevada State Board of Medical Examiners filings: OCR text by year plus metadata JSON.

PATH is the `nv-medical-board-malpractice-filings` folder (or its `nv_bme_filings_text.tar.gz`, with
`filings_normalized.json.gz` beside it). The texts are read from the tarball in place
(`text/<year>/<case>_<type>.txt`); each is matched to its metadata record (date, type,
respondent, case number) by the name the scraper gave it: year, case number as written in the
title, and the filing type cut to 30 characters with punctuation as `_`. Names the scraper
mangled fall back to the same year and case number with the closest type. A text with no
metadata record keeps what its name says (year, case number, type), the respondent named in
its text ("Jane Roe, M.D. (Respondent)"), and meta["matched"] = False.

title = filing type, respondent, case number and date, which tell filings of one case apart:
"Complaint - Jane Roe, MD - Case No 19-123-1 (March 7, 2019)".

id = `<year>/<file stem>`; court = the Board; meta respondent, case_number, pdf_url, and
filing_type, the exact type (about 80 spellings: "Settlement Agreement and Order", "Order of
Summary Suspension", ...). doc_type, the facet, is its kind: complaint, findings of fact,
settlement, stipulation, order or other filing.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from indexer.documents import Document
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.io import ERRORS, tar_members
from indexer.readers.util import decode, iso_date, long_date, normalise_newlines

TEXTS, METADATA = "nv_bme_filings_text.tar.gz", "filings_normalized.json.gz"
BOARD = "Nevada State Board of Medical Examiners"
_CASE = re.compile(r"(\d{2}-\d+(?:-\d+)?|Licen[cs]?e_No_[A-Za-z]*\d+)")
# the name the filing gives the respondent: "... Barry James Rives, M.D., (Respondent)"; OCR keeps
# the parenthesis far more reliably than the caption's layout
_RESPONDENT = re.compile(r"([A-Z][A-Za-z'.-]*(?:\s+[A-Z][A-Za-z'.-]*){1,4},(?:\s*[A-Z][A-Za-z.-]*,?){1,3})\s*"
                         r"\((?:the\s+)?(?:Respondent|Licensee)\)")


# (keyword, kind) tried in order: "Settlement Agreement and Order" is a settlement, not an order
KINDS = (("complaint", "complaint"), ("findings of fact", "findings of fact"), ("settlement", "settlement"),
         ("consent agreement", "settlement"), ("remediation agreement", "settlement"),
         ("stipulation", "stipulation"), ("order", "order"))


def filing_kind(filing_type: str) -> str:
    """The facet value of a filing type."""
    low = filing_type.lower()
    return next((kind for key, kind in KINDS if key in low), "other filing")


def _clean(value: str) -> str:
    """The scraper's file-name form: every character but letters, digits and '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9-]", "_", value)


def _case_key(case: str) -> str:
    """Comparable case number: 05-9441-01 ~ 05-9441-1, License No 9013 ~ LICENSE-9013."""
    m = re.fullmatch(r"Licen[cs]?e[_ -]No[_ -]?(\w+)|LICENSE-(\w+)", case, re.IGNORECASE)
    if m:
        return f"LICENSE-{(m.group(1) or m.group(2)).upper()}"
    return "-".join(str(int(p)) if p.isdigit() else p for p in case.split("-"))


class FilingIndex:
    """Metadata records looked up by the names of the text files."""

    def __init__(self, filings: list[dict]):
        self.by_name: dict[tuple[str, str], dict] = {}
        self.by_case: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for f in filings:
            year, kind = str(f.get("year", "")), _clean(str(f.get("type", "")))[:30]
            raw = re.sub(r"^Case Nos? ", "", str(f.get("case_info_raw", "")))
            for case in (raw, str(f.get("case_number", ""))):
                self.by_name.setdefault((year, f"{_clean(case)}_{kind}"), f)
            self.by_case[(year, _case_key(str(f.get("case_number", ""))))].append(f)

    def find(self, year: str, stem: str) -> dict | None:
        """The metadata of text/<year>/<stem>.txt, or None."""
        if (year, stem) in self.by_name:
            return self.by_name[(year, stem)]
        m = _CASE.match(stem)
        if not m:
            return None
        rest = stem[m.end():].lstrip("_-")
        key = _case_key(m.group(1))
        # a case number written without its sequence suffix (25-50274) means the first filing (-1)
        candidates = self.by_case.get((year, key)) or self.by_case.get((year, f"{key}-1"), [])
        # the closest type: longest shared prefix with the rest of the name
        scored = [(len(os.path.commonprefix([_clean(str(f.get("type", ""))), rest])), i, f)
                  for i, f in enumerate(candidates)]
        return max(scored)[2] if scored else None


def _paths(path: Path) -> tuple[Path, Path | None]:
    texts = path / TEXTS if path.is_dir() else path
    if not texts.is_file():
        raise ReaderError(f"no {TEXTS} in this folder", str(path))
    meta = texts.parent / METADATA
    return texts, meta if meta.is_file() else None


def _metadata(file: Path | None) -> FilingIndex:
    if file is None:
        return FilingIndex([])
    try:
        with gzip.open(file, "rt", encoding="utf-8", errors=ERRORS) as handle:
            data = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise ReaderError(f"cannot read the filings metadata: {exc}", str(file)) from None
    filings = data.get("filings") if isinstance(data, dict) else data
    if not isinstance(filings, list):
        raise ReaderError("expected a `filings` list", str(file))
    return FilingIndex([f for f in filings if isinstance(f, dict)])


def _tidy(value: str) -> str:
    """Undo the scraper's '_' for '.' in listing titles and names ("Robert L_ Horne", "Case No_ 14-1")."""
    return re.sub(r"(?<=\w)_(?= )", ".", value).rstrip("_ ")


def respondent_in_text(text: str) -> str | None:
    """The respondent as the filing's text names them, or None."""
    m = _RESPONDENT.search(text[:6000])
    return " ".join(m.group(1).split()).rstrip(",") if m else None


def filing_title(meta: dict[str, Any], listed: str = "") -> str:
    """Filing type, respondent and case number (the board's listing title when there is one), then the date."""
    case = f"Case No {meta['case_number']}" if meta.get("case_number") else None
    title = listed or " - ".join(p for p in (meta.get("filing_type"), meta.get("respondent"), case) if p)
    date = long_date(meta.get("date"))
    return f"{title} ({date})" if date else title


def to_document(year: str, stem: str, text: str, filing: dict | None, source: str) -> Document:
    """One filing text with its metadata (or what its file name and text say)."""
    meta: dict[str, Any] = {"source": source, "court": BOARD, "matched": filing is not None}
    if filing:
        meta.update(filing_type=filing.get("type"), date=iso_date(filing.get("date")) or year,
                    respondent=_tidy(str(filing.get("respondent") or "")) or None, case_number=filing.get("case_number"),
                    pdf_url=filing.get("pdf_url"))
        listed = _tidy(str(filing.get("title") or ""))
    else:
        m = _CASE.match(stem)
        kind = " ".join(stem[m.end():].replace("_", " ").split()) if m else stem.replace("_", " ")
        meta.update(filing_type=kind or None, date=year, case_number=m.group(1).replace("_", " ") if m else None,
                    respondent=respondent_in_text(text))
        listed = ""
    meta["doc_type"] = filing_kind(meta.get("filing_type") or "")
    meta = {k: v for k, v in meta.items() if v is not None}
    return Document(f"{year}/{stem}", filing_title(meta, listed), text, meta)


def count(path: Path, options: ReadOptions) -> int:
    """Number of filing texts in the tarball (headers only)."""
    with tarfile.open(_paths(path)[0], "r:*") as tar:
        return sum(1 for m in tar if m.isfile() and m.name.endswith(".txt"))


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Filings of the Nevada medical board corpus, metadata attached."""
    texts, meta_file = _paths(path)
    index = _metadata(meta_file)
    for name, data in tar_members(texts):
        parts = name.split("/")
        if not name.endswith(".txt") or len(parts) < 2:
            continue
        year, stem = parts[-2], parts[-1][:-4]
        text = normalise_newlines(decode(data))
        if not text.strip():
            yield ReaderError("filing text is empty (OCR failed?)", str(texts), name)
            continue
        yield to_document(year, stem, text, index.find(year, stem), options.source or "nv-bme")
