"""`searchd serve --workers 2`: two processes answer on one port from one memory-mapped index, and stop together."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from search_fixtures import build_sample_index

REPO = Path(__file__).resolve().parent.parent


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.is_file() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker processes from /proc")
def test_two_workers_answer_on_one_port_and_stop_together(settings, sample_dir, tmp_path):
    from indexer.embedder import load_embedder

    build_sample_index(settings, sample_dir, load_embedder(settings)).close()
    sets = [f'index.dir="{settings.index.dir}"', f'models.path=["{settings.index.dir.parent / "models"}"]',
            f'models.exports_dir="{settings.models.exports_dir}"', "embedder.backend=torch", "embedder.precision=fp32"]
    cmd = [sys.executable, "-m", "searchd", "serve", "--config", str(REPO / "config.toml"), "--port", "0",
           "--workers", "2", *[a for s in sets for a in ("--set", s)]]
    log = tmp_path / "serve.err"
    with log.open("w") as err:  # a file, not a pipe: nothing reads the workers' stderr while they serve
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    said = lambda: f"server exit {proc.poll()}; its stderr:\n{log.read_text()[-4000:]}"  # noqa: E731
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+) with 2 worker processes", line).group(1))

        def search(i: int) -> tuple[int, list]:
            url = f"http://127.0.0.1:{port}/search?q=warfarin+bleeding&mode=hybrid&year_from=2000&k=3"
            with urllib.request.urlopen(url, timeout=120) as r:  # waits in the backlog while the workers load
                return r.status, [h["doc_id"] for h in json.loads(r.read())["hits"]]

        def replaced(gone: int) -> list[int]:
            for _ in range(600):
                now = _children(proc.pid)
                if len(now) == 2 and gone not in now:
                    return now
                subprocess.run(["sleep", "0.1"])
            raise AssertionError(f"worker {gone} was not replaced; {said()}")

        for _ in range(100):  # both forked: the parent forks before it imports anything heavy
            if len(_children(proc.pid)) == 2:
                break
            subprocess.run(["sleep", "0.05"])
        loading = _children(proc.pid)[0]
        os.kill(loading, signal.SIGKILL)  # killed while it loads the index (torch alone takes seconds): replaced too
        replaced(loading)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(search, range(24)))
        assert {status for status, _ in answers} == {200}, said()
        assert len({tuple(hits) for _, hits in answers}) == 1 and answers[0][1], "every worker gives the same hits"
        workers = _children(proc.pid)
        assert len(workers) == 2, said()
        os.kill(workers[0], signal.SIGKILL)  # a worker that dies while serving is replaced
        workers = replaced(workers[0])
        assert search(0)[0] == 200, said()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        assert not any(Path(f"/proc/{w}").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text()
                       for w in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
