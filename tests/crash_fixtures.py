"""An index directory driven by real `indexer` processes with tiny models, and the checks run after each kill.

`CrashIndex.run` starts `python -m indexer ...` (optionally with MEDLEX_KILL_AT, see
indexer/kill_points.py, or killed after a delay once a progress bar appears); `cli` runs a
command in this process (a re-run). `check` asserts what must hold after any kill: no
duplicated or orphaned rows, an FTS index in step with its chunks, and an index that either
answers a query or refuses naming the command that mends it. `check_finished` asserts what
must hold after a command ran to its end: store, vectors and manifest agree exactly.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from indexer.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "sample" / "corpus.jsonl"
REFUSAL = re.compile(r"run `indexer (build|import)")


def write_corpus(path: Path, records: list[dict]) -> Path:
    """A BEIR folder holding these records."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def sample_records() -> list[dict]:
    """The sample corpus without gold mentions, so that `indexer build` tags every document."""
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [{k: v for k, v in r.items() if k != "mentions"} for r in records]


def generated_records(prefix: str, n: int) -> list[dict]:
    """n documents made of the sample's texts, each with its own id and case number."""
    base = sample_records()
    return [{"_id": f"{prefix}-{i}", "title": f"{base[i % len(base)]['title']} (case {prefix} {i})",
             "text": f"{base[i % len(base)]['text']} Docket {prefix} {i}.", "metadata": base[i % len(base)]["metadata"]}
            for i in range(n)]


class CrashIndex:
    """One index directory, its settings, and the `indexer` commands run against it."""

    def __init__(self, root: Path, bert: Path, tagger: Path):
        self.root = root
        self.overrides = [f'index.dir="{root / "index"}"', f'embedder.model="{bert}"', f'ner.model="{tagger}"',
                          f'models.path=["{root / "models"}"]', f'models.exports_dir="{root / "exports"}"',
                          "embedder.backend=torch", "embedder.precision=fp32", "ner.backend=torch",
                          "ner.precision=fp32", "chunk.max_tokens=48", "chunk.overlap_tokens=8",
                          "embedder.max_length=48", "index.checkpoint_every=8", "index.build_batch=4",
                          "ner.build_batch=3"]
        self.settings: Settings = load_settings(REPO / "config.toml", self.overrides)
        self.args = ["--config", str(REPO / "config.toml"), *(a for o in self.overrides for a in ("--set", o))]
        self.kills = 0
        self._embedder = None

    def _argv(self, command: tuple[str, ...]) -> list[str]:
        return [command[0], *self.args, *command[1:]]

    def run(self, *command: str, kill_at: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """The command in a fresh process; with kill_at it must die of SIGKILL there (counted in `kills`)."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("MEDLEX_KILL_AT", None)
        if kill_at is not None:
            env["MEDLEX_KILL_AT"] = kill_at
        done = subprocess.run([sys.executable, "-m", "indexer", *self._argv(command)], env=env, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)
        if kill_at is not None:
            assert done.returncode == -signal.SIGKILL, f"{command} did not reach {kill_at}: {done.stderr[-2000:]}"
            self.kills += 1
        return done

    def run_killed_after(self, marker: str, delay: float, *command: str, timeout: float = 300) -> bool:
        """Start the command, SIGKILL it `delay` s after `marker` shows on its stderr; whether it was still running."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        env.pop("MEDLEX_KILL_AT", None)
        proc = subprocess.Popen([sys.executable, "-m", "indexer", *self._argv(command)], env=env, cwd=self.root,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen = threading.Event()
        err = bytearray()

        def watch() -> None:
            while chunk := proc.stderr.read1(4096):
                err.extend(chunk)
                if marker.encode() in err:
                    seen.set()
            seen.set()  # the process ended without showing the marker

        threading.Thread(target=watch, daemon=True).start()
        assert seen.wait(timeout), f"{command}: no {marker!r} within {timeout} s"
        time.sleep(delay)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout)
        assert alive or proc.returncode == 0, err.decode(errors="replace")[-2000:]
        self.kills += alive
        return alive

    def cli(self, *command: str) -> str:
        """Run the command in this process (a re-run after a kill); it must succeed; its output."""
        from indexer.cli import main

        result = CliRunner().invoke(main, self._argv(command), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def embedder(self):
        if self._embedder is None:
            from indexer.embedder import load_embedder

            self._embedder = load_embedder(self.settings)
        return self._embedder

    # ---- what must hold --------------------------------------------------------------------
    def store_state(self) -> dict:
        """Counts and external ids of the store, after asserting no duplicates, orphans or a torn FTS index."""
        from indexer.pipeline import open_store

        with open_store(self.settings, create=False) as store:
            one = lambda sql: store.raw(sql)[0][0]  # noqa: E731
            assert one("SELECT count(*) FROM (SELECT 1 FROM documents GROUP BY collection_id, external_id "
                       "HAVING count(*) > 1) AS dup") == 0, "duplicated documents"
            assert one("SELECT count(*) FROM chunks WHERE document_id NOT IN (SELECT id FROM documents)") == 0
            assert one("SELECT count(*) FROM documents d WHERE NOT EXISTS "
                       "(SELECT 1 FROM chunks c WHERE c.document_id = d.id)") == 0, "documents without chunks"
            assert one("SELECT count(*) FROM mentions WHERE document_id NOT IN (SELECT id FROM documents) OR "
                       "(chunk_id IS NOT NULL AND chunk_id NOT IN (SELECT id FROM chunks))") == 0, "orphaned mentions"
            assert one("SELECT count(*) FROM taggings WHERE document_id NOT IN (SELECT id FROM documents)") == 0
            if store.postgres:  # every chunk's tsvector is the one its title and text give
                assert one("SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.tsv IS "
                           "DISTINCT FROM setweight(to_tsvector('medlex', d.title), 'A') || "
                           "setweight(to_tsvector('medlex', c.text), 'B')") == 0, "torn keyword index"
            else:
                with store.engine.connect() as conn:  # raises when FTS5 disagrees with the chunks table
                    conn.exec_driver_sql("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 1)")
            ids = {r[0] for r in store.raw("SELECT external_id FROM documents")}
            return {**store.counts(), "ids": ids, "chunk_ids": [r[0] for r in store.raw("SELECT id FROM chunks")]}

    def check(self, query: str = "veteran PTSD stressor") -> bool:
        """After a kill: a sound store, and an index that answers (True) or refuses naming its command (False)."""
        from indexer.errors import MedlexError
        from searchd.query import Query
        from searchd.service import SearchService

        self.store_state()
        try:
            service = SearchService.load(self.settings, embedder=self.embedder())
        except MedlexError as exc:
            assert REFUSAL.search(str(exc)), f"a refusal must name the command to run: {exc}"
            return False
        with service:
            for mode in ("dense", "hybrid", "keyword"):
                assert service.search(Query(query, mode, k=5)).hits, mode
        return True

    def check_finished(self, expected_ids: set[str], tagged: bool = False) -> dict:
        """After a command ran to its end: exactly the expected documents, one live vector per chunk, the manifest's counts."""
        import numpy as np

        from indexer.pipeline import PARTIAL, open_index

        state = self.store_state()
        assert state["ids"] == expected_ids
        store, index, manifest = open_index(self.settings)
        with store:
            live = index.ids()
            assert len(np.unique(live)) == len(live) == index.ntotal, "duplicated vectors"
            assert sorted(live.tolist()) == sorted(state["chunk_ids"]), "vectors and chunks differ"
            assert (manifest["documents"], manifest["chunks"], manifest["mentions"]) == \
                (state["documents"], state["chunks"], state["mentions"])
            if tagged:
                from indexer.ner import load_tagger

                assert store.untagged_documents(load_tagger(self.settings, prepare=False).checksum) == []
        index.close()
        leftovers = [p.name for p in self.settings.index.dir.iterdir() if p.name.endswith(".tmp") or p.name == PARTIAL]
        assert not leftovers, leftovers
        assert self.check(), "a finished index answers"
        return state
