"""One writer at a time on an index directory: an fcntl lock on `<index dir>/writer.lock`.

`indexer import`, `build`, `add`, `update`, `delete` and `tag` hold it for their whole run.
A second writer says once whom it waits for and waits, or (wait=False, `--no-wait`) refuses
at once naming the holder. The kernel drops the lock when its holder's process ends, kill -9
included, so a crashed writer never leaves the directory locked; the file itself stays and
only says who held it last. Readers (searchd, web) never take it: SQLite's WAL lets them read
while a writer commits. With a PostgreSQL store (store.url) `indexer import`, which writes only
the store, runs without it: PostgreSQL takes writes from many processes at once. The commands
that also write vectors.faiss (build, add, update, delete) and `tag` still hold it.
"""
from __future__ import annotations

import fcntl
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from indexer.errors import MedlexError

LOCK = "writer.lock"
_held: dict[tuple[Path, int], int] = {}  # (index dir, thread) holding it -> depth of nested holds


class IndexBusy(MedlexError):
    """Another writer holds the index directory and the caller chose not to wait."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def writer_lock(index_dir: Path, command: str, wait: bool = True,
                say: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the index directory's writer lock for the block (a nested hold by the same thread is free).

    `command` (e.g. 'indexer add --collection x ...') is recorded for the next writer's message.
    A directory that does not exist yet is created (an import makes it).
    """
    index_dir = Path(index_dir).resolve()
    key = (index_dir, threading.get_ident())
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    index_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(index_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)  # one open file per hold: flock locks it apart
    try:
        _acquire(fd, index_dir, wait, say)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command[:300]}\n".encode("utf-8", "replace"), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _acquire(fd: int, index_dir: Path, wait: bool, say: Callable[[str], None]) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    who = holder(fd)
    if not wait:
        raise IndexBusy(f"the index at {str(index_dir)!r} is being written by {who}; run again when it has "
                        f"finished, or without --no-wait to wait for it")
    say(f"waiting for {who} to finish")
    fcntl.flock(fd, fcntl.LOCK_EX)


def holder(fd: int) -> str:
    """'<pid> (<command>)' of the writer recorded in the lock file, or 'another writer' while it is being written."""
    lines = os.pread(fd, 1000, 0).decode("utf-8", "replace").splitlines()
    if len(lines) >= 2 and lines[0].isascii() and lines[0].isdigit():
        return f"{lines[0]} ({lines[1]})"
    return "another writer"
