"""Domain errors. Each message names the bad value and, where there are any, the valid ones."""
from __future__ import annotations


class MedlexError(Exception):
    """Base class: the CLI prints these as one line and exits 1."""


class ConfigError(MedlexError):
    """A setting is unknown, mistyped or out of range."""


class ReaderError(MedlexError):
    """A corpus record could not be read; names the file and line or record."""

    def __init__(self, message: str, path: str | None = None, where: str | None = None):
        self.path, self.where, self.reason = path, where, message
        location = ":".join(p for p in (path, where) if p)
        super().__init__(f"{location}: {message}" if location else message)


class StoreError(MedlexError):
    """The SQLite store is missing, inconsistent or refused a write."""


class IndexMismatchError(MedlexError):
    """The FAISS index, store and manifest of an index directory disagree."""


class ModelError(MedlexError):
    """A model directory is missing or not in the expected layout."""


class QueryError(MedlexError):
    """A search request is malformed: bad query text, k, offset or filter."""


class DocumentNotFound(MedlexError):
    """No document has the requested id (searchd answers 404, the web page says so)."""


def choices(values) -> str:
    """Render a list of valid values for an error message."""
    return ", ".join(repr(v) for v in sorted(values))
