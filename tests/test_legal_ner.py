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
    assert materialize(shared_data, dev) == 59 + 56 + 56 + 56 + 112 + 56 + 56 + 86 + 112 + 90
    docs = load_documents([dev], "beir", {})
    splits = Counter(d.meta["split"] for d in docs)
    assert splits == {"tune": 30, "test": 29, "heldout": 56, "heldout2": 56, "heldout3": 56,
                      "heldout4": 112, "heldout5": 56, "heldout6": 56, "heldout7": 86, "heldout8": 112,
                      "heldout9": 90}
    labels = Counter(m.label for d in docs for m in d.mentions)
    assert set(labels) == {"Disease", "Drug"}
    assert sum(labels.values()) == 144 + 40 + 43 + 25 + 98 + 23 + 28 + 47 + (70 + 5) + 43  # heldout8: +5 by the ruling on generic classes
    assert {d.meta["source"] for d in docs} == {"bva-decisions", "nv-medical-board-malpractice-filings",
                                                "cap-nm-appeals-outcome", "vetclaims"}
    # each fresh set draws from files no earlier set used, one passage per file
    files = {split: {d.meta["file"] for d in docs if d.meta["split"] in group} for split, group in
             (("old", ("tune", "test")), ("heldout", ("heldout",)), ("heldout2", ("heldout2",)),
              ("heldout3", ("heldout3",)), ("heldout4", ("heldout4",)), ("heldout5", ("heldout5",)), ("heldout6", ("heldout6",)),
              ("heldout7", ("heldout7",)), ("heldout8", ("heldout8",)),
              ("heldout9", ("heldout9",)))}
    assert not files["old"] & files["heldout"] and not (files["old"] | files["heldout"]) & files["heldout2"]
    assert not (files["old"] | files["heldout"] | files["heldout2"]) & files["heldout3"]
    assert not (files["old"] | files["heldout"] | files["heldout2"] | files["heldout3"]) & files["heldout4"]
    assert len(files["heldout"]) == len(files["heldout2"]) == len(files["heldout3"]) == 56
    assert len(files["heldout4"]) == 112 and len(files["heldout5"]) == 56
    assert not (files["old"] | files["heldout"] | files["heldout2"] | files["heldout3"] | files["heldout4"]) & \
        files["heldout5"]
    assert len(files["heldout6"]) == 56 and not set().union(*(v for k, v in files.items() if k != "heldout6")) & \
        files["heldout6"]
    # the BVA sample had only 19 files no earlier set used: 18 BVA passages instead of the doubled quota's 44
    assert len(files["heldout7"]) == 86 and not set().union(*(v for k, v in files.items() if k != "heldout7")) & \
        files["heldout7"]
    # the veterans' passages of heldout8 come from the vetclaims decisions (the single-issue folder ran out)
    assert len(files["heldout8"]) == 112 and not set().union(*(v for k, v in files.items() if k != "heldout8")) & \
        files["heldout8"]
    assert {d.meta["source"] for d in docs if d.meta["split"] == "heldout8"} == {
        "vetclaims", "nv-medical-board-malpractice-filings", "cap-nm-appeals-outcome"}
    # heldout9: the vetclaims decisions with the BVA quotas (22), Nevada and New Mexico with theirs doubled
    assert len(files["heldout9"]) == 90 and not set().union(*(v for k, v in files.items() if k != "heldout9")) & \
        files["heldout9"]
    assert Counter(d.meta["source"] for d in docs if d.meta["split"] == "heldout9") == {
        "vetclaims": 22, "nv-medical-board-malpractice-filings": 32, "cap-nm-appeals-outcome": 36}
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
    # legal text (it cites the NAC): a bare "death" is the event a case is about, never a diagnosis
    assert sorted((m.text, m.start) for m in kept) == sorted([("sepsis", text.index("sepsis")),
                                                              ("NAC", text.index("NAC 40"))])
    medical = "Villanueva's death; death followed sepsis."
    assert [m.text for m in stop.filter(medical, [_m(medical, "death", "Disease", nth=1)])] == ["death"]


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


@pytest.mark.data
def test_checksums_and_ids_are_checked(shared_data, tmp_path):
    """A passage whose text no longer matches its checksum, or an id annotated twice, is an error naming it."""
    import json

    from indexer.errors import ReaderError
    from indexer.legal_dev import HELDOUT2, passages

    row = json.loads(HELDOUT2.read_text(encoding="utf-8").splitlines()[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(dict(row, sha256="0" * 16)) + "\n", encoding="utf-8")
    with pytest.raises(ReaderError, match=row["_id"]):
        list(passages(shared_data, bad))
    twice = tmp_path / "twice.jsonl"
    twice.write_text((json.dumps(row) + "\n") * 2, encoding="utf-8")
    with pytest.raises(ReaderError, match="annotated twice"):
        list(passages(shared_data, twice))


@pytest.mark.data
def test_the_sampler_is_seeded_stratified_and_leaves_used_files_out(shared_data):
    from indexer.legal_dev import ANNOTATIONS, HELDOUT
    from indexer.legal_sample import QUOTAS, draw, used_files

    medical = {"ptsd", "depression", "pain", "cocaine", "alcohol", "disorder", "diagnosis", "medication"}
    used = used_files([ANNOTATIONS])
    quotas = {corpus: (prefix, {"medical": 1, "none": 1}) for corpus, (prefix, _) in QUOTAS.items()}
    first = draw(shared_data, medical, seed=7, exclude=used, quotas=quotas)
    assert first == draw(shared_data, medical, seed=7, exclude=used, quotas=quotas)
    assert len(first) == 8 and not {r["metadata"]["file"] for r in first} & used
    assert Counter(r["metadata"]["stratum"] for r in first) == {"medical": 4, "none": 4}
    assert {r["metadata"]["source"] for r in first} == set(QUOTAS) and all(
        r["_id"].startswith("vc-") for r in first if r["metadata"]["source"] == "vetclaims")
    # a corpus the quotas leave out is skipped and the others draw what they drew without it
    without = {c: q for c, q in quotas.items() if c != "vetclaims"}
    assert draw(shared_data, medical, seed=7, exclude=used, quotas=without) == \
        [r for r in first if r["metadata"]["source"] != "vetclaims"]
    assert {r["metadata"]["file"] for r in draw(shared_data, medical, seed=8, exclude=used, quotas=quotas)} != \
        {r["metadata"]["file"] for r in first}
    assert used_files([HELDOUT]) and not used_files([HELDOUT]) & used


def test_strata_of_hand_made_passages():
    from indexer.legal_sample import stratum

    medical = {"ptsd", "depression", "insomnia"}
    assert stratum("The Veteran has PTSD, depression and insomnia since his service in Vietnam.", medical) == "dense"
    assert stratum("The Veteran has PTSD since his service in Vietnam, as the examiner found.", medical) == "medical"
    assert stratum("The benefit of the doubt doctrine applies here, see Gilbert v. Derwinski, 1 Vet. App. 49.", medical) \
        == "citation"
    assert stratum("The RO sent the notice letter to the Veteran in June and he did not reply.", medical) == "office"
    assert stratum("The appeal is remanded for further development of the record as ordered.", medical) == "none"
    assert stratum("12 3\n45 6\n7 8\n9 10\n11", medical) is None  # a table, not prose


def test_legal_text_is_told_from_medical_text():
    stop = LegalFilter(legal_only={"remand", "appellant"})
    assert stop.is_legal("See 38 C.F.R. § 3.304(f).")
    assert stop.is_legal("The appellant asks for a remand.")  # two legal-only words
    assert not stop.is_legal("We remand nothing: the appellant ...".replace("appellant", "patient"))
    assert not stop.is_legal("Cocaine-induced myocardial infarction in a 35-year-old man was treated with i.v. "
                             "nitroglycerin (Smith et al.).")


def test_names_from_aliases_parties_degrees_and_person_verbs():
    text = ("Nicholas Karel (Karel) solicited Hibbert. Lindberg testified that he saw it. Respondent, John Doe, "
            "M.D., agreed. Prabhu, M.D., President. Valium would help.")
    counts = learn_counts([text])
    assert {"Karel", "John", "Doe", "Prabhu"} <= set(counts["names"])
    assert {"Lindberg", "Valium"} <= set(counts["actors"])
    lexicon = Normalizer({"Drug": {key("Valium"): "MESH:D003975"}}, {"MESH:D003975": "diazepam"})
    stop = LegalFilter(lexicon=lexicon)
    mentions = [_m(text, w, "Drug") for w in ("Karel", "Lindberg", "Prabhu")] + [_m(text, "Valium", "Drug", nth=0)]
    assert [m.text for m in stop.filter(text, mentions)] == ["Valium"]  # the lexicon keeps what it knows


def test_legal_only_span_rules():
    stop = LegalFilter()
    text = ("Under NRS 454.201 and 38 C.F.R. § 3.304 the Veteran's disorder, a disorder, his chronic cough, "
            "chronic pain, blunt force injuries, liver injury, the sexual abuse, Segura's fall, the promotion "
            "from E-1 to E-2, and NRS 630,3062(1) were noted.")
    lexicon = Normalizer({"Disease": {key("chronic pain"): "MESH:D059350", key("liver injury"): "MESH:D056486"}},
                         {"MESH:D059350": "chronic pain", "MESH:D056486": "liver injury"})
    stop.lexicon = lexicon
    mentions = [_m(text, "NRS 454", "Drug"), _m(text, "Veteran's disorder", "Disease"),
                _m(text, "disorder", "Disease", nth=1), _m(text, "chronic cough", "Disease"),
                _m(text, "chronic pain", "Disease"), _m(text, "blunt force injuries", "Disease"),
                _m(text, "liver injury", "Disease"), _m(text, "sexual abuse", "Disease"),
                _m(text, "Segura's fall", "Disease"), _m(text, "E-", "Drug"), _m(text, "NRS", "Drug", nth=1)]
    kept = stop.filter(text, mentions)
    assert [(m.text, text[m.start:m.end]) for m in kept] == [("cough", "cough"), ("chronic pain", "chronic pain"),
                                                             ("liver injury", "liver injury")]
    medical = "Patients with chronic cough and a disorder of sleep; E-2 receptors."
    found = [_m(medical, "chronic cough", "Disease"), _m(medical, "disorder", "Disease"), _m(medical, "E-", "Drug")]
    assert [m.text for m in stop.filter(medical, found)] == ["chronic cough", "disorder", "E-"]  # not legal text


def test_a_va_precedent_opinion_citation_is_not_a_drug():
    stop = LegalFilter()
    text = "See VAOPGCPREC 12-99 and 38 C.F.R. § 3.304(f); the Veteran was prescribed sertraline."
    mentions = [_m(text, "VAOPGCPREC 12-99", "Drug"), _m(text, "sertraline", "Drug")]
    assert [m.text for m in stop.filter(text, mentions)] == ["sertraline"]


def test_a_repaired_span_keeps_its_least_sure_confidence():
    text = "He had paroxysmal atrial tachycardia."
    parts = [dict_replace(_m(text, "paroxysmal", "Disease"), 0.6), dict_replace(_m(text, "atrial tachycardia",
                                                                                   "Disease"), 0.9)]
    (joined,) = repair_spans(text, parts)
    assert joined.text == "paroxysmal atrial tachycardia" and joined.confidence == 0.6


def dict_replace(mention: Mention, confidence: float) -> Mention:
    from dataclasses import replace

    return replace(mention, confidence=confidence)


def test_legal_phrases_are_learned_against_the_medical_background():
    lexicon = Normalizer({"Disease": {key("liver injury"): "MESH:D056486", key("death"): "MESH:D003643"}},
                         {"MESH:D056486": "liver injury", "MESH:D003643": "death"})
    legal = ["He suffered bodily injury; the death penalty was sought; liver injury was found. "] * 3
    found = LegalFilter.learn(legal, lexicon, term_count=3, medical=["Liver injury and death followed bodily ..."])
    assert {"bodily injury", "death penalty"} <= found.phrases
    assert "liver injury" not in found.phrases  # the lexicon knows it (and the medical text has it)
    text = "It pays for bodily injury and liver injury."
    kept = found.filter(text, [_m(text, "bodily injury", "Disease"), _m(text, "liver injury", "Disease")])
    assert [m.text for m in kept] == ["liver injury"]


def test_the_legal_confidence_floor_applies_to_legal_text_only():
    from dataclasses import replace

    stop = LegalFilter(min_confidence=0.9)
    legal = "Under 38 C.F.R. § 3.304 the Veteran has PTSD and insomnia."
    medical = "Patients had PTSD and insomnia."
    for text, want in ((legal, ["PTSD"]), (medical, ["PTSD", "insomnia"])):
        found = [replace(_m(text, "PTSD", "Disease"), confidence=0.95),
                 replace(_m(text, "insomnia", "Disease"), confidence=0.85)]
        assert [m.text for m in stop.filter(text, found)] == want


def test_the_legal_floor_spares_the_forms_the_lexicon_knows():
    from dataclasses import replace

    lexicon = Normalizer({"Disease": {key("insomnia"): "MESH:D007319"}}, {"MESH:D007319": "insomnia"})
    stop = LegalFilter(min_confidence=0.98, lexicon=lexicon)
    text = "Under 38 C.F.R. § 3.304 the Veteran has nightmares and insomnia."
    found = [replace(_m(text, "nightmares", "Disease"), confidence=0.95),
             replace(_m(text, "insomnia", "Disease"), confidence=0.85)]
    assert [m.text for m in stop.filter(text, found)] == ["insomnia"]  # the unknown form needs 0.98


def test_legal_senses_acts_and_citations_are_no_entities():
    stop = LegalFilter()
    text = ("Under the Veterans Claims Assistance Act of 2000 (VCAA), see 38 C.F.R. § 3.159, the VCAA applies. "
            "He claimed an acquired psychiatric disability, hearing loss, future wage loss and loss of consortium. "
            "The search and unreasonable seizure of his car preceded a seizure. Torcia, supra, at 66. "
            "Nitric oxide (NO) fell; NAC 600 mg was given; see Pelegrini v. As we noted, Feil testified. "
            "After the search, the seizure of the cocaine was upheld. He had a seizure disorder. "
            "He was disciplined pursuant to the MPA for failing to keep records.")
    found = [_m(text, "VCAA", "Drug", nth=1), _m(text, "psychiatric disability", "Disease"),
             _m(text, "hearing loss", "Disease"), _m(text, "wage loss", "Disease"),
             _m(text, "loss of consortium", "Disease"), _m(text, "seizure", "Disease"),
             _m(text, "seizure", "Disease", nth=1), _m(text, "supra", "Drug"), _m(text, "NO", "Drug"),
             _m(text, "NAC", "Drug"), _m(text, "Pelegrini", "Drug"), _m(text, "Feil", "Drug"),
             _m(text, "seizure", "Disease", nth=2), _m(text, "seizure disorder", "Disease"), _m(text, "MPA", "Drug")]
    kept = stop.filter(text, found)
    assert [(m.text, m.start) for m in kept] == [("hearing loss", text.index("hearing loss")),
                                                 ("NO", text.index("(NO)") + 1), ("NAC", text.index("NAC")),
                                                 ("seizure disorder", text.index("seizure disorder"))]


def test_a_seizure_is_a_fit_unless_a_search_is_near():
    text = "Under 38 C.F.R. § 3.309 the Veteran had a seizure in service and headaches since."
    assert [m.text for m in LegalFilter().filter(text, [_m(text, "seizure", "Disease")])] == ["seizure"]


def test_a_legal_document_hint_applies_the_legal_rules_to_any_passage():
    text = "She had tested positive for the virus before the rape and had no symptoms."
    start = text.index("rape")
    rape = Mention(start, start + 4, "rape", "Disease", confidence=0.99)
    rules = LegalFilter()
    assert not rules.is_legal(text)
    assert rules.filter(text, [rape]) == [rape], "no legal word: read as medical text"
    assert rules.filter(text, [rape], legal=True) == [], "a passage of a court's opinion: an event, not a diagnosis"


def test_legal_dev_passages_carry_what_their_readers_give_documents():
    from indexer.legal_dev import READER_META
    from indexer.legal_filter import is_legal_document
    from indexer.readers import bva, nv_bme, vetclaims

    assert READER_META["bva-decisions"]["court"] == bva.COURT
    decision = vetclaims.to_document({"docID": "1302554", "text": "The Veteran has PTSD."}, "vetclaims")
    assert READER_META["vetclaims"].items() <= decision.meta.items()
    assert READER_META["nv-medical-board-malpractice-filings"]["court"] == nv_bme.BOARD
    assert all(is_legal_document(meta) for meta in READER_META.values())
    assert is_legal_document({"doc_type": "abstract"}) is None and is_legal_document({}) is None


def test_legal_text_names_its_people_by_possessives_supra_and_named():
    text = ("The Department paid for Kristyn's medications. La-Fave, supra, agrees. A man named \"Ismael\" had "
            "shot her. The patient had Parkinson's disease.")
    found = [Mention(text.index(w), text.index(w) + len(w), w, label, confidence=0.99)
             for w, label in (("Kristyn", "Drug"), ("La-Fave", "Drug"), ("Ismael", "Drug"),
                              ("Parkinson's disease", "Disease"))]
    kept = LegalFilter().filter(text, found, legal=True)
    assert [m.text for m in kept] == ["Parkinson's disease"], "an eponym's disease is no one's possession"
    assert [m.text for m in LegalFilter().filter(text, found[:1], legal=None)] == ["Kristyn"], \
        "outside legal text a possessive names no one"


def test_terms_of_art_are_never_abbreviations():
    texts = ["The PTSD rating was increased; a PTSD claim and PTSD benefits followed."] * 30
    learned = LegalFilter.learn(texts, medical=["an unrelated medical sentence"])
    assert "ptsd" not in learned.terms


def test_name_model_tells_names_from_drug_forms():
    from indexer.legal_filter import NAME_ODDS, NameModel

    names = ["Velasquez", "Griego", "Martinez", "Gonzales", "Romero", "Sanchez", "Dominguez", "Vasquez"]
    drugs = ["clonazepam", "lorazepam", "diazepam", "oxycodone", "hydrocodone", "methadone", "gabapentin"]
    model = NameModel(names, drugs)
    assert model.log_odds("Rodriguez") > NAME_ODDS > model.log_odds("alprazolam")
    assert not NameModel([], drugs).ready, "no names learned: the rule stays off"
    text = "The court noted that Hernandez was taking it."
    start = text.index("Hernandez")
    drug = Mention(start, start + 9, "Hernandez", "Drug", confidence=0.99)
    rules = LegalFilter(names=names)
    rules._name_model = model
    assert rules.filter(text, [drug], legal=True) == [] and rules.filter(text, [drug]) == [drug]


def test_symbols_before_case_numbers_weapons_and_per_curiam_are_no_drugs_in_legal_text():
    text = ("In The Matter of Charges and\nNO.\nComplaint Against Case No. 07-12232-1. Certificate Na, A 63753. "
            "He saw a soldier blown up by a booby-trapped AK-47 and landmine explosions. 14 Vet. App. 327 "
            "(per curium order). He was given Li 300 mg and lithium.")
    found = [_m(text, w, "Drug") for w in ("NO", "Na", "AK-47", "landmine", "curium", "Li", "lithium")]
    kept = LegalFilter().filter(text, found, legal=True)
    assert [m.text for m in kept] == ["Li", "lithium"], "a dosed symbol is a drug"
    defined = "Nitric oxide (NO) fell and NO rose."
    assert len(LegalFilter().filter(defined, [_m(defined, "NO", "Drug", nth=1)], legal=True)) == 1, "spelled out"
    medical = "Production of NO. It rose."
    assert len(LegalFilter().filter(medical, [_m(medical, "NO", "Drug")], legal=False)) == 1, "medical text keeps it"
