"""Writers wait for each other: the index directory's writer lock, --no-wait, and 'database is locked' in words."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import click
import pytest
from click.testing import CliRunner

from indexer.writer_lock import IndexBusy, writer_lock
from tests.crash_fixtures import REPO, CrashIndex, generated_records, sample_records, write_corpus

HOLD = ("import sys; from pathlib import Path; from indexer.writer_lock import writer_lock\n"
        "with writer_lock(Path(sys.argv[1]), 'indexer add --collection held'):\n"
        "    print('held', flush=True); sys.stdin.read()")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the writer lock of tmp_path/index until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "index")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def import_args(settings, sample_dir, *extra):
    return ["import", "--set", f'index.dir="{settings.index.dir}"', *extra, "--format", "beir",
            "--collection", "sample", str(sample_dir)]


@pytest.mark.sqlite_only("on PostgreSQL `indexer import` writes the store alone and takes no writer lock (several processes import at once)")
def test_no_wait_refuses_at_once_naming_the_writer(settings, sample_dir, holder):
    from indexer.cli import main

    started = time.monotonic()
    result = CliRunner().invoke(main, import_args(settings, sample_dir, "--no-wait"))
    assert result.exit_code == 1 and time.monotonic() - started < 10
    assert f"being written by {holder.pid} (indexer add --collection held)" in result.output
    assert "without --no-wait" in result.output and "Traceback" not in result.output
    assert not (settings.index.dir / "store.sqlite").exists(), "nothing was written"


@pytest.mark.sqlite_only("on PostgreSQL `indexer import` writes the store alone and takes no writer lock (several processes import at once)")
def test_a_second_writer_says_once_whom_it_waits_for_then_runs(settings, sample_dir, holder):
    from indexer.cli import main

    result = {}
    thread = threading.Thread(target=lambda: result.update(out=CliRunner().invoke(main, import_args(settings, sample_dir))))
    thread.start()
    time.sleep(2)
    assert thread.is_alive(), "waits while the other writer holds the lock"
    holder.stdin.close()  # the other writer finishes
    thread.join(120)
    out = result["out"]
    assert out.exit_code == 0, out.output
    assert out.output.count(f"waiting for {holder.pid} (indexer add --collection held) to finish") == 1
    assert "12 added" in out.output


def test_a_writer_killed_with_sigkill_leaves_no_lock(tmp_path, holder):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    said = []
    with writer_lock(tmp_path / "index", "indexer build", wait=False, say=said.append):
        pass
    assert said == []


def test_threads_of_one_process_wait_for_each_other_and_nested_holds_are_free(tmp_path):
    order = []
    with writer_lock(tmp_path, "first", wait=False):
        with writer_lock(tmp_path, "nested", wait=False):  # the same thread: no deadlock
            order.append("nested")
        other = threading.Thread(target=lambda: _hold(tmp_path, order))
        other.start()
        time.sleep(0.5)
        order.append("first done")
    other.join(10)
    assert order == ["nested", "first done", "second"]
    refused = []
    with writer_lock(tmp_path, "first"):
        other = threading.Thread(target=lambda: refused.append(_refusal(tmp_path)))
        other.start()
        other.join(10)
    assert refused and f"being written by {os.getpid()} (first)" in refused[0]


def _hold(path, order):
    with writer_lock(path, "second", say=lambda m: None):
        order.append("second")


def _refusal(path) -> str:
    try:
        with writer_lock(path, "second", wait=False):
            return "not refused"
    except IndexBusy as exc:
        return str(exc)


def test_database_is_locked_becomes_one_clear_line(tmp_path):
    """A process that bypasses the writer lock and keeps SQLite's write lock: the CLI says so, no traceback."""
    from indexer.cli import MedlexGroup

    db = tmp_path / "x.sqlite"
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("CREATE TABLE t (x)")
    blocker.execute("BEGIN IMMEDIATE")

    @click.group(cls=MedlexGroup)
    def cli():
        pass

    @cli.command()
    def write():
        sqlite3.connect(db, timeout=0).execute("INSERT INTO t VALUES (1)")

    result = CliRunner().invoke(cli, ["write"])
    blocker.rollback()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: the store is locked by another process" in result.output and "run the command again" in result.output


@pytest.mark.slow
def test_delete_started_while_add_encodes_waits_then_both_finish(tiny_bert, tmp_path):
    """The reported case: `indexer delete` started while a long `indexer add` encodes waits, says so, and both succeed."""
    from test_ner import tiny_tagger

    tiny_tagger(tiny_bert).save(tmp_path / "tagger")
    crash = CrashIndex(tmp_path, tiny_bert, tmp_path / "tagger")
    crash.cli("import", "--format", "beir", "--collection", "c", str(write_corpus(tmp_path / "base", sample_records())))
    crash.cli("build", "--no-tag")
    # large enough that the add is still encoding when the delete (itself seconds to start) asks for the lock,
    # even on an idle machine (the tiny BERT encodes ~800 chunks/s there)
    big = write_corpus(tmp_path / "big", generated_records("big", 4000))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    add = subprocess.Popen([sys.executable, "-m", "indexer", "add", *crash.args, "--format", "beir", "--collection",
                            "c", str(big)], env=env, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "encode chunks" not in seen and add.poll() is None:  # the add holds the lock and is encoding
        seen += add.stderr.read(1)
    time.sleep(1)
    delete = subprocess.run([sys.executable, "-m", "indexer", "delete", *crash.args, "--collection", "c", "bva-001"],
                            env=env, capture_output=True, text=True, timeout=600)
    add.stderr.read()
    assert add.wait(600) == 0
    assert delete.returncode == 0, delete.stderr
    assert delete.stderr.count(f"waiting for {add.pid} (indexer add ") == 1 and "database is locked" not in delete.stderr
    ids = {r["_id"] for r in sample_records()} - {"bva-001"} | {f"big-{i}" for i in range(4000)}
    crash.check_finished(ids)
