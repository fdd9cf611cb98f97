"""Opening files in place: plain, gzip, and members of tar archives, without unpacking to disk.

Text is decoded as UTF-8 with the `medlex-utf8` error handler: a bad byte becomes U+FFFD and is
counted in the DecodeTally of the import reading it, so `indexer import` reports how many it
replaced; with a strict tally (`--strict-utf8`) the first bad byte stops the file instead.
"""
from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import tarfile
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from indexer.errors import ReaderError

ERRORS = "medlex-utf8"  # the codec error handler every reader decodes with


@dataclass
class DecodeTally:
    """Bad bytes met while one file is read; strict: refuse the file at the first one."""

    strict: bool = False
    replaced: int = 0


# the tally of the import reading on this thread (or context); None outside an import: replace, count nothing
_TALLY: ContextVar[DecodeTally | None] = ContextVar("medlex_decode_tally", default=None)


def _on_bad_bytes(exc: UnicodeError) -> tuple[str, int]:
    tally = _TALLY.get()
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    if tally is not None and tally.strict:
        raise exc
    if tally is not None:
        tally.replaced += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error(ERRORS, _on_bad_bytes)


@contextlib.contextmanager
def decode_tally(strict: bool = False) -> Iterator[DecodeTally]:
    """Count (or, strict, refuse) the bad bytes decoded inside the block."""
    tally = DecodeTally(strict)
    token = _TALLY.set(tally)
    try:
        yield tally
    finally:
        _TALLY.reset(token)


def open_text(path: Path) -> IO[str]:
    """A text handle on a plain or .gz file, decoded as UTF-8 (bad bytes replaced and counted)."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors=ERRORS)
    return open(path, encoding="utf-8", errors=ERRORS)


def tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular file in a tar(.gz) archive, streamed."""
    try:
        tar = tarfile.open(path, "r:*")
    except tarfile.TarError:  # its message lists every compression tried, over several lines
        raise ReaderError("not a readable tar archive (not gzip, bzip2, xz or plain tar)", str(path)) from None
    with tar:
        try:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()
        except (tarfile.TarError, EOFError) as exc:
            raise ReaderError(f"the tar archive is cut or corrupt ({' '.join(str(exc).split())[:160]})",
                              str(path)) from None
