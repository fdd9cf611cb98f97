"""kill -9 at named points and at timed moments of `indexer import`, `build`, `add`, `update` and `delete`.

Real processes with a tiny random BERT as embedder and a tiny tagger (tests/crash_fixtures.py).
After every kill the store has no duplicated or orphaned rows and the index answers a query or
refuses naming the command that mends it; running the killed command again finishes, and
then documents, chunks, vectors and mentions agree exactly. The killed points:

    import.batch      after a batch of documents is committed
    build.tagged      after a batch of model mentions is committed
    build.checkpoint  after vectors.partial.faiss is written
    change.encoded    add/delete: vectors encoded, nothing written yet
    change.stored     add/delete: the store committed, vectors.faiss not yet renamed
    write_aside       a temporary vectors file written, not renamed (and left behind)
    commit.vectors    vectors.faiss renamed, manifest.json still the old one
"""
from __future__ import annotations

import pytest

from tests.crash_fixtures import CrashIndex, generated_records, sample_records, write_corpus

SAMPLE_IDS = {r["_id"] for r in sample_records()}


@pytest.fixture(scope="module")
def models(tiny_bert, tmp_path_factory):
    from test_ner import tiny_tagger

    tagger = tmp_path_factory.mktemp("crash-tagger") / "tagger"
    tiny_tagger(tiny_bert).save(tagger)
    return tiny_bert, tagger


@pytest.fixture
def crash(models, tmp_path):
    index = CrashIndex(tmp_path, *models)
    index.base = write_corpus(tmp_path / "base", sample_records())
    index.extra = write_corpus(tmp_path / "extra", generated_records("extra", 6))
    return index


def import_and_build(crash: CrashIndex) -> None:
    crash.cli("import", "--format", "beir", "--collection", "c", str(crash.base))
    crash.cli("build")


def test_a_delete_killed_after_its_store_commit_is_mended_by_running_it_again(crash):
    import_and_build(crash)
    crash.run("delete", "--collection", "c", "bva-001", "pm-001", kill_at="change.stored")
    assert crash.store_state()["ids"] == SAMPLE_IDS - {"bva-001", "pm-001"}, "the store committed"
    assert crash.check() is False, "vectors of deleted chunks are still indexed: refused, naming `indexer build`"
    out = crash.cli("delete", "--collection", "c", "bva-001", "pm-001")
    assert "an earlier run stopped midway" in out
    crash.check_finished(SAMPLE_IDS - {"bva-001", "pm-001"})
    assert crash.kills == 1


@pytest.mark.slow
def test_import_and_build_killed_at_each_point(crash):
    base = ("import", "--format", "beir", "--collection", "c", "--batch-size", "3", str(crash.base))
    crash.run(*base, kill_at="import.batch:2")
    state = crash.store_state()
    assert state["documents"] == 6, "two batches of three committed, nothing of the third"
    assert crash.check() is False  # no vectors yet: `indexer build`
    crash.cli(*base)
    assert crash.store_state()["ids"] == SAMPLE_IDS
    crash.run("build", kill_at="build.tagged:2")
    assert crash.check() is False
    crash.run("build", kill_at="build.checkpoint")
    assert (crash.settings.index.dir / "vectors.partial.faiss").is_file()
    crash.run("build", kill_at="commit.vectors")
    assert crash.check() is False, "vectors.faiss without its manifest is refused"
    out = crash.cli("build")
    assert "tagged 0 documents" in out, "every document was tagged before the kill at commit.vectors"
    before = crash.check_finished(SAMPLE_IDS, tagged=True)
    crash.run("build", "--rebuild", kill_at="build.checkpoint:2")
    assert crash.check() is True, "a rebuild killed midway leaves the old index answering"
    crash.cli("build", "--rebuild")
    assert crash.check_finished(SAMPLE_IDS, tagged=True)["chunks"] == before["chunks"]
    assert crash.kills == 5


@pytest.mark.slow
def test_add_update_delete_killed_at_each_point(crash):
    import_and_build(crash)
    add = ("add", "--format", "beir", "--collection", "c", str(crash.extra))
    extra = {f"extra-{i}" for i in range(6)}
    crash.run(*add, kill_at="change.encoded")
    assert crash.store_state()["ids"] == SAMPLE_IDS and crash.check() is True, "nothing written"
    crash.run(*add, kill_at="change.stored")
    assert crash.store_state()["ids"] == SAMPLE_IDS | extra and crash.check() is False
    crash.cli(*add)
    crash.check_finished(SAMPLE_IDS | extra)
    crash.run("delete", "--collection", "c", "extra-0", "extra-1", kill_at="write_aside")
    assert list(crash.settings.index.dir.glob(".vectors.faiss.*.tmp")), "the killed writer's temporary file"
    assert crash.check() is False
    crash.cli("delete", "--collection", "c", "extra-0", "extra-1")  # removes the dead writer's file too
    crash.check_finished(SAMPLE_IDS | extra - {"extra-0", "extra-1"})
    crash.run("delete", "--collection", "c", "extra-2", kill_at="commit.vectors")
    assert crash.check() is False, "vectors.faiss newer than its manifest is refused"
    crash.cli("delete", "--collection", "c", "extra-2")
    left = SAMPLE_IDS | extra - {"extra-0", "extra-1", "extra-2"}
    crash.check_finished(left)
    changed = write_corpus(crash.root / "changed", [{**r, "text": r["text"] + " Amended on appeal."}
                                                    for r in generated_records("extra", 6)[3:]])
    update = ("update", "--format", "beir", "--collection", "c", str(changed))
    crash.run(*update, kill_at="change.stored")
    assert crash.check() is False
    crash.cli(*update)
    crash.check_finished(left)
    assert crash.kills == 5


@pytest.mark.slow
def test_import_and_build_killed_at_timed_moments(crash):
    """Kills at delays after the progress bar appears, on a corpus large enough to be mid-work."""
    big = write_corpus(crash.root / "big", generated_records("big", 240))
    ids = {f"big-{i}" for i in range(240)}
    imp = ("import", "--format", "beir", "--collection", "c", "--batch-size", "20", str(big))
    landed = [crash.run_killed_after("import c", delay, *imp) for delay in (0.2, 0.8)]
    crash.check()
    crash.cli(*imp)
    assert crash.store_state()["ids"] == ids
    for delay in (0.5, 2.0, 4.0):
        landed.append(crash.run_killed_after("tag documents", delay, "build"))
        crash.check()
    crash.cli("build")
    crash.check_finished(ids, tagged=True)
    more = write_corpus(crash.root / "more", generated_records("more", 240))
    add = ("add", "--format", "beir", "--collection", "c", str(more))
    for delay in (0.1, 0.6, 1.5):
        landed.append(crash.run_killed_after("encode chunks", delay, *add))
        crash.check()
    crash.cli(*add)
    crash.check_finished(ids | {f"more-{i}" for i in range(240)})
    assert crash.kills == sum(landed) >= 5, f"only {sum(landed)} of 8 timed kills landed before the command ended"
    print(f"timed kills that landed: {sum(landed)} of 8")
