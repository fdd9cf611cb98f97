"""The connection side of the store: engine, transactions, deadlines and batched id reads.

Both halves of DocumentStore (reads.py and writes.py) derive from Database, so every statement
runs on the one engine opened here. A read can carry a deadline: SQLite's progress handler
interrupts it once the deadline passes and the caller gets a StoreTimeout.
"""
from __future__ import annotations

import sqlite3
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Self

from sqlalchemy import select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session, sessionmaker

from indexer.errors import StoreError
from indexer.store.schema import FTS_DDL, FTS_LAYOUT, FTS_REBUILD, OLD_FTS, Base, CollectionRow, make_engine

# SQLite builds before 3.32 cap a statement at 999 bound parameters; 900 ids leave room for a few more
MAX_IDS = 900


class StoreTimeout(StoreError):
    """A read ran past its deadline and was interrupted."""


class Database:
    """One SQLite file: the engine, write sessions, read connections with deadlines, and close()."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"no store at {str(self.path)!r}; run `indexer import` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(self.path)
        Base.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            layout = conn.exec_driver_sql(FTS_LAYOUT).scalar()
            stale = layout is not None and "title" not in layout  # a store from before the title column
            for ddl in (OLD_FTS if stale else []) + FTS_DDL:
                conn.exec_driver_sql(ddl)
            if stale:
                print(f"rebuilding the keyword index of {self.path} with document titles (once)", file=sys.stderr)
                conn.exec_driver_sql(FTS_REBUILD)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        """Close every pooled connection; the store can still be used and reconnects on demand."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error."""
        with self.sessions.begin() as s:
            yield s

    @contextmanager
    def reading(self, deadline: float | None = None) -> Iterator[Connection]:
        """A connection whose statements are interrupted once time.monotonic() passes `deadline`."""
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            if deadline is not None:
                raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 2000)
            try:
                yield conn
            except sqlite3.OperationalError as exc:
                if "interrupted" in str(exc):
                    raise StoreTimeout("the query ran out of time") from None
                raise
            except Exception as exc:  # SQLAlchemy wraps driver errors
                if "interrupted" in str(getattr(exc, "orig", "")):
                    raise StoreTimeout("the query ran out of time") from None
                raise
            finally:
                raw.set_progress_handler(None, 0)

    def rows_for_ids(self, sql: str, ids: Iterable[int], before: tuple = ()) -> list[tuple]:
        """Rows of `sql` run once per batch of at most MAX_IDS ids, its `{ids}` filled with their `?` marks.

        `before` holds the parameters that come ahead of the ids in the statement. Every id is
        read: the batches together cover the whole list, in order.
        """
        ids = [int(i) for i in ids]
        rows: list[tuple] = []
        with self.reading() as conn:
            for start in range(0, len(ids), MAX_IDS):
                part = ids[start:start + MAX_IDS]
                stmt = sql.format(ids=", ".join("?" * len(part)))
                rows += [tuple(r) for r in conn.exec_driver_sql(stmt, (*before, *part))]
        return rows

    def collection_id(self, s: Session, name: str, create: bool = True) -> int:
        """Id of a collection, created on first use (an unknown name is an error when not `create`)."""
        row = s.scalar(select(CollectionRow).where(CollectionRow.name == name))
        if row is None:
            if not create:
                raise StoreError(f"unknown collection {name!r}; known: {', '.join(self.collections()) or 'none'}")
            row = CollectionRow(name=name)
            s.add(row)
            s.flush()
        return row.id

    def collections(self) -> list[str]:
        """Names of the collections, sorted."""
        with self.session() as s:
            return list(s.scalars(select(CollectionRow.name).order_by(CollectionRow.name)))

    def raw(self, sql: str, **params: Any) -> list[tuple]:
        """Run a read-only SQL statement. For tests only: production code calls a named method."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
