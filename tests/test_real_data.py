"""The real corpora in the data directory read with the counts their sources state (slow; skipped without data).

Records are only read (no chunking), except one small corpus imported through the CLI.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer.documents import Document, validate_mentions
from indexer.readers import ReadOptions, read
from indexer.settings import TrainNerSettings, load_settings

pytestmark = pytest.mark.slow
LABELS = ReadOptions(label_map=TrainNerSettings().label_map)


def read_all(fmt: str, path: Path, options: ReadOptions = LABELS) -> list[Document]:
    """Every document of a corpus; any malformed record fails the test with its location."""
    docs = []
    for record in read(fmt, path, options):
        assert isinstance(record, Document), str(record)
        docs.append(record)
    assert len({d.id for d in docs}) == len(docs), "ids are unique"
    return docs


@pytest.mark.parametrize("split, chemicals, diseases", [("Training", 5203, 4182), ("Development", 5347, 4244)])
def test_bc5cdr(shared_data, split, chemicals, diseases):
    docs = read_all("pubtator", shared_data / "bc5cdr" / f"CDR_{split}Set.PubTator.txt")
    assert len(docs) == 500
    labels = Counter((m.label, m.source_label) for d in docs for m in d.mentions)
    assert labels == {("Drug", "Chemical"): chemicals, ("Disease", "Disease"): diseases}
    assert all(validate_mentions(d) == [] for d in docs)  # every offset slices the text exactly
    assert all(d.text[m.start:m.end] == m.text for d in docs for m in d.mentions)


def test_ncbi_disease(shared_data):
    # 593 documents in the file, PMID 8528200 twice with the same content: read once
    docs = read_all("pubtator", shared_data / "ncbi-disease" / "NCBItrainset_corpus.txt")
    assert len(docs) == 592
    assert {m.label for d in docs for m in d.mentions} == {"Disease"}
    assert len(read_all("pubtator", shared_data / "ncbi-disease" / "NCBIdevelopset_corpus.txt")) == 100
    sentences = read_all("conll", shared_data / "ncbi-disease" / "conll" / "train.tsv")
    assert len(sentences) == 5432 and sum(len(d.mentions) for d in sentences) == 5145


@pytest.mark.parametrize("name, count", [("scifact", 5183), ("nfcorpus", 3395)])
def test_beir(shared_data, name, count):
    assert len(read_all("beir", shared_data / name)) == count


def test_medquad_answers(shared_data):
    docs = read_all("medquad", shared_data / "medquad")
    # 47,441 question records; 16,407 have an answer (3 MedlinePlus subsets had theirs removed)
    assert len(docs) == 16407
    assert all(d.text.strip() and d.title for d in docs)


def test_aila(shared_data):
    docs = read_all("aila", shared_data / "aila2019")
    kinds = Counter(d.meta["doc_type"] for d in docs)
    assert kinds == {"case": 2914, "statute": 197}
    assert all(d.meta.get("date") and d.meta["court"] == "Supreme Court of India"
               for d in docs if d.meta["doc_type"] == "case")


def test_bva(shared_data):
    folder = shared_data / "bva-decisions" / "summarization" / "single_issue_PTSD_sample"
    docs = read_all("bva", folder)
    # 197 .txt files: 196 decisions and sample_cases.txt, a list of 200 names (4 of them absent)
    assert len(list(folder.glob("*.txt"))) == 197 and len(docs) == 196
    assert all(d.meta["date"] and d.title for d in docs)
    annotated = read_all("bva-annotated", shared_data / "bva-decisions" / "annotated_casetext")
    assert len(annotated) == 26 and all(d.meta["roles"] for d in annotated)


def test_vetclaims(shared_data):
    docs = read_all("vetclaims", shared_data / "vetclaims")
    assert len(docs) == 75
    located = sum(len({(s, e) for s, e, *_ in d.meta["roles"]}) for d in docs)
    missing = sum(d.meta["roles_unlocated"] for d in docs)
    assert missing < 0.02 * (located + missing)


def test_nm_appeals(shared_data):
    docs = read_all("nm-appeals", shared_data / "cap-nm-appeals-outcome" / "nm_appeals_500.tar.gz")
    assert len(docs) == 500
    assert Counter(d.meta.get("outcome") for d in docs) == {"affirm": 228, "reverse": 159, "mixed": 101,
                                                             "dismiss": 12}


def test_nv_bme(shared_data):
    docs = read_all("nv-bme", shared_data / "nv-medical-board-malpractice-filings")
    assert len(docs) == 1584
    matched = [d for d in docs if d.meta["matched"]]
    assert len(matched) >= 1580
    assert all(len(d.meta["date"]) == 10 and d.meta["respondent"] for d in matched)
    assert Counter(d.meta["doc_type"] for d in docs) == {"complaint": 771, "settlement": 646, "order": 97,
                                                          "findings of fact": 61, "stipulation": 9}


def test_import_one_small_corpus(shared_data, tmp_path):
    from indexer.cli import main
    from indexer.pipeline import open_store

    args = ["import", "--set", f'index.dir="{tmp_path}"', "--format", "bva-annotated", "--collection", "bva",
            str(shared_data / "bva-decisions" / "annotated_casetext")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "bva: 26 added" in result.output
    store = open_store(load_settings(None, [f'index.dir="{tmp_path}"']), create=False)  # the store the command wrote
    assert store.raw("select count(*), count(distinct court), min(year) from documents") == [(26, 1, 2000)]
