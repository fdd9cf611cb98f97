"""Opening files in place: plain, gzip, and members of tar archives, without unpacking to disk."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import IO, Iterator

from indexer.errors import ReaderError


def open_text(path: Path) -> IO[str]:
    """A text handle on a plain or .gz file, decoded as UTF-8 (bad bytes replaced)."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular file in a tar(.gz) archive, streamed."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        yield member.name, handle.read()
    except tarfile.TarError as exc:
        raise ReaderError(f"not a readable tar archive: {exc}", str(path)) from None
