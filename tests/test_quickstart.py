"""`.ci/quickstart` end to end, with and without trained models, in a temporary index (slow)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
PTSD_QUERY = "veteran denied service connection for PTSD stressor not verified"


def run_quickstart(tmp_path: Path, data_dir: Path, models: list[Path], limit: int | None,
                   window: int = 100, args: tuple[str, ...] = (), env_extra: dict | None = None) -> tuple[str, Path]:
    """Run the quickstart without setup and serving against a config of its own; (output, config path)."""
    config = tmp_path / "config.toml"
    paths = ", ".join(f'"{p}"' for p in models)
    config.write_text(f'[data]\ndir = "{data_dir}"\n\n[index]\ndir = "{tmp_path / "index"}"\n\n'
                      f'[models]\npath = [{paths}]\n\n[search]\nresult_window = {window}\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "MEDLEX_DATA_DIR"}
    env.update(MEDLEX_CONFIG=str(config), MEDLEX_SKIP_SETUP="1", MEDLEX_PYTHON=sys.executable, OMP_NUM_THREADS="2",
               **(env_extra or {}))
    size = ("--limit", str(limit)) if limit is not None else ()
    proc = subprocess.run(["bash", ".ci/quickstart", *size, *args, "--no-serve"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr, config


@pytest.mark.slow
def test_quickstart_without_models_says_so_and_uses_gold_mentions(tmp_path):
    out, config = run_quickstart(tmp_path, tmp_path / "no-data", [tmp_path / "no-models"], 2)
    assert "no trained tagger found" in out and "packaged base all-MiniLM-L6-v2" in out
    assert "indexing the bundled sample corpus" in out
    from indexer.pipeline import open_store

    with open_store(load_settings(config), create=False) as store:  # on postgres: MEDLEX_STORE_URL, which the script inherited
        assert store.raw("SELECT count(*) FROM mentions WHERE origin = 'model'")[0][0] == 0
        assert store.counts()["documents"] == 12


@pytest.mark.slow
@pytest.mark.data
def test_quickstart_with_the_shared_tagger_tags_legal_documents(tmp_path, shared_data):
    """With the tagger beside the data, legal documents get entities and a PTSD query leads its Disease facet."""
    models = shared_data.parent / "models"
    if not (models / "ner-bc5cdr" / "tagger.json").is_file():
        pytest.skip(f"no shared tagger in {models}")
    # 4 documents per legal corpus and 20 per BC5CDR file (52 in all): a window well below the index size,
    # as the default 20 is below the default quickstart index's 325 documents
    out, config = run_quickstart(tmp_path, shared_data, [tmp_path / "var-models", models], 4, window=8)
    assert "the trained tagger tags every legal document" in out and "tagged 12 documents" in out
    from searchd.query import Query
    from searchd.service import SearchService

    with SearchService.load(load_settings(config)) as service:
        legal = service.store.raw("SELECT count(DISTINCT m.document_id) FROM mentions m JOIN documents d ON "
                                  "d.id = m.document_id WHERE m.origin = 'model' AND d.source != 'pubmed'")[0][0]
        # every veterans' decision names its claim's condition; of the first Nevada filings and New Mexico
        # opinions some name none the tagger finds (with the 0.9 legal floor two more "had entities": OCR
        # junk and "felony charges", false positives the 0.98 floor for unknown forms now drops)
        bva = service.store.raw("SELECT count(DISTINCT m.document_id) FROM mentions m JOIN documents d ON "
                                "d.id = m.document_id WHERE m.origin = 'model' AND d.source = 'bva'")[0][0]
        assert bva == 4 and legal >= 7, "the legal documents have tagger entities"
        for mode in ("hybrid", "dense"):
            result = service.search(Query(PTSD_QUERY, mode))
            disease = next(f for f in result.facets if f.name == "disease")
            top = disease.values[0].name.lower()
            assert "ptsd" in top or "stress disorder" in top, (mode, [v.name for v in disease.values])
            assert result.total < service.store.counts()["documents"], "facets follow the query, not the corpus"


@pytest.mark.slow
@pytest.mark.data
def test_quickstart_sizes_itself_from_a_timed_probe(tmp_path, shared_data):
    """Without --limit the quickstart times a probe and takes as many documents per corpus as fit the budget."""
    import re

    out, config = run_quickstart(tmp_path, shared_data, [tmp_path / "no-models"], None, args=("--budget", "120"),
                                 env_extra={"MEDLEX_QUICKSTART_PROBE": "2"})
    assert "timing a probe: 2 documents per legal corpus" in out
    probe_s = int(re.search(r"the probe indexed in (\d+) s", out).group(1))
    taken = int(re.search(r"taking (\d+) documents per legal corpus", out).group(1))
    left = int(re.search(r"\((\d+) s left;", out).group(1))
    assert taken == 2 + left * 2 // max(probe_s, 1), "the size follows from the probe's time and the budget left"
    from indexer.pipeline import open_store

    with open_store(load_settings(config), create=False) as store:
        per_source = dict(store.raw("SELECT source, count(*) FROM documents GROUP BY source"))
    assert per_source.get("bva") == taken and per_source.get("nv-bme") == taken, per_source
    again, _ = run_quickstart(tmp_path, shared_data, [tmp_path / "no-models"], None, args=("--budget", "120"),
                              env_extra={"MEDLEX_QUICKSTART_PROBE": "2"})
    assert f"keeping the size measured when this index was made: {taken} documents" in again
    assert "timing a probe" not in again, "a probe of an index that holds its documents would time nothing"
    with open_store(load_settings(config), create=False) as store:
        assert dict(store.raw("SELECT source, count(*) FROM documents GROUP BY source")) == per_source
