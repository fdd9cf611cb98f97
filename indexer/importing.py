"""Reading a corpus and importing it into a store: the one pipeline the CLI, evaluation and the benchmark share.

`CorpusReader` reads records (format, files, reader options, a limit) and applies one policy to a
malformed record: stop with `StoppedAtBadRecord`, or report it with `warn_skipped` and go on.
`import_documents` upserts documents into a store in transactions of N, summing the stats under a
progress bar; `import_corpus` does that for a corpus into the configured index directory.
"""
from __future__ import annotations

import gzip
import sys
import tarfile
import zlib
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from indexer.documents import Document
from indexer.errors import ReaderError
from indexer.kill_points import reached
from indexer.readers import ReadOptions, estimate, read
from indexer.readers.io import decode_tally
from indexer.settings import Settings

if TYPE_CHECKING:
    from indexer.store import Chunker, DocumentStore, ImportStats

SkipReporter = Callable[[ReaderError], None]


class StoppedAtBadRecord(ReaderError):
    """Reading stopped at a malformed record because skipping was off; notes say what that left behind."""

    def __init__(self, record: ReaderError, notes: Sequence[str] = ()):
        self.record, self.notes = record, tuple(notes)
        reason = f"{record.reason} ({'; '.join(self.notes)})" if self.notes else record.reason
        super().__init__(reason, record.path, record.where)

    def with_note(self, *notes: str) -> StoppedAtBadRecord:
        """The same stop with more notes after the reason, e.g. what was stored before it."""
        return StoppedAtBadRecord(self.record, self.notes + notes)


def warn(message: str) -> None:
    """One warning line on stderr, above any tqdm bar."""
    from tqdm import tqdm

    tqdm.write(f"warning: {message}", file=sys.stderr)


def warn_skipped(record: ReaderError) -> None:
    """The one report of a skipped record: `warning: skipped <file:line: reason>`."""
    warn(f"skipped {record}")


# What a broken file raises mid-read: truncated or non-gzip streams (EOFError, BadGzipFile, zlib.error),
# broken tar archives, a bad byte under --strict-utf8, and a reader tripping over a record it did not expect.
UNREADABLE = (OSError, EOFError, zlib.error, tarfile.TarError, UnicodeDecodeError, KeyError, TypeError, ValueError,
              AttributeError, IndexError, RecursionError)


class CorpusReader:
    """The documents of a corpus in one format, at most `limit`; a malformed record stops unless skip_bad.

    Iterate once: each pass reads the files again and counts its skipped records in `skipped` and
    the bad UTF-8 bytes it replaced in `replaced_bytes` (strict_utf8: a bad byte stops the file).
    A file that cannot be read to its end keeps the records before the break; with skip_bad the
    import goes on with the next file.
    """

    def __init__(self, fmt: str, paths: str | Path | Sequence[str | Path], options: ReadOptions | None = None,
                 limit: int | None = None, skip_bad: bool = False, report: SkipReporter = warn_skipped,
                 strict_utf8: bool = False, max_chars: int | None = None):
        self.fmt, self.options, self.limit = fmt, options or ReadOptions(), limit
        self.paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        self.skip_bad, self.report, self.strict_utf8, self.max_chars = skip_bad, report, strict_utf8, max_chars
        self.skipped: list[ReaderError] = []
        self.replaced_bytes = 0

    def __iter__(self) -> Iterator[Document]:
        self.skipped, self.replaced_bytes = [], 0
        # islice stops pulling records once `limit` documents are out, so the rest is never read
        return islice(self._documents(), self.limit)

    def _documents(self) -> Iterator[Document]:
        for path in self.paths:
            with decode_tally(self.strict_utf8) as tally:
                yield from self._read_file(path)
            self.replaced_bytes += tally.replaced
            if tally.replaced:
                warn(f"{path}: {tally.replaced} bytes that are not UTF-8 were replaced with U+FFFD "
                     f"(--strict-utf8 refuses such files)")

    def _read_file(self, path: Path) -> Iterator[Document]:
        count = 0
        records = read(self.fmt, path, self.options)  # a missing path or unknown format is no bad record
        try:
            for record in records:
                count += 1
                if isinstance(record, Document):
                    record = self._check(record, path, count)
                if isinstance(record, Document):
                    yield record
                else:
                    self._bad(record)
        except StoppedAtBadRecord:
            raise
        except (ReaderError, *UNREADABLE) as exc:
            where = exc.path if isinstance(exc, ReaderError) and exc.path else str(path)
            self._bad(ReaderError(f"{unreadable_reason(exc)}; reading stopped after record {count}", where))

    def _check(self, doc: Document, path: Path, count: int) -> Document | ReaderError:
        """The document, or why it cannot be stored (a wrong type the reader let through, or too long)."""
        where = f"record {count} (id {str(doc.id)[:60]!r})"
        for name, value, kind in (("title", doc.title, str), ("text", doc.text, str), ("meta", doc.meta, dict)):
            if not isinstance(value, kind):
                return ReaderError(f"`{name}` must be {kind.__name__}, got {type(value).__name__}", str(path), where)
        if self.max_chars is not None and len(doc.text) > self.max_chars:
            return ReaderError(f"the text has {len(doc.text):,} characters; the limit is {self.max_chars:,} "
                               f"(chunk.max_document_chars)", str(path), where)
        return doc

    def _bad(self, record: ReaderError) -> None:
        if not self.skip_bad:
            raise StoppedAtBadRecord(record)
        self.skipped.append(record)
        self.report(record)

    def expected(self) -> int | None:
        """How many records reading will give, where the readers can tell cheaply (a progress bar's total)."""
        counts = [estimate(self.fmt, p, self.options) for p in self.paths]
        total = None if None in counts else sum(counts)
        if self.limit is None:
            return total
        return self.limit if total is None else min(total, self.limit)


def unreadable_reason(exc: BaseException) -> str:
    """What broke a file, in words: a truncated gzip stream, a file that is no gzip or tar, a bad byte."""
    if isinstance(exc, ReaderError):
        return " ".join(exc.reason.split())
    if isinstance(exc, EOFError):
        return "the file ends early (truncated gzip or tar stream)"
    if isinstance(exc, gzip.BadGzipFile):
        return f"not a gzip file ({exc})"
    if isinstance(exc, UnicodeDecodeError):
        return f"byte {exc.object[exc.start:exc.end]!r} at offset {exc.start} of a block is not UTF-8 (--strict-utf8)"
    if isinstance(exc, (zlib.error, tarfile.TarError)):
        return f"corrupt compressed data ({exc})"
    return f"unexpected {type(exc).__name__}: {str(exc)[:200]}"


def add_stats(total: ImportStats, part: ImportStats) -> None:
    """Add one batch's counts (and its mention Counter) to a running total."""
    for name in vars(part):
        setattr(total, name, getattr(total, name) + getattr(part, name))


def stored(stats: ImportStats) -> int:
    """Documents the store holds after an import: added, updated or found unchanged."""
    return stats.added + stats.updated + stats.unchanged


def _batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch


def import_documents(store: DocumentStore, collection: str, docs: Iterable[Document], chunker: Chunker,
                     batch_size: int = 200, total: int | None = None, desc: str | None = None) -> ImportStats:
    """Upsert documents in transactions of `batch_size` under a progress bar (counts, ETA); the summed stats.

    A stop at a malformed record is re-raised saying how many documents of earlier batches are
    stored; nothing of the unfinished batch is written, and the same holds for an interrupt.
    """
    from tqdm import tqdm

    from indexer.store import ImportStats

    stats = ImportStats()
    with tqdm(total=total, desc=desc or f"import {collection}", unit="doc", dynamic_ncols=True) as bar:
        try:
            for batch in _batches(_ticking(docs, bar), max(1, batch_size)):
                add_stats(stats, store.upsert_documents(collection, batch, chunker))
                reached("import.batch")
                bar.set_postfix({"added": stats.added, "updated": stats.updated, "unchanged": stats.unchanged}, refresh=False)
        except StoppedAtBadRecord as err:
            raise err.with_note(f"import stopped: {stored(stats)} documents of earlier batches are stored, "
                                f"nothing of this batch was written") from None
    return stats


def _ticking(docs: Iterable[Document], bar) -> Iterator[Document]:
    """The documents, moving the bar on as each is read (not only when its batch is written)."""
    for doc in docs:
        bar.update()
        yield doc


def open_store(settings: Settings, create: bool = True) -> DocumentStore:
    """The configured DocumentStore: store.url, else the index directory's store.sqlite."""
    from indexer import pipeline

    return pipeline.open_store(settings, create)


def make_chunker(settings: Settings) -> Chunker:
    """Document -> chunks with the embedder's tokenizer and the configured window."""
    from indexer.documents import chunk_document, offsets_for_model
    from indexer.models import resolve_embedder_dir

    offsets = offsets_for_model(str(resolve_embedder_dir(settings)))
    return lambda doc: chunk_document(doc, offsets, settings.chunk.max_tokens, settings.chunk.overlap_tokens)


def import_corpus(settings: Settings, collection: str, corpus: CorpusReader, batch_size: int = 200) -> ImportStats:
    """Read a corpus into the configured index directory's store (created if need be), chunked for its embedder."""
    store = open_store(settings)
    try:
        return import_documents(store, collection, corpus, make_chunker(settings), batch_size, corpus.expected())
    finally:
        store.close()
