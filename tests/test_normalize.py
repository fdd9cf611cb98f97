"""Lexicon normalisation: case, plural and abbreviation handling, fallbacks, persistence."""
from __future__ import annotations

import pytest

from indexer.documents import Document, Mention
from indexer.normalize import Normalizer, is_abbreviation, key, singular

MI = "MESH:D009203"


def doc(text: str, *spans: tuple[str, str, str | None]) -> Document:
    """A document whose mentions are (surface, label, id), found left to right in text."""
    mentions, pos = [], 0
    for surface, label, norm in spans:
        start = text.index(surface, pos)
        mentions.append(Mention(start, start + len(surface), surface, label, norm_id=norm))
        pos = start + len(surface)
    return Document("d", "", text, {}, mentions)


@pytest.fixture(scope="module")
def lexicon() -> Normalizer:
    docs = [doc("Acute myocardial infarction (MI) after cocaine.", ("myocardial infarction", "Disease", MI),
                ("MI", "Disease", MI), ("cocaine", "Drug", "MESH:D003042")),
            doc("Myocardial infarctions were rare; MI is serious.", ("Myocardial infarctions", "Disease", MI),
                ("MI", "Disease", MI)),
            doc("Cocaine users.", ("Cocaine", "Drug", "MESH:D003042")),
            doc("Kidney injuries and renal injury.", ("Kidney injuries", "Disease", "MESH:D058186"),
                ("renal injury", "Disease", "MESH:D058186"))]
    return Normalizer.learn(docs)


def test_key_folds_case_hyphens_and_plural():
    assert key("Myocardial  Infarctions") == key("myocardial infarction") == "myocardial infarction"
    assert key("non-Hodgkin lymphomas") == "non hodgkin lymphoma"
    assert key("Kidney injuries") == "kidney injury"
    assert [singular(w) for w in ("virus", "analysis", "abscess", "seizures")] == ["virus", "analysis", "abscess",
                                                                                    "seizure"]
    assert key("  ") == ""


def test_abbreviations_are_recognised():
    assert all(map(is_abbreviation, ["MI", "PTSD", "5-FU", "NSAIDs"]))
    assert not any(map(is_abbreviation, ["Mi", "fever", "Cocaine", "heart attack"]))


def test_one_value_for_variants(lexicon):
    values = {lexicon.lookup("Disease", s) for s in ("MI", "myocardial infarction", "Myocardial Infarctions")}
    assert values == {(MI, "myocardial infarction")}, "readable name is the full form, not the abbreviation"
    assert lexicon.lookup("Drug", "COCAINE") == ("MESH:D003042", "cocaine")
    assert lexicon.lookup("Drug", "myocardial infarction") is None, "the lexicon is per label"


def test_unknown_forms_fall_back_to_normalised_surface(lexicon):
    (m,) = lexicon.normalize_document("Zorblax syndromes.", [Mention(0, 17, "Zorblax syndromes", "Disease")])
    assert (m.norm_id, m.norm_name) == ("text:zorblax syndrome", "zorblax syndromes")
    (m,) = lexicon.normalize_document("QTX.", [Mention(0, 3, "QTX", "Disease")])
    assert (m.norm_id, m.norm_name) == ("text:qtx", "QTX"), "abbreviations keep their case in the name"


def test_in_document_abbreviation_definition(lexicon):
    text = "Renal injury (AKI) was seen; AKI resolved. Zorblax disease (ZD) and ZD again."
    spans = [("Renal injury", "Disease"), ("AKI", "Disease"), ("AKI", "Disease"), ("Zorblax disease", "Disease"),
             ("ZD", "Disease"), ("ZD", "Disease")]
    found = lexicon.normalize_document(text, doc(text, *[(s, label, None) for s, label in spans]).mentions)
    assert [m.norm_id for m in found] == ["MESH:D058186"] * 3 + ["text:zorblax disease"] * 3


def test_gold_ids_are_kept_and_named(lexicon):
    (m,) = lexicon.normalize_document("heart attack", [Mention(0, 12, "heart attack", "Disease", norm_id=MI)])
    assert (m.norm_id, m.norm_name) == (MI, "myocardial infarction")


def test_save_and_load(lexicon, tmp_path):
    lexicon.save(tmp_path / "lexicon.json")
    again = Normalizer.load(tmp_path / "lexicon.json")
    assert again.lexicon == lexicon.lexicon and again.names == lexicon.names
    assert Normalizer.load(tmp_path / "absent.json").lookup("Disease", "MI") is None


@pytest.mark.slow
def test_lexicon_from_bc5cdr(settings, shared_data):
    from indexer.train.ner import data_paths, load_documents

    docs = load_documents(data_paths(settings, settings.train_ner.train), "pubtator", settings.train_ner.label_map)
    norm = Normalizer.learn(docs)
    assert len(norm.lexicon["Drug"]) > 1000 and len(norm.lexicon["Disease"]) > 1000
    hit = norm.lookup("Disease", "Myocardial Infarctions")
    assert hit is not None and hit[0] == "MESH:D009203"
