"""Corpus readers: one module per format, each yielding Document records.

A reader is a function `read(path: Path, options: ReadOptions) -> Iterator[Record]`. A record
is a Document or, for a malformed record that the reader could step over, a ReaderError
naming the file and line or record number; `indexer import` stops on it or, with
--skip-bad, counts it and goes on. Errors that make the rest unreadable are raised.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Union

from indexer.documents import Document
from indexer.errors import ReaderError, choices

Record = Union[Document, ReaderError]


@dataclass(frozen=True)
class ReadOptions:
    label_map: dict[str, str] = field(default_factory=dict)  # source label -> facet label
    fields: dict[str, str] = field(default_factory=dict)  # json/jsonl: id, title, text, date, ... -> field name
    source: str | None = None  # value for meta["source"]; readers set a sensible default


# format name -> module under indexer.readers that defines `read` (or `module:function`)
FORMATS: dict[str, str] = {
    "pubtator": "pubtator",
    "beir": "beir",
    "brat": "brat",
    "conll": "conll",
    "text": "text",
    "pdf": "pdf",
    "json": "json_records",
    "jsonl": "json_records:read_jsonl",
    "bva": "bva",
    "bva-annotated": "bva:read_annotated",
    "vetclaims": "vetclaims",
    "nm-appeals": "nm_appeals",
    "nv-bme": "nv_bme",
    "aila": "aila",
    "medquad": "medquad",
}


def reader_for(fmt: str) -> Callable[[Path, ReadOptions], Iterator[Record]]:
    """The read function of a format, or a ReaderError listing the known formats."""
    if fmt not in FORMATS:
        raise ReaderError(f"unknown format {fmt!r}; known formats: {choices(FORMATS)}")
    module_name, _, function = FORMATS[fmt].partition(":")
    module = importlib.import_module(f"indexer.readers.{module_name}")
    return getattr(module, function or "read")


def estimate(fmt: str, path: str | Path, options: ReadOptions | None = None) -> int | None:
    """How many records reading will give, where the reader can tell cheaply (a progress bar's total)."""
    module_name = FORMATS.get(fmt, "").partition(":")[0]
    counter = getattr(importlib.import_module(f"indexer.readers.{module_name}"), "count", None) if module_name else None
    try:
        return counter(Path(path), options or ReadOptions()) if counter else None
    except Exception:  # noqa: BLE001 - only a progress bar's total: reading the file reports what is wrong with it
        return None


def read(fmt: str, path: str | Path, options: ReadOptions | None = None) -> Iterator[Record]:
    """Read a corpus file or directory in the given format."""
    path = Path(path)
    if not path.exists():
        raise ReaderError(f"{str(path)!r} does not exist")
    return reader_for(fmt)(path, options or ReadOptions())
