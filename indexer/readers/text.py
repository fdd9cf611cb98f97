"""A folder of plain-text files: one document per `.txt` (or `.txt.gz`) file, read recursively.

The document id is the file's path relative to PATH without the suffix (`2019/case-12`); the
title is the first non-blank line when it is short (at most 200 characters), else empty. Files
are decoded as UTF-8, falling back to Windows-1252, with newlines normalised to \\n.
"""
from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

from indexer.documents import Document
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.util import decode, files_under, normalise_newlines

SUFFIXES = (".txt", ".txt.gz")
MAX_TITLE = 200


def doc_id(file: Path, root: Path) -> str:
    """Relative path without .txt / .txt.gz; a single file is named by its stem."""
    rel = file.relative_to(root).as_posix() if file != root else file.name
    for suffix in SUFFIXES:
        if rel.lower().endswith(suffix):
            return rel[: -len(suffix)]
    return rel


def first_line_title(text: str) -> str:
    """The first non-blank line when it is short enough to be a title."""
    for line in text.split("\n"):
        if line.strip():
            line = " ".join(line.split())
            return line if len(line) <= MAX_TITLE else ""
    return ""


def count(path: Path, options: ReadOptions) -> int:
    """Number of files to read."""
    return len(files_under(path, SUFFIXES))


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Documents of every text file under PATH (or PATH itself)."""
    root = path if path.is_dir() else path.parent
    source = options.source or (path.name if path.is_dir() else path.parent.name)
    for file in files_under(path, SUFFIXES):
        raw = gzip.decompress(file.read_bytes()) if file.name.lower().endswith(".gz") else file.read_bytes()
        text = normalise_newlines(decode(raw))
        if not text.strip():
            yield ReaderError("file is empty", str(file))
            continue
        yield Document(doc_id(file, root), first_line_title(text), text, {"source": source})
