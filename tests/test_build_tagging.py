"""`indexer build` tags documents without gold mentions in the same resumable pass as encoding."""
from __future__ import annotations

import dataclasses
import re

import pytest
from click.testing import CliRunner
from search_fixtures import KeywordEmbedder, sample_chunker, sample_documents

from indexer import pipeline
from indexer.documents import Mention
from searchd.query import Query
from searchd.service import SearchService

TERMS = {"ptsd": "Disease", "warfarin": "Drug", "sertraline": "Drug", "bleeding": "Disease"}


class WordTagger:
    """A fake tagger at the protocol seam: marks the words in TERMS; can stop after some batches."""

    labels = ("Disease", "Drug")

    def __init__(self, checksum: str = "fake-1", stop_after: int | None = None):
        self.checksum = checksum
        self.stop_after = stop_after
        self.texts: list[str] = []

    def tag(self, texts, legal=None):
        if self.stop_after is not None and len(self.texts) >= self.stop_after:
            raise KeyboardInterrupt  # what a Ctrl-C between batches looks like
        self.texts += texts
        return [[Mention(m.start(), m.end(), m.group(0), TERMS[m.group(0).lower()])
                 for m in re.finditer(r"\w+", t) if m.group(0).lower() in TERMS] for t in texts]


@pytest.fixture
def untagged(settings, sample_dir):
    """The sample corpus without its gold mentions, except for the first two documents."""
    settings = settings.replace(ner=dataclasses.replace(settings.ner, build_batch=3))
    docs = sample_documents(sample_dir)
    docs = docs[:2] + [dataclasses.replace(d, mentions=[]) for d in docs[2:]]
    store = pipeline.open_store(settings)
    store.upsert_documents("sample", docs, sample_chunker)
    return settings, store, docs


def model_mentions(store) -> int:
    return store.raw("SELECT count(*) FROM mentions WHERE origin = 'model'")[0][0]


def test_build_tags_untagged_documents_and_resumes_after_a_kill(untagged):
    settings, store, docs = untagged
    first = pipeline.sync(settings, store, KeywordEmbedder())  # an index without entities answers
    assert first["tagger"] is None and model_mentions(store) == 0
    killed = WordTagger(stop_after=3)  # one batch of 3 documents, then interrupted
    with pytest.raises(KeyboardInterrupt):
        pipeline.sync(settings, store, KeywordEmbedder(), tagger=killed)
    assert len(killed.texts) == 3 and len(store.untagged_documents("fake-1")) == len(docs) - 2 - 3
    reopened, index, manifest = pipeline.open_index(settings)  # the previous index still answers
    assert manifest["built_at"] == first["built_at"]
    with SearchService(reopened, index, KeywordEmbedder(), settings, manifest) as service:
        assert service.search(Query("PTSD", "hybrid")).hits
    resumed = WordTagger()
    manifest = pipeline.sync(settings, store, KeywordEmbedder(), tagger=resumed)
    assert len(resumed.texts) == len(docs) - 2 - 3, "only the documents the killed build did not reach"
    assert manifest["tagger"] == "fake-1" and manifest["tagged_last_build"] == len(docs) - 5
    tagged_texts = set(killed.texts) | set(resumed.texts)
    assert tagged_texts == {d.text for d in docs[2:]}, "documents with gold mentions are never tagged"
    again = WordTagger()
    assert pipeline.sync(settings, store, KeywordEmbedder(), tagger=again)["tagged_last_build"] == 0
    assert again.texts == []
    expected = sum(len(t) for t in WordTagger().tag([d.text for d in docs[2:]]))
    assert model_mentions(store) == expected > 0


def test_a_new_tagger_or_new_text_tags_again(untagged, sample_dir):
    settings, store, docs = untagged
    pipeline.sync(settings, store, KeywordEmbedder(), tagger=WordTagger())
    changed = dataclasses.replace(docs[5], text=docs[5].text + " Warfarin was stopped.")
    store.upsert_documents("sample", [changed], sample_chunker)
    tagger = WordTagger()
    pipeline.sync(settings, store, KeywordEmbedder(), tagger=tagger)
    assert tagger.texts == [changed.text]
    other = WordTagger(checksum="fake-2")
    assert pipeline.sync(settings, store, KeywordEmbedder(), tagger=other)["tagged_last_build"] == len(docs) - 2


def test_cli_build_without_a_tagger_says_so_once(settings, sample_dir, tmp_path):
    from indexer.cli import main

    opts = ["--set", f'index.dir="{settings.index.dir}"', "--set", f'models.path=["{tmp_path / "none"}"]']
    runner = CliRunner()
    assert runner.invoke(main, ["import", *opts, "--format", "beir", "--collection", "s", str(sample_dir)]).exit_code == 0
    result = runner.invoke(main, ["build", *opts])
    assert result.exit_code == 0, result.output
    assert result.output.count("no tagger found") == 1 and "indexer train-models" in result.output


class HintTagger(WordTagger):
    """Records the legal hint the build gives each text."""

    def __init__(self):
        super().__init__()
        self.hints: dict[str, object] = {}

    def tag(self, texts, legal=None):
        self.hints.update(zip(texts, legal))
        return super().tag(texts, legal)


def test_build_tells_the_tagger_which_documents_are_legal(settings, sample_dir):
    from indexer.documents import Document

    docs = [Document("bva-1", "Decision", "The Veteran was treated with sertraline.",
                     {"court": "Board of Veterans' Appeals", "doc_type": "decision"}),
            Document("nm-1", "Opinion", "She tested positive before the ptsd episode.", {"doc_type": "opinion"}),
            Document("pm-1", "Abstract", "Warfarin caused bleeding.", {"doc_type": "abstract"})]
    store = pipeline.open_store(settings)
    store.upsert_documents("mixed", docs, sample_chunker)
    tagger = HintTagger()
    pipeline.sync(settings, store, KeywordEmbedder(), tagger=tagger)
    assert tagger.hints == {docs[0].text: True, docs[1].text: True, docs[2].text: None}
