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
def test_two_workers_answer_on_one_port_and_stop_together(settings, sample_dir):
    from indexer.embedder import load_embedder

    build_sample_index(settings, sample_dir, load_embedder(settings)).close()
    sets = [f'index.dir="{settings.index.dir}"', f'models.path=["{settings.index.dir.parent / "models"}"]',
            f'models.exports_dir="{settings.models.exports_dir}"', "embedder.backend=torch", "embedder.precision=fp32"]
    cmd = [sys.executable, "-m", "searchd", "serve", "--config", str(REPO / "config.toml"), "--port", "0",
           "--workers", "2", *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"127\.0\.0\.1:(\d+) with 2 worker processes", line).group(1))

        def search(i: int) -> tuple[int, list]:
            url = f"http://127.0.0.1:{port}/search?q=warfarin+bleeding&mode=hybrid&year_from=2000&k=3"
            with urllib.request.urlopen(url, timeout=120) as r:  # waits in the backlog while the workers load
                return r.status, [h["doc_id"] for h in json.loads(r.read())["hits"]]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(search, range(24)))
        assert {status for status, _ in answers} == {200}
        assert len({tuple(hits) for _, hits in answers}) == 1 and answers[0][1], "every worker gives the same hits"
        workers = _children(proc.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)  # a worker that dies while serving is replaced
        for _ in range(600):
            if len(_children(proc.pid)) == 2 and workers[0] not in _children(proc.pid):
                break
            subprocess.run(["sleep", "0.1"])
        assert len(_children(proc.pid)) == 2
        assert search(0)[0] == 200
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 0
        assert not any(Path(f"/proc/{w}").exists() and "zombie" not in Path(f"/proc/{w}/status").read_text()
                       for w in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
