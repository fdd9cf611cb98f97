"""The legal NER dev set, its scorer, the legal stop list and abbreviation/spelling-variant folding."""
from __future__ import annotations

import re

from collections import Counter

import pytest

from indexer.documents import Document, Mention
from indexer.legal_filter import LegalFilter, learn_counts, repair_spans
from indexer.normalize import Normalizer, key
from indexer.train.ner import load_documents, negation_scores, score, select_documents



def _m(text: str, surface: str, label: str, negation: str = "affirmed", nth: int = 0) -> Mention:
    start = -1
    for _ in range(nth + 1):
        start = text.index(surface, start + 1)
    return Mention(start, start + len(surface), surface, label, negation=negation)


TEXT = "No evidence of PTSD. He took Valium and Xanax for anxiety."
GOLD = Document("d", "", TEXT, {"source": "x"}, [_m(TEXT, "PTSD", "Disease", "negated"), _m(TEXT, "Valium", "Drug"),
                                                 _m(TEXT, "Xanax", "Drug"), _m(TEXT, "anxiety", "Disease")])


def test_score_counts_hand_made_predictions():
    # found: PTSD (right span, wrong negation), Valium (right), "Xanax for" (wrong span),
    # "He" as Drug (false positive); anxiety is missed.
    found = [_m(TEXT, "PTSD", "Disease"), _m(TEXT, "Valium", "Drug"), _m(TEXT, "Xanax for", "Drug"),
             _m(TEXT, "He", "Drug")]
    metrics = score([GOLD], [found])
    # Disease: 1 TP of 1 predicted, 2 gold -> P 1, R .5; Drug: 1 TP of 3 predicted, 2 gold -> P 1/3, R 1/2
    assert metrics["labels"]["Disease"]["precision"] == 1.0 and metrics["labels"]["Disease"]["recall"] == 0.5
    assert metrics["labels"]["Drug"]["precision"] == pytest.approx(1 / 3)
    assert metrics["labels"]["Drug"]["recall"] == 0.5
    # Disease+Drug together: 2 TP, 4 predicted, 4 gold
    assert metrics["micro"]["precision"] == 0.5 and metrics["micro"]["recall"] == 0.5
    assert metrics["negation"] == {"matched": 2, "correct": 1, "accuracy": 0.5,
                                   "confusion": {"affirmed->affirmed": 1, "negated->affirmed": 1}}


def test_score_of_nothing_found_and_nothing_to_find():
    empty = Document("e", "", "The RO denied the claim.", {}, [])
    metrics = score([empty], [[]])
    assert metrics["micro"] is None and metrics["negation"]["matched"] == 0
    assert negation_scores([GOLD], [list(GOLD.mentions)])["accuracy"] == 1.0


def test_select_documents_by_meta():
    other = Document("o", "", "x", {"source": "y"}, [])
    assert select_documents([GOLD, other], ["source=y"]) == [other]
    assert select_documents([GOLD, other], []) == [GOLD, other]


@pytest.mark.data
def test_dev_set_reads_and_matches_its_documentation(shared_data, tmp_path):
    """The passages are read from the data directory and match the checksums they were annotated with."""
    from indexer.legal_dev import materialize

    dev = tmp_path / "corpus.jsonl"
    assert materialize(shared_data, dev) == 59
    docs = load_documents([dev], "beir", {})
    assert 40 <= len(docs) <= 60
    labels = Counter(m.label for d in docs for m in d.mentions)
    assert set(labels) == {"Disease", "Drug"} and 100 <= sum(labels.values()) <= 150
    assert {d.meta["source"] for d in docs} == {"bva-decisions", "nv-medical-board-malpractice-filings",
                                                "cap-nm-appeals-outcome"}
    assert {d.meta["split"] for d in docs} == {"tune", "test"}
    assert all(m.negation in ("affirmed", "negated", "hypothetical") for d in docs for m in d.mentions)
    assert sum(1 for d in docs if not d.mentions) >= 12  # passages with no entity keep precision honest
    assert all(isinstance(d.meta["offset"], int) and d.meta["file"] for d in docs)


LEGAL = ("See Gilbert v. Derwinski, 1 Vet. App. 49 (1990); Madden v. Gober, 125 F.3d 1477. "
         "The Regional Office (RO) denied it. The Regional Office (RO) wrote to Dr. Smith about Patient A. "
         "Dr. Smith agreed. He was convicted of armed robbery and charged with trafficking. "
         "She was convicted of armed robbery. Both were charged with trafficking. "
         "Post-traumatic stress disorder (PTSD) was diagnosed. Post-traumatic stress disorder (PTSD) again. "
         "A personal injury claim; personal injury damages; an injury claim.")


def test_filter_learns_names_offices_and_crimes_but_not_diseases():
    found = LegalFilter.learn([LEGAL], min_count=1)
    assert {"Derwinski", "Gober", "Smith", "A"} <= found.names and "RO" in found.abbreviations
    assert "PTSD" not in found.abbreviations  # its long form is a disorder
    assert {"armed robbery", "trafficking"} <= found.crimes
    assert "injury" in LegalFilter.learn([LEGAL], term_count=2).terms
    counts = learn_counts([LEGAL])
    assert counts["long_forms"][("RO", "Regional Office")] == 2


def test_filter_drops_legal_false_positives_and_keeps_entities():
    stop = LegalFilter(names={"Derwinski", "Ramona"}, abbreviations={"RO"}, crimes={"armed robbery"})
    text = "In Gilbert v. Derwinski the RO found PTSD; Ramona took Valium ('s) before the armed robbery."
    mentions = [_m(text, w, label) for w, label in (("Gilbert", "Disease"), ("Derwinski", "Disease"),
                                                    ("RO", "Drug"), ("PTSD", "Disease"), ("Ramona", "Drug"),
                                                    ("Valium", "Drug"), ("'s", "Disease"),
                                                    ("armed robbery", "Disease"))]
    kept = stop.filter(text, mentions)
    assert [m.text for m in kept] == ["PTSD", "Valium"]


def test_filter_never_stops_what_the_lexicon_knows(tmp_path):
    lexicon = Normalizer({"Disease": {key("Parkinson"): "MESH:D010300"}}, {"MESH:D010300": "Parkinson disease"})
    found = LegalFilter.learn(["Parkinson v. Brown. Parkinson v. Brown. Dr. Parkinson. Dr. Parkinson."], lexicon)
    assert "Brown" in found.names and "Parkinson" not in found.names
    found.save(tmp_path / "stop.json")
    assert LegalFilter.load(tmp_path / "stop.json").names == found.names
    assert LegalFilter.load(tmp_path / "absent.json").names == set()


def test_spelling_variants_and_abbreviation_fold_to_one_value():
    norm = Normalizer()
    forms = ["post-traumatic stress disorder", "posttraumatic stress disorder", "Post-Traumatic Stress Disorder",
             "post traumatic stress disorders", "post– traumatic stress disorder", "PTSD"]
    values = {norm.fallback(f) for f in forms}
    assert values == {("text:posttraumatic stress disorder", "post-traumatic stress disorder")}
    assert key("non-Hodgkin lymphomas") == "non hodgkin lymphoma"  # "non" is not joined
    text = "He has PTSD and hypertension."
    found = norm.normalize_document(text, [_m(text, "PTSD", "Disease"), _m(text, "hypertension", "Disease")])
    assert [m.norm_id for m in found] == ["text:posttraumatic stress disorder", "text:hypertension"]


def test_old_lexicon_keys_are_refolded_and_table_short_forms_use_them():
    norm = Normalizer({"Disease": {"post traumatic stress disorder": "MESH:D013313"}},
                      {"MESH:D013313": "post-traumatic stress disorder"})
    assert norm.lookup("Disease", "posttraumatic stress disorder") == ("MESH:D013313",
                                                                      "post-traumatic stress disorder")
    assert norm.lookup("Disease", "PTSD") == ("MESH:D013313", "post-traumatic stress disorder")
    assert Normalizer(abbreviations={}).fallback("PTSD") == ("text:ptsd", "PTSD")


def test_spans_are_repaired_before_the_stop_rules():
    text = "He had paroxysmal atrial tachycardia and a fungal infection of his feet; cough, fever."
    found = repair_spans(text, [_m(text, "paroxysmal", "Disease"), _m(text, "atrial tachycardia", "Disease"),
                                _m(text, "fungal infection of his feet", "Disease"), _m(text, "cough", "Disease"),
                                _m(text, "fever", "Disease")])
    assert [m.text for m in found] == ["paroxysmal atrial tachycardia", "fungal infection", "cough", "fever"]
    assert all(text[m.start:m.end] == m.text for m in found)


def test_text_rules_stop_events_vague_heads_statutes_and_local_names():
    stop = LegalFilter(legal_only={"probation"})
    text = ("The National Academy of Sciences (NAS) wrote. His mother, Ramona, had mental problems before "
            "Villanueva's death; death followed sepsis. See NAC 630.153 and 1999-NMCA-135; NAC 40 mg. "
            "She got probation.")
    mentions = [_m(text, w, label) for w, label in (("NAS", "Drug"), ("Ramona", "Drug"), ("mental problems", "Disease"),
                                                    ("death", "Disease"), ("sepsis", "Disease"), ("NAC", "Drug"),
                                                    ("NMCA", "Drug"), ("probation", "Disease"))]
    mentions += [_m(text, "death", "Disease", nth=1), _m(text, "NAC", "Drug", nth=1)]
    kept = stop.filter(text, mentions)
    assert sorted((m.text, m.start) for m in kept) == sorted([("death", text.index("death;") + 7),
                                                              ("sepsis", text.index("sepsis")),
                                                              ("NAC", text.index("NAC 40"))])


def test_legal_only_words_never_appear_in_medical_text():
    found = LegalFilter.learn(["probation and pain. " * 3], term_count=3, medical=["pain and fever"])
    assert found.legal_only == {"probation"}  # "pain" and "and" are in the medical text


def test_code_names_and_the_number_sign_are_not_drugs():
    from indexer.documents import Mention
    from indexer.legal_filter import LegalFilter

    text = ("DOCKET NO. 94-39 228. Under NMSA 1978, § 52-1-26 and the Act (NRS 630), nitric oxide (NO) "
            "levels rose; NO synthase was inhibited.")
    found = [Mention(text.index(w), text.index(w) + len(w), w, "Drug") for w in ("NO", "NMSA", "NRS")]
    no_oxide = text.index("(NO)") + 1
    found += [Mention(no_oxide, no_oxide + 2, "NO", "Drug"), Mention(text.index("NO synthase"),
                                                                     text.index("NO synthase") + 2, "NO", "Drug")]
    kept = LegalFilter.load().filter(text, found)
    assert [(m.start, m.text) for m in kept] == [(no_oxide, "NO"), (text.index("NO synthase"), "NO")]


def test_a_federal_circuit_is_not_a_drug():
    from indexer.documents import Mention
    from indexer.legal_filter import LegalFilter

    text = "Degmetich v. Brown, 104 F.3d 1328 (Fed. Cir. 1997); Smith, 9 F.3d 1 (9th Cir. 2001)."
    found = [Mention(m.start(), m.end(), "Cir", "Drug") for m in re.finditer("Cir", text)]
    assert LegalFilter.load().filter(text, found) == []
