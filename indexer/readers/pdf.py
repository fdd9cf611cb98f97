"""PDF files (one document per file, a directory is searched recursively), text extracted by pypdf.

Pages are joined by a blank line; meta["page_starts"][i] is the character offset where page i+1
begins, so a span's page is `bisect_right(page_starts, start)`. Scanned PDFs without a text
layer give empty text and are reported as malformed (OCR them first).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from indexer.documents import Document
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.text import doc_id
from indexer.readers.util import files_under, iso_date, normalise_newlines

PAGE_SEPARATOR = "\n\n"


def _pdf_date(value) -> str | None:
    """ISO date of a PDF info date such as D:20190412103000+02'00'."""
    if not value:
        return None
    raw = str(value).removeprefix("D:")
    return iso_date(f"{raw[:4]}-{raw[4:6]}-{raw[6:8]}") if len(raw) >= 8 else None


def read_pdf(file: Path, root: Path, options: ReadOptions) -> Record:
    """One PDF as a Document, or a ReaderError if it cannot be read or has no text."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(file)
        pages = [normalise_newlines(page.extract_text() or "").strip() for page in reader.pages]
        info = reader.metadata or {}
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        return ReaderError(f"not a readable PDF: {exc}", str(file))
    starts, parts, pos = [], [], 0
    for page in pages:
        starts.append(pos)
        parts.append(page)
        pos += len(page) + len(PAGE_SEPARATOR)
    text = PAGE_SEPARATOR.join(parts)
    if not text.strip():
        return ReaderError(f"no extractable text on {len(pages)} page(s) (a scan without OCR?)", str(file))
    meta = {"source": options.source or root.name, "doc_type": "pdf", "page_starts": starts, "pages": len(pages)}
    date = _pdf_date(info.get("/CreationDate"))
    if date:
        meta["date"] = date
    title = str(info.get("/Title") or "").strip() or file.stem
    return Document(doc_id(file, root).removesuffix(".pdf").removesuffix(".PDF"), title, text, meta)


def count(path: Path, options: ReadOptions) -> int:
    """Number of PDF files."""
    return len(files_under(path, (".pdf",)))


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Documents of a PDF file or of every .pdf under a directory."""
    root = path if path.is_dir() else path.parent
    for file in files_under(path, (".pdf",)):
        yield read_pdf(file, root, options)
