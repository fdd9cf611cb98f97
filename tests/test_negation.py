"""NegEx/ConText-style negation and hypothesis on hand-written clinical and legal sentences."""
from __future__ import annotations

import json

import pytest

from indexer.errors import ConfigError
from indexer.negation import TRIGGERS_FILE, NegationDetector


@pytest.fixture(scope="module")
def detector() -> NegationDetector:
    return NegationDetector.load()


def state(detector: NegationDetector, sentence: str, mention: str, occurrence: int = 0) -> str:
    start = -1
    for _ in range(occurrence + 1):
        start = sentence.index(mention, start + 1)
    return detector.classify(sentence, (0, len(sentence)), start, start + len(mention))


CASES = [
    # clinical
    ("The patient has no fever but chest pain.", "fever", "negated"),
    ("The patient has no fever but chest pain.", "chest pain", "affirmed"),  # scope ends at "but"
    ("She denies nausea, vomiting or diarrhea.", "diarrhea", "negated"),
    ("Negative for malignancy.", "malignancy", "negated"),
    ("There is no evidence of pneumonia on the chest film.", "pneumonia", "negated"),
    ("Pulmonary embolism was ruled out by CT angiography.", "Pulmonary embolism", "negated"),
    ("Admitted to rule out myocardial infarction.", "myocardial infarction", "hypothetical"),
    ("Possible early sepsis; blood cultures were drawn.", "sepsis", "hypothetical"),
    ("Patients on warfarin are at risk of hemorrhage.", "hemorrhage", "hypothetical"),
    ("Appendicitis cannot be excluded.", "Appendicitis", "hypothetical"),
    ("The patient was treated with metformin for diabetes.", "diabetes", "affirmed"),
    ("No increase in seizure frequency was seen.", "seizure", "affirmed"),  # pseudo-trigger
    ("Without treatment he developed renal failure.", "renal failure", "affirmed"),  # termination "developed"
    ("No headache, which explains the normal scan of the brain tumor.", "brain tumor", "affirmed"),
    ("Hepatitis was absent.", "Hepatitis", "negated"),
    # legal
    ("The VA examiner found no evidence of PTSD.", "PTSD", "negated"),
    ("The Veteran denies suicidal ideation.", "suicidal ideation", "negated"),
    ("The Board denied service connection for hypertension.", "hypertension", "affirmed"),
    ("Service connection for tinnitus is denied.", "tinnitus", "affirmed"),
    ("The plaintiff alleged that the surgeon caused nerve damage.", "nerve damage", "hypothetical"),
    ("It is at least as likely as not that the sleep apnea is related to service.", "sleep apnea", "hypothetical"),
    ("The respondent prescribed oxycodone to a patient with a history of opioid addiction.", "opioid addiction",
     "affirmed"),
]


@pytest.mark.parametrize("sentence,mention,expected", CASES)
def test_cases(detector, sentence, mention, expected):
    assert state(detector, sentence, mention) == expected


def test_scope_is_limited_in_words(detector):
    far = "No complaints today; later in the long afternoon visit the nurse noted a new rash."
    assert state(detector, far, "rash") == "affirmed"
    short = NegationDetector.load(scope_words=1)
    assert state(short, "No acute severe distress.", "distress") == "affirmed"  # two words in between
    assert state(short, "No acute distress.", "distress") == "negated"


def test_only_the_sentence_is_searched(detector):
    text = "No fever. Cough persists."
    start = text.index("Cough")
    assert detector.classify(text, (10, len(text)), start, start + 5) == "affirmed"
    assert detector.classify(text, (0, len(text)), start, start + 5) == "negated", "same text, wider sentence"


def test_trigger_inside_the_mention_is_ignored(detector):
    assert state(detector, "He has non-Hodgkin lymphoma.", "non-Hodgkin lymphoma") == "affirmed"
    assert state(detector, "Pain free walking is possible.", "Pain free walking") == "hypothetical"


def test_trigger_file_is_complete_and_checked(tmp_path):
    data = json.loads(TRIGGERS_FILE.read_text(encoding="utf-8"))
    assert {"negated", "hypothetical", "pseudo", "termination"} <= set(data)
    del data["pseudo"]
    with pytest.raises(ConfigError, match="pseudo"):
        NegationDetector(data)
    with pytest.raises(ConfigError, match="does not exist"):
        NegationDetector.load(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="scope_words=0"):
        NegationDetector.load(scope_words=0)
