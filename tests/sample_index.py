"""A real index (packaged MiniLM) over the sample corpus, built once per test session with the `indexer` CLI."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from click.testing import CliRunner

from indexer.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "sample"


@functools.lru_cache(maxsize=1)
def sample_index() -> Settings:
    """`indexer import` the sample corpus and `indexer build` it in a temporary dir; settings pointing at it.

    Cached so the web and browser tests share one build; the directory goes when the session ends.
    """
    from indexer.cli import main

    root = Path(tempfile.mkdtemp(prefix="medlex-web-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    overrides = [f'index.dir="{root / "index"}"']
    base = ["--config", str(REPO / "config.toml"), *(a for o in overrides for a in ("--set", o))]
    runner = CliRunner()
    for args in (["import", *base, "--format", "beir", "--collection", "sample", str(SAMPLE)], ["build", *base]):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return load_settings(REPO / "config.toml", overrides)
