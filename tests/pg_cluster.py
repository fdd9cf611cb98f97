"""A throwaway PostgreSQL cluster for `pytest --store-backend postgres`, and one fresh database per test.

The cluster is Debian's PostgreSQL (initdb in a temporary directory, a Unix socket in it, no
TCP listener), started once per session and stopped at its end. MEDLEX_TEST_PG_URL names a
server that is already running instead (postgresql+psycopg://user@host/ or with ?host=/socket/dir);
each test then gets a database of its own on it, dropped after the test.
"""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PG_URL_ENV = "MEDLEX_TEST_PG_URL"
PG_VERSION = os.environ.get("MEDLEX_TEST_PG_VERSION", "15")
_names = itertools.count()


def pg_bin(name: str) -> Path:
    """A PostgreSQL server program of Debian's postgresql-<version> package."""
    path = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin") / name
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: apt-get install postgresql-{PG_VERSION}, or set {PG_URL_ENV}")
    return path


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class Cluster:
    """initdb + pg_ctl start in a temporary directory; `stop` stops it and removes the directory."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="medlex-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        subprocess.run(_as_postgres([str(pg_bin("initdb")), "-D", str(data), "-A", "trust", "-U", "postgres",
                                     "-E", "UTF8", "--locale", "C.UTF-8"]), check=True, capture_output=True)
        # fsync off: a test cluster need not survive a power cut, and durable commits cost the suite minutes
        subprocess.run(_as_postgres([str(pg_bin("pg_ctl")), "-D", str(data), "-w", "-l", str(self.dir / "log"),
                                     "-o", f"-k {self.dir} -c listen_addresses='' -c fsync=off "
                                     "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                                     "start"]), check=True, capture_output=True)
        self.url = f"postgresql+psycopg://postgres@/postgres?host={self.dir}"

    def stop(self) -> None:
        subprocess.run(_as_postgres([str(pg_bin("pg_ctl")), "-D", str(self.dir / "data"), "-w", "-m", "fast",
                                     "stop"]), capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def _conninfo(url: str, dbname: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    parts = {"host": u.query.get("host", u.host), "port": u.port, "user": u.username, "password": u.password,
             "dbname": dbname}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v)


def with_database(url: str, dbname: str) -> str:
    """The server URL with another database name."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=dbname).render_as_string(hide_password=False)


def create_database(server_url: str) -> str:
    """A new, empty database on the server; its URL."""
    import psycopg

    name = f"medlex_test_{os.getpid()}_{next(_names)}"
    with psycopg.connect(_conninfo(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING UTF8')
    return with_database(server_url, name)


def drop_database(url: str) -> None:
    """Drop a database made by create_database, closing whatever connections are left on it."""
    import psycopg
    from sqlalchemy.engine import make_url

    with psycopg.connect(_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
