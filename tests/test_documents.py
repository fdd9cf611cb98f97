import pytest

from indexer.documents import Document, Mention, chunk_text, offsets_for_model, regex_offsets, sentence_spans, validate_mentions
from indexer.models import packaged_model_dir


@pytest.fixture(scope="module")
def wordpiece():
    return offsets_for_model(str(packaged_model_dir()))


def test_sentences_trimmed_and_split():
    text = "  The claim is denied. See 38 C.F.R. § 3.304(f). e.g. not split.\n\nNew para"
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["The claim is denied.", "See 38 C.F.R. § 3.304(f). e.g. not split.", "New para"]
    assert sentence_spans("   ") == []


@pytest.mark.parametrize("text", [
    "The veteran has PTSD. He denies chest pain. " * 60,
    "Größe café naïve résumé — “quoted” 日本語のテキスト。 " * 80,
    "x" * 5000,  # one giant token run without sentence breaks
])
def test_chunks_slice_text_fit_and_overlap(text, wordpiece):
    chunks = chunk_text(text, wordpiece, max_tokens=64, overlap_tokens=16)
    assert chunks
    for c in chunks:
        assert text[c.start:c.end] == c.text
        assert len(wordpiece(c.text)) <= 62
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end, "neighbouring chunks overlap"
        assert b.start > a.start
    assert chunks[0].start == 0 or text[:chunks[0].start].strip() == ""
    assert text[chunks[-1].end:].strip() == ""


def test_chunks_prefer_sentence_boundaries(wordpiece):
    text = " ".join(f"Sentence number {i} says something about the appeal." for i in range(40))
    chunks = chunk_text(text, wordpiece, max_tokens=64, overlap_tokens=16)
    for c in chunks:
        assert c.text.startswith("Sentence"), c.text[:30]
        assert c.text.endswith(".")


def test_empty_text_has_no_chunks():
    assert chunk_text("", regex_offsets) == []
    assert chunk_text(" \n\t ", regex_offsets) == []


def test_validate_mentions():
    doc = Document("d", "", "no fever but chest pain", mentions=[Mention(3, 8, "fever", "Disease"), Mention(0, 2, "xx", "Disease")])
    problems = validate_mentions(doc)
    assert len(problems) == 1 and "'xx'" in problems[0]
