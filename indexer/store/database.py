"""The connection side of the store: engine, transactions, deadlines and batched id reads.

Both halves of DocumentStore (reads.py and writes.py) derive from Database, so every statement
runs on the one engine opened here, SQLite (a file) or PostgreSQL (store.url). A read can carry
a deadline: SQLite's progress handler, or PostgreSQL's statement_timeout, interrupts it once
the deadline passes and the caller gets a StoreTimeout. Statements are written with `?` marks;
`sql` turns them into psycopg's `%s` on PostgreSQL.
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
from indexer.store.schema import (FTS_DDL, FTS_LAYOUT, FTS_REBUILD, OLD_FTS, PG_DDL, PG_READY, PG_SCHEMA_LOCK, Base, CollectionRow,
                                  is_url, make_engine)

# SQLite builds before 3.32 cap a statement at 999 bound parameters; 900 ids leave room for a few more
MAX_IDS = 900


class StoreTimeout(StoreError):
    """A read ran past its deadline and was interrupted."""


class MissingStore(StoreError):
    """Opened with create=False where no store exists yet."""


class Database:
    """One SQLite file or PostgreSQL database: the engine, write sessions, read connections with deadlines, close()."""

    def __init__(self, location: str | Path, create: bool = True):
        """`location`: the SQLite file's path, or a postgresql+psycopg:// URL (store.url)."""
        self.postgres = is_url(location)
        if self.postgres:
            self.path = None
            self.engine = make_engine(str(location))
            self._open_postgres(create)
        else:
            self._open_sqlite(Path(location), create)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def location(self) -> str:
        """Where the store is, for messages: the SQLite file, or the URL without its password."""
        return self.engine.url.render_as_string(hide_password=True) if self.postgres else str(self.path)

    def _open_postgres(self, create: bool) -> None:
        from sqlalchemy import inspect

        try:
            with self.engine.begin() as conn:
                if not create and not inspect(conn).has_table("chunks"):
                    raise MissingStore(f"no store at {self.location!r}; run `indexer import` first")
                # two processes opening a new store at once would both create its tables
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_SCHEMA_LOCK})
                # a store made already is left alone: its DDL locks tables, and beside other processes'
                # writes that deadlocked (ALTER TABLE chunks against a writer's insert, measured here)
                if conn.exec_driver_sql(PG_READY).scalar() is None:
                    Base.metadata.create_all(conn)
                    for ddl in PG_DDL:
                        conn.exec_driver_sql(ddl)
        except MissingStore:
            self.engine.dispose()
            raise
        except Exception as exc:  # SQLAlchemy wraps psycopg's errors: say which store and why, in one line
            self.engine.dispose()
            if type(exc).__module__.startswith(("sqlalchemy", "psycopg")):
                why = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
                raise StoreError(f"cannot open the PostgreSQL store {self.location!r}: {why}") from None
            raise

    def _open_sqlite(self, path: Path, create: bool) -> None:
        self.path = path
        if not create and not self.path.is_file():
            raise MissingStore(f"no store at {str(self.path)!r}; run `indexer import` first")
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

    def sql(self, stmt: str) -> str:
        """A statement written with `?` marks in the driver's own style (psycopg: `%s`)."""
        return stmt.replace("?", "%s") if self.postgres else stmt

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
        """A connection whose statements are interrupted once time.monotonic() passes `deadline`.

        On PostgreSQL its statements share one REPEATABLE READ snapshot, as a read of SQLite's WAL does.
        """
        if self.postgres:
            with self._reading_postgres(deadline) as conn:
                yield conn
            return
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

    @contextmanager
    def _reading_postgres(self, deadline: float | None) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            if deadline is not None:
                left = int((deadline - time.monotonic()) * 1000)
                if left <= 0:
                    raise StoreTimeout("the query ran out of time")
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {left}")
            try:
                yield conn
            except Exception as exc:
                if getattr(getattr(exc, "orig", exc), "sqlstate", None) == "57014":  # query_canceled
                    raise StoreTimeout("the query ran out of time") from None
                raise

    def fetch(self, conn: Connection, stmt: str, params: Iterable[Any] = ()) -> list[tuple]:
        """All rows of a `?`-marked statement on a reading() connection, as plain tuples."""
        if self.postgres:
            return [tuple(r) for r in conn.exec_driver_sql(self.sql(stmt), tuple(params))]
        return conn.connection.driver_connection.execute(stmt, tuple(params)).fetchall()

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
                rows += self.fetch(conn, sql.format(ids=", ".join("?" * len(part))), (*before, *part))
        return rows

    def collection_id(self, s: Session, name: str, create: bool = True) -> int:
        """Id of a collection, created on first use (an unknown name is an error when not `create`)."""
        row = s.scalar(select(CollectionRow).where(CollectionRow.name == name))
        if row is None:
            if not create:
                raise StoreError(f"unknown collection {name!r}; known: {', '.join(self.collections()) or 'none'}")
            if self.postgres:  # another process may create it at the same moment: insert unless there
                from sqlalchemy.dialects.postgresql import insert

                s.execute(insert(CollectionRow).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
                return s.scalar(select(CollectionRow.id).where(CollectionRow.name == name))
            row = CollectionRow(name=name)
            s.add(row)
            s.flush()
        return row.id

    def collections(self) -> list[str]:
        """Names of the collections, sorted."""
        with self.session() as s:
            return sorted(s.scalars(select(CollectionRow.name)))  # code-point order whatever the database's collation

    def clear(self) -> None:
        """Delete every collection, document, chunk and mention (an eval index rebuilt in a PostgreSQL store)."""
        from indexer.store.schema import ChunkRow, DocumentRow, MentionRow, TaggingRow

        with self.session() as s:
            for table in (MentionRow, TaggingRow, ChunkRow, DocumentRow, CollectionRow):
                s.execute(table.__table__.delete())

    def raw(self, sql: str, **params: Any) -> list[tuple]:
        """Run a read-only SQL statement. For tests only: production code calls a named method."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
