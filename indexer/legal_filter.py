"""Drop tagger mentions that legal text makes look medical: party names, office abbreviations, crimes.

A tagger trained on PubMed abstracts has never seen "Gilbert v. Derwinski", "the RO" or "two counts
of trafficking", and marks them as Disease or Drug. The stop list is learned from raw legal text
(no labels): names are the capitalised words of citations ("X v. Y") and of titles ("Dr. X",
"Patient A"); abbreviations are those the text defines, "Regional Office (RO)", whose long form is
not medical; crimes are what people are "convicted of" or "charged with". A form the tagger's
lexicon knows is never stopped, so "Parkinson" or "Valium" stay entities wherever they appear.
Two rules need no list: a mention beside a citation's "v." is a party, and a mention without a
letter ("'s", "--") is a tokenisation accident. The same name and abbreviation patterns are also read
from the text being tagged, so a document's own "National Academy of Sciences (NAS)" or "his
mother, Ramona," stops its mentions even when the learned list has never seen that document.

Narrative legal prose also trips the tagger's span boundaries and its sense of what is a disease:
two same-label mentions with only a space between them are one name ("paroxysmal" + "atrial
tachycardia"); a Disease span ending in "of his feet" loses the possessive tail; a Disease span
headed by a vague noun ("mental problems", "bipolar type") is no diagnosis; and "death" after a
possessive ("Villanueva's death", "his death") is the event a case is about, not a condition.
Two more need no document: a Disease span whose head word is written often in the legal corpora
and never in six million words of medical text (SciFact, NFCorpus, MedQuAD: "probation",
"arbitration", "disqualification") is legal vocabulary, and an upper-case form followed by a
section number ("NAC 630.153", "NRS 630.301") or inside a neutral citation ("1999-NMCA-135") is
a statute or a reporter.

Some rules hold only in text that reads as legal (`is_legal`: a citation, a code, a party, or two
legal-only words; no BC5CDR abstract does): a Disease span loses "chronic" and like modifiers, a
generic head alone, someone's condition, an unknown injury, an event or a bare death is no
diagnosis, codes with sections and pay grades are no entity, and mentions of forms the lexicon
does not know go under `min_confidence` (0.98 by default: legal text's false positives are mostly
names and legal senses the lexicon has never seen; what it knows keeps the general 0.8). Two-word legal phrases ("bodily injury", "death penalty") are learned like the legal-only words.

`python -m indexer.legal_filter` learns the list from the configured data directory's legal
corpora and writes it to indexer/data/legal_stoplist.json, the file the tagger loads.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from indexer.documents import Mention
from indexer.normalize import Normalizer, is_abbreviation, key, singular

STOPLIST_FILE = Path(__file__).resolve().parent / "data" / "legal_stoplist.json"
KINDS = ("names", "abbreviations", "crimes", "terms", "legal_only", "phrases", "leaning", "disease_forms", "drug_forms")
# a Disease head this much more frequent in the legal corpora than in the medical background (natural log of the
# ratio of rates, add-half smoothed) and written at least LEANING_COUNT times there is legal vocabulary
# ("death penalty", "drug paraphernalia"); the psychiatric words of the PTSD decisions stay under it
# ("nightmares" 2.7, "flashbacks" 3.6); abbreviations ("PTSD", written in capitals) are never legal vocabulary
LEANING_LOG_RATIO, LEANING_COUNT = 4.0, 20

_CAP = r"[A-Z][a-z]+(?:['’-][A-Z]?[a-z]+)?"
_CITATION = re.compile(rf"\b({_CAP})\s+v\.\s+({_CAP})\b")
_TITLED = re.compile(r"\b(?:Mr|Ms|Mrs|Dr|Judge|Justice|Agent|Officer|Detective|Sergeant|Sgt|Patient)\.?\s+"
                     r"([A-Z](?:[a-z]+(?:['’-][A-Z]?[a-z]+)?)?)\b(?!\.\w)")
# "his sons' mother, Ramona, were": a capitalised word set off by commas after a person noun is a name.
_ROLES = ("mother|father|wife|husband|son|daughter|brother|sister|girlfriend|boyfriend|friend|victim|witness|"
          "neighbou?r|cousin|aunt|uncle|grandmother|grandfather|stepfather|stepmother|fianc[eé]e?|co-?worker|"
          "roommate|child|companion|partner|spouse")
_APPOSITIVE = re.compile(rf"\b(?:{_ROLES})s?['’]?,\s+({_CAP})(?:\s+({_CAP}))?\s*,")
# "Nicholas Karel (Karel)": a short name defined for a person; "Lindberg testified", "Hibbert would write":
# a capitalised word doing what people do in a record; "Respondent, John Smith, M.D.": a party's name.
_ALIAS = re.compile(rf"\b{_CAP}\s+({_CAP})\s+\(\s*({_CAP})\s*\)")
_PERSON_VERBS = ("testified|stated|told|said|asked|argued|contended|contends|explained|admitted|agreed|claimed|"
                 "responded|denied|recalled|acknowledged|maintained|asserted|alleged|would|wrote|signed|pleaded|"
                 "pled|appeals|appealed|moved|filed|objected|conceded|involved|held|sued|testifies|argues|notes|"
                 "was charged|was convicted|was sentenced|was arrested|was indicted|was found guilty")
_ACTOR = re.compile(rf"(?:^|(?<=[.;:!?}}]\s)|(?<=[\n}}])|(?<=\band\s)|(?<=\bthat\s)|(?<=,\s))({_CAP})\s+"
                    rf"(?:(?:also|then|later|further|never|again|first|once)\s+)?(?:{_PERSON_VERBS})\b")
# Read from the text being tagged: "Kristyn's medical bills", "Drez' admission" (a possessive, unless an
# eponym's disease follows), "La-Fave, supra", "a man named \"Ismael\"": a person's name.
_OWNER = re.compile(rf"\b({_CAP})['’](?:s\b|(?=\s))(?!s?\s+(?:disease|syndrome|disorder|palsy|sarcoma|lymphoma|"
                    rf"anomaly|ulcer|sign|phenomenon|test|criteria|scale)\b)")
_SUPRA = re.compile(rf"\b({_CAP}),?\s+supra\b")
_NAMED = re.compile(rf"\b(?:named|called)\s+[\"“]?({_CAP})\b")
_PARTY = re.compile(rf"\b(?:Petitioner|Respondent|Defendant|Plaintiff|Appellant|Appellee|Claimant|Licensee)s?,?\s+"
                    rf"({_CAP})(?:\s+[A-Z]\.)?(?:\s+({_CAP}))?,?\s+(?:M\.D\.|D\.O\.|P\.A\.|R\.N\.|Esq)")
# "Michael J. Skaltsounis<tab>Acting Veterans Law Judge", "John Q. Smith, M.D.": first name, initial, surname,
# then a comma, a line's end or a title
_INITIALED = re.compile(rf"\b({_CAP})\s+[A-Z]\.\s+({_CAP})(?=[ \t]*(?:,|\n|\t|$)|\s+(?:Acting|Veterans|Judge|Jr|Esq))")
_DEGREE = re.compile(rf"\b({_CAP}),?\s+(?:M\.D\.|D\.O\.|P\.A\.-C|R\.N\.|Ph\.D\.)")
_DEFINED = re.compile(r"((?:[\w'’]+[\s\-–]+){1,8})\(\s*\"?([A-Z][A-Z0-9&]{1,7})\"?\s*\)")
_CHARGED = re.compile(r"\b(?:convicted of|charged with|counts? of|guilty of|convictions? (?:for|of)|indicted for)"
                      r"\s+(?:(?:a|an|the|one|two|three|four|several|first-degree|second-degree)\s+)?"
                      r"([a-z]+(?:[ -][a-z]+){0,2})")
_CHARGE_END = {"and", "or", "in", "of", "the", "a", "with", "for", "to", "by", "on", "at", "as", "that", "which"}
_FUNCTION = {"of", "the", "and", "for", "on", "in", "to", "'s", "’s", "s"}
# Long forms ending in these words name a disease or a substance, never an office.
MEDICAL_HEADS = {"disorder", "disease", "syndrome", "hormone", "infection", "deficiency", "failure", "injury",
                 "disorders", "diseases", "cancer", "tumor", "acid", "virus", "pressure", "dependence", "abuse",
                 "poisoning", "trauma", "pain", "depression", "dependency", "intoxication", "overdose"}
# An abbreviation is stopped only when its long form names an institution, a document or a rule:
# medical filings also define "computed tomography (CT)" and "tricyclic antidepressant (TCA)".
OFFICIAL_WORDS = {"office", "board", "department", "administration", "agency", "act", "center", "court",
                  "division", "bureau", "program", "statement", "case", "judge", "commission", "committee",
                  "service", "services", "records", "association", "institute", "academy", "council", "authority",
                  "rule", "rules", "law", "code", "statutes", "notice", "police", "system", "agreement",
                  "regulation", "regulations", "disagreement", "appeals", "affairs", "jurisdiction", "hearing",
                  "officer", "group", "unit", "specialty", "review", "organization", "corporation", "company",
                  "district", "county", "state", "university", "hospital", "clinic", "team", "commissioner"}
# Legal collocations: a word found in them often enough is a term of art there ("personal injury",
# "disability rating", "abuse and neglect"), not a diagnosis.
_FRAMES = re.compile(r"\b(?:personal|bodily|total|partial|permanent|temporary|service[- ]connected|abuse and)\s+([a-z]+)\b"
                     r"|\b([a-z]+)\s+(?:compensation|benefits|rating|ratings|claims?|petition|proceedings?|award)\b")
_WORD = re.compile(r"\b[a-z]+\b")
# Heads too vague to name a diagnosis: "mental problems", "bipolar type", "emotional difficulties".
VAGUE_HEADS = {"problem", "issue", "type", "difficulty", "trouble", "concern", "matter"}
_POSSESSIVE = re.compile(r"(?:\b(?:his|her|their|its|my|your|our)|[A-Za-z]['’]s?)\s+$", re.IGNORECASE)
# BC5CDR spans never carry a possessive tail; legal narratives do ("a fungal infection of his feet").
_POSSESSIVE_TAIL = re.compile(r"^(\S.*?)\s+(?:of|in|on|to)\s+(?:his|her|their|its|my|your|our)\s.*$", re.DOTALL)
# "Gilbert v. Derwinski", not "i.v. thiopental": a party name stands on each side of the "v."
_CITE_BEFORE = re.compile(r"[A-Z][\w'’-]*\s+v\.\s+$")
_CITE_AFTER = re.compile(r"^\s+v\.(?:\s+[A-Z]|\s*$)")  # "Pelegrini v. Principi", or a passage cut after "v."
# "NAC 630.153(1)", "NRS 630.301(4)", "1999-NMCA-135": a statute's or a reporter's name, not a drug.
_SECTION_AFTER = re.compile(r"^\s*(?:§\s*)?\d+(?:[.,\-]\d+)+(?![\d.,]*\s*(?:mg|g|ml|mL|µg|mcg|kg|mM|µM|%))")
# "NRS 454", "NAC 639.742": a span that is itself a code's name and a section number
_CODE_SPAN = re.compile(r"^[A-Z]{2,5}\s+\d+(?:[.,\-]\d+)*$")
# a VA General Counsel precedent opinion cited by number ("VAOPGCPREC 12-99"), seen as a Drug in served BVA pages
_PRECEDENT_CITE = re.compile(r"^VAOPGCPREC\b", re.IGNORECASE)
_NEUTRAL_CITE = re.compile(r"\d{4}-$")
# "NMSA 1978, § 52-1-26", "(NRS 630)": a code's name before its year of compilation or a bare chapter
_CODE_AFTER = re.compile(r"^\s*(?:\d{4},|\d{1,4}\))")
# "(Fed. Cir. 1997)", "(9th Cir. 2001)": a federal circuit in a citation
_CIRCUIT_BEFORE = re.compile(r"(?:Fed\.|\d(?:st|nd|rd|th))\s*$")
# "DOCKET NO. 94-39 228", "Unit No. 12": the number sign, not nitric oxide
_NUMBER_SIGN_AFTER = re.compile(r"^\.\s*\d")
_NUMBERED_BEFORE = re.compile(r"\b(?:Case|Docket|Unit|File|Claim|Account|Exhibit|Order|Bill|Rule)\s*$")
# Legal text is told from medical text by its own vocabulary (two distinct `legal_only` words) or by a
# citation, a code, a party or a claim; no BC5CDR abstract has either (measured: docs/legal-ner-dev.md).
_LEGAL_MARKS = re.compile(r"§|\bC\.F\.R\b|\bU\.S\.C|\bN\.M\.|\bNMSA\b|\bNRS\b|\bNAC\b|\bVet\.\s?App\b|"
                          r"\b[A-Z][a-z]+\s+v\.\s+[A-Z][a-z]+|\b(?:Respondent|Petitioner|Defendant|Plaintiff|Appellant|"
                          r"Appellee|Claimant)\b|\b[Tt]he (?:Board|Veteran|veteran|Court|RO|AOJ)\b|\bservice connection\b|"
                          r"\bPatients? [A-Z]\b|\bVA\b|\d\s+(?:P\.[23]d|So\.\s?[23]d|F\.[23]d|N\.M\.)|"
                          r"\b(?:testified|testimony|juror|counsel|malpractice|WCJ)\b")
# In legal text only (BC5CDR spans keep them when its lexicon does): modifiers the guidelines leave out of a
# span ("chronic cough" -> cough), heads that name no diagnosis alone ("a disorder", "blunt force injuries"),
# and events ("sexually assaulted").
LEGAL_DROP_MODIFIERS = {"chronic", "physical", "advanced", "severe", "mild", "moderate", "longstanding",
                        "long-standing", "ongoing", "significant", "serious", "possible", "probable", "current",
                        "acquired", "occupational"}  # the VA's "acquired psychiatric disorder", an
# "occupational disease" (a workers' compensation term)
# A Disease span made only of these adjectives names no condition: "psychiatric treatment", "a normal psychiatric
# examination", "mental health" (the head the tagger left out is no disease).
RELATIONAL_ADJECTIVES = {"psychiatric", "psychological", "psychologic", "mental", "emotional", "neurological",
                         "neurologic", "medical", "physical", "cardiac", "orthopedic", "orthopaedic", "behavioral",
                         "behavioural", "clinical", "somatic", "cognitive", "respiratory", "gastrointestinal",
                         "dermatological", "urological", "gynecological", "psychosocial", "physiological"}
GENERIC_HEADS = {"disorder", "disease", "illness", "condition", "ailment", "sickness", "malady", "injury", "impairment",
                 "disability", "symptom", "problem"}
INJURY_HEADS = {"injury", "wound", "trauma", "harm", "damage"}
_EVENT = re.compile(r"\b(?:assault\w*|(?:sexual|child|physical|domestic|elder|spousal)\s+abuse|rape[ds]?|molest\w*|"
                    r"shooting|stabbing|beating|accident|falls?|collisions?|crash(?:es)?|violence|MVAs?)\b", re.IGNORECASE)
# "the Veteran's disorder", "Segura's fall": someone's generic condition or event, no diagnosis
_OWNED = re.compile(r"^[A-Z][\w-]*['’]s\s+(\S.*)$", re.DOTALL)
EPONYM_HEADS = {"disease", "syndrome", "palsy", "sarcoma", "lymphoma", "anomaly", "ulcer", "phenomenon"}
_FIRST_WORD = re.compile(r"(\S+)\s+(?=\S)")
_RANK_AFTER = re.compile(r"^\d")  # "E-1 to E-2": a pay grade, when the span ends in its hyphen
# A capitalised Disease span inside the name of a publication or an institution ("Diagnostic and Statistical
# Manual of Mental Disorders", "American Cancer Society") is part of a name.
NAME_HEADS = {"manual", "journal", "society", "foundation", "association", "institute", "institutes", "academy",
              "center", "centers", "college", "council", "hospital", "clinic", "university", "department"}
_NAME_LEFT = re.compile(r"((?:\b(?:[A-Z][a-z]+|of|and|the|for|on)\s+){1,6})$")
_NAME_RIGHT = re.compile(r"^((?:\s+(?:[A-Z][a-z]+|of|and|for)\b){1,4})")
_SPACED_DASH = re.compile(r"\s+[-–—]\s+")
_TRAILING_FUNCTION = re.compile(r"(?:\s+(?:of|the|and|or|in|to|for|with|by))+$")
# Documents of these kinds (or with a court) are legal, as the legal readers (bva, nv-bme, nm-appeals, aila) set
# them: a passage of one may have no legal word ("tested positive for the herpes virus before the rape").
LEGAL_DOC_TYPES = frozenset({"decision", "opinion", "case", "statute"})


def is_legal_document(meta: dict) -> bool | None:
    """True for a document a legal reader imported (a court, or a legal doc_type); None when nothing says so."""
    return True if meta.get("court") or meta.get("doc_type") in LEGAL_DOC_TYPES else None


# Medical corpora whose vocabulary a legal-only word never appears in, and the background against which a
# word leans legal: abstracts, consumer health pages, the PubMed abstracts of the NER training sets (their
# text only) and clinical notes (the transcription samples, read as CSV)
MEDICAL_CORPORA = (("beir", "scifact"), ("beir", "nfcorpus"), ("medquad", "medquad"),
                   ("pubtator", "bc5cdr/CDR_TrainingSet.PubTator.txt"), ("pubtator", "ncbi-disease/NCBItrainset_corpus.txt"))
CLINICAL_NOTES = "mtsamples-partial/mtsamples_subset401_noheader.csv"
# Where the medical corpora name diseases and drugs: MedQuAD's question focus (by source) and NCBI-disease's
# gold mentions (train and dev; BC5CDR's are the tagger's own lexicon, its dev set stays its evaluation)
MEDQUAD_DRUG_SOURCES = ("11_MPlusDrugs_QA", "12_MPlusHerbsSupplements_QA")
NCBI_FILES = ("ncbi-disease/NCBItrainset_corpus.txt", "ncbi-disease/NCBIdevelopset_corpus.txt")
# dosage forms MedlinePlus appends to a drug's name ("Teduglutide Injection", "Testosterone Topical")
_DOSAGE_FORM = re.compile(r"\s+(?:injection|topical|oral|ophthalmic|nasal|spray|inhalation|transdermal|rectal|"
                          r"vaginal|otic|patch|powder|solution|suspension|tablets?|capsules?|extended-release|"
                          r"sublingual|buccal|implant|gel|cream|lotion|ointment|foam|and|system|\(.*?\))+$",
                          re.IGNORECASE)


def _long_form(words: list[str], abbreviation: str) -> list[str] | None:
    """The words before "(ABBR)" whose initials spell it, read backwards; None when they do not."""
    letters = [c for c in abbreviation.lower() if c.isalpha()]
    parts = [p for w in words for p in re.split(r"[\-–]", w) if p]
    taken: list[str] = []
    while letters and parts:
        word = parts.pop()
        if word.lower() in _FUNCTION and not word.lower().startswith(letters[-1]):
            taken.append(word)
            continue
        if not word.lower().startswith(letters[-1]):
            return None
        letters.pop()
        taken.append(word)
    return list(reversed(taken)) if not letters else None


def _known(lexicon: Normalizer | None, text: str) -> bool:
    """Whether the tagger's lexicon knows the form under any label."""
    return lexicon is not None and any(lexicon.lookup(label, text) for label in lexicon.lexicon)


def _is_official(long_words: list[str], lexicon: Normalizer | None) -> bool:
    """A long form naming an institution or a document, with no word the lexicon or the medical heads know."""
    lower = [w.lower().strip("'’") for w in long_words]
    if not OFFICIAL_WORDS.intersection(lower) or MEDICAL_HEADS.intersection(lower):
        return False
    return not _known(lexicon, " ".join(long_words)) and \
        not any(_known(lexicon, w) for w, lw in zip(long_words, lower) if lw not in _FUNCTION and len(w) > 3)


def learn_counts(texts: Iterable[str], focus: set[str] = frozenset(), names_only: bool = False) -> dict[str, Counter]:
    """Raw counts of name, defined-abbreviation (with long form) and charge candidates in legal texts, and of
    the two-word phrases with a `focus` word (a word of the tagger's lexicon). `names_only`: only the names,
    actors, abbreviations and long forms (what one text adds to a filter, `LegalFilter.with_text`)."""
    counts: dict[str, Counter] = {kind: Counter() for kind in KINDS}
    counts["long_forms"], counts["words"], counts["actors"] = Counter(), Counter(), Counter()
    counts["upper"] = Counter()  # words written in capitals (abbreviations: "PTSD"), lower-cased
    for text in texts:
        if not names_only:
            counts["upper"].update(w.lower() for w in re.findall(r"\b[A-Z]{2,}\b", text))
            words = [singular(w) for w in _WORD.findall(text.lower())]
            counts["words"].update(words)
            if focus:
                counts["phrases"].update(f"{a} {b}" for a, b in zip(words, words[1:]) if a in focus or b in focus)
            counts["terms"].update(singular(a or b) for a, b in _FRAMES.findall(text.lower()))
        for m in _CITATION.finditer(text):
            counts["names"].update([m.group(1), m.group(2)])
        counts["names"].update(m.group(1) for m in _TITLED.finditer(text))
        counts["names"].update(n for m in _APPOSITIVE.finditer(text) for n in m.groups() if n)
        counts["names"].update(n for m in _ALIAS.finditer(text) for n in m.groups() if n)
        counts["names"].update(n for m in _PARTY.finditer(text) for n in m.groups() if n)
        counts["names"].update(m.group(1) for m in _DEGREE.finditer(text))
        counts["names"].update(n for m in _INITIALED.finditer(text) for n in m.groups())
        counts["actors"].update(m.group(1) for m in _ACTOR.finditer(text))
        for m in _DEFINED.finditer(text):
            words = m.group(1).split()
            long = _long_form(words, m.group(2))
            if long:
                counts["abbreviations"][m.group(2)] += 1
                counts["long_forms"][(m.group(2), " ".join(long))] += 1
        for m in () if names_only else _CHARGED.finditer(text):
            words = []
            for w in m.group(1).split():
                if w in _CHARGE_END:
                    break
                words.append(w)
            if words:
                counts["crimes"][key(" ".join(words))] += 1
    return counts


def _not_a_diagnosis(text: str, mention: Mention, folded: str) -> bool:
    """A Disease span headed by a vague noun, or a death that belongs to someone (an event)."""
    words = folded.split()
    if len(words) > 1 and words[-1] in VAGUE_HEADS:
        return True
    return folded == "death" and bool(_POSSESSIVE.search(text[max(0, mention.start - 30):mention.start]))


def repair_spans(text: str, mentions: Sequence[Mention]) -> list[Mention]:
    """Join same-label neighbours with only spaces between them; cut a Disease span's possessive tail."""
    out: list[Mention] = []
    for m in sorted(mentions, key=lambda m: m.start):
        gap = text[out[-1].end:m.start] if out else ""
        if out and out[-1].label == m.label and gap and gap.isspace():
            prev = out.pop()
            least = min((c for c in (prev.confidence, m.confidence) if c is not None), default=None)
            m = replace(prev, end=m.end, text=text[prev.start:m.end], confidence=least)
        tail = _POSSESSIVE_TAIL.match(m.text) if m.label == "Disease" else None
        if tail:
            m = replace(m, end=m.start + len(tail.group(1)), text=tail.group(1))
        out.append(m)
    return out


def legal_span_repair(mention: Mention, lexicon: Normalizer | None) -> Mention:
    """A Disease span without the leading modifiers the guidelines leave out, unless the lexicon knows it whole."""
    if mention.label != "Disease" or _known(lexicon, mention.text):
        return mention
    text, start = mention.text, mention.start
    if text.endswith(" NOS") and len(text) > 4:  # "anxiety disorder NOS": not otherwise specified
        mention = replace(mention, end=mention.end - 4, text=text[:-4].rstrip())
        text = mention.text
    while (first := _FIRST_WORD.match(text)) and first.group(1).lower().rstrip(",") in LEGAL_DROP_MODIFIERS:
        text, start = text[first.end():], start + first.end()
    return mention if start == mention.start else replace(mention, start=start, text=text)


def split_dashed(text: str, mention: Mention) -> list[Mention]:
    """A span across a spaced dash ("nerve disorder - numbness") is two mentions; trailing "of", "or" go."""
    out, at = [], mention.start
    for part in _SPACED_DASH.split(mention.text) + [None]:
        if part is None:
            break
        part_start = text.index(part, at) if part else at
        trimmed = _TRAILING_FUNCTION.sub("", part)
        if trimmed.strip():
            out.append(replace(mention, start=part_start, end=part_start + len(trimmed), text=trimmed))
        at = part_start + len(part)
    return out if len(out) != 1 or out[0].text != mention.text else [mention]


def _not_a_legal_diagnosis(text: str, mention: Mention, lexicon: Normalizer | None) -> bool:
    """In legal text: a code and section ("NRS 454") or a pay grade ("E-" of "E-1"); a Disease span that is a
    generic head alone, maybe someone's ("the Veteran's disorder"), an injury the lexicon does not know, an
    event or a death."""
    surface = " ".join(mention.text.split())
    if _CODE_SPAN.match(surface) or _PRECEDENT_CITE.match(surface) or (surface.endswith("-") and _RANK_AFTER.match(text[mention.end:mention.end + 2])):
        return True
    if mention.label != "Disease":
        return False
    owned = _OWNED.match(surface)
    if owned and (_known(lexicon, surface) or owned.group(1).split()[-1].lower() in EPONYM_HEADS):
        return False  # "Parkinson's disease", "Bell's palsy": an eponym's disease, not someone's condition
    words = [singular(w) for w in key(owned.group(1) if owned else surface).split()]
    if not words:
        return False
    if (len(words) == 1 and words[0] in GENERIC_HEADS) or words == ["death"] or \
            all(w in RELATIONAL_ADJECTIVES for w in words):
        return True
    if all(w[:1].isupper() and w[1:].islower() for w in surface.split()):
        around = (_NAME_LEFT.search(text[max(0, mention.start - 80):mention.start]),
                  _NAME_RIGHT.match(text[mention.end:mention.end + 60]))
        if any(w.lower() in NAME_HEADS for m in around if m for w in m.group(1).split()):
            return True
    if words[-1] in INJURY_HEADS and not _known(lexicon, surface):
        return True
    if words[-1] == "disability" and not _known(lexicon, surface):
        return True  # "psychiatric disability": a rating's or a claim's term (the guidelines' legal "disability")
    if _DAMAGES.match(surface) or (words[-1] == "seizure" and (
            _SEARCH_BEFORE.search(text[max(0, mention.start - 24):mention.start])
            or _SEARCH_WORDS.search(text[max(0, mention.start - 300):mention.start] + " " +
                                    text[mention.end:mention.end + 300]))):
        return True
    return bool(_EVENT.search(surface))


# Drug spans that name no substance: "Rx" (a prescription, as in the legend "Rx Only") and the Latin of citations
NOT_DRUGS = {"rx", "supra", "infra", "id", "ibid", "limine",  # "a motion in limine"
             "curiam", "curium",  # "per curiam" (and its misspelling, which names an element)
             "landmine", "landmines", "ak-47", "m-16", "m16"}  # weapons in stressor accounts
# In legal text: a loss that is a head of damages ("future wage loss", "loss of consortium"), not a symptom as
# "hearing loss" is; a seizure that is a search's ("unreasonable seizure"), not a fit
_DAMAGES = re.compile(r"^(?:(?:wage|wages|earnings?|income|property|economic|financial|business)\s+loss(?:es)?|"
                      r"loss(?:es)?\s+of\s+(?:wages|earnings?|income|consortium|enjoyment|support|property))$",
                      re.IGNORECASE)
_DOSE_AFTER = re.compile(r"^\s*\d+(?:\.\d+)?\s*(?:mg|g|ml|mL|mcg|µg|mEq|mmol|units?)\b")  # "NAC 40 mg": a drug's dose
# a search's seizure, by the words around it ("the seizure of the cocaine ... inevitable discovery")
_SEARCH_WORDS = re.compile(r"\b(?:search(?:es|ed)?|warrant\w*|suppress\w*|Fourth Amendment|detention|detain\w*|"
                           r"seized?|inevitable discovery|probable cause|reasonable suspicion|encounter)\b",
                           re.IGNORECASE)
# an act named under its acronym in a statute's frame ("pursuant to the MPA", "a violation of the NRS")
_STATUTE_BEFORE = re.compile(r"\b(?:pursuant to|under|violat\w+ of|in accordance with|provisions? of)\s+(?:the\s+)?$",
                             re.IGNORECASE)
_SEARCH_BEFORE = re.compile(r"\b(?:unreasonable|unlawful|illegal|warrantless)\s+$", re.IGNORECASE)  # "search and": _SEARCH_WORDS
# Rule 403's "confusion of the issues, or misleading the jury", "likely to cause confusion or mislead the jury"
_JURY_AROUND = re.compile(r"\b(?:jur(?:y|ors?)|mislead\w*|the issues|prejudic\w*|probative)\b", re.IGNORECASE)
_SUFFERING_AFTER = re.compile(r"^\s+and\s+suffering\b", re.IGNORECASE)
_GAZE_BEFORE = re.compile(r"\bgaze\s+$", re.IGNORECASE)
_SATURATION_AFTER = re.compile(r"^\s+(?:saturation|sat|sats|level|levels)\b", re.IGNORECASE)
_CRACK_BEFORE = re.compile(r"\bcrack\s+$", re.IGNORECASE)


def _crack(text: str, mention: Mention) -> Mention:
    """"crack cocaine" is the drug's name, not "cocaine" alone."""
    before = _CRACK_BEFORE.search(text[max(0, mention.start - 8):mention.start])
    if mention.label != "Drug" or not before or mention.text.lower() != "cocaine":
        return mention
    start = mention.start - len(before.group(0))
    return replace(mention, start=start, text=text[start:mention.end])


def leaning_log_ratio(legal: int, legal_total: int, medical: int, medical_total: int) -> float:
    """log(rate in legal text / rate in medical text), each count add-half smoothed."""
    return math.log(((legal + 0.5) / max(1, legal_total)) / ((medical + 0.5) / max(1, medical_total)))


_MAJOR_BEFORE = re.compile(r"\bmajor\s+$", re.IGNORECASE)


def _major(text: str, mention: Mention) -> Mention:
    """"major depressive disorder", "major depression": the diagnosis's name keeps its "major"."""
    before = _MAJOR_BEFORE.search(text[max(0, mention.start - 8):mention.start])
    if mention.label != "Disease" or not before or not mention.text.lower().startswith("depress"):
        return mention
    start = mention.start - len(before.group(0))
    return replace(mention, start=start, text=text[start:mention.end])


ROUND = 10  # the rules' version (docs/legal-ner-dev.md's rounds), part of `digest`

NAME_ODDS = 6.0  # log odds (name vs drug) above which an unknown capitalised Drug word in legal text is a name


class NameModel:
    """Naive Bayes over character 2-4-grams: how much more a word looks like a person's name (the learned
    names of the legal corpora) than a drug (the tagger lexicon's one-word Drug forms).

    Cut at NAME_ODDS = 6, on a seeded fifth of each list held out (`python -m indexer.legal_filter
    --check-names --lexicon ...`): 71% of names caught, 98% of drug forms kept. A BC5CDR tagger marks
    any unknown capitalised word in a drug-like position as a Drug ("Kristyn's medications", "Velasquez
    was taking"); this tells most such names from new brand names.
    """

    def __init__(self, names: Iterable[str], drugs: Iterable[str]):
        self.names = Counter(g for w in names for g in self.grams(w))
        self.drugs = Counter(g for w in drugs for g in self.grams(w))
        n_names, n_drugs = sum(self.names.values()), sum(self.drugs.values())
        vocabulary = len(set(self.names) | set(self.drugs)) or 1
        self._denominators = (n_names + vocabulary, n_drugs + vocabulary)
        self.ready = bool(self.names) and bool(self.drugs)

    @staticmethod
    def grams(word: str) -> list[str]:
        w = f"^{word.lower()}$"
        return [w[i:i + k] for k in (2, 3, 4) for i in range(len(w) - k + 1)]

    def log_odds(self, word: str) -> float:
        """log P(word | name) - log P(word | drug), grams independent, add-one smoothed (priors equal)."""
        name_den, drug_den = self._denominators
        return sum(math.log((self.names[g] + 1) / name_den) - math.log((self.drugs[g] + 1) / drug_den)
                   for g in self.grams(word))

    @staticmethod
    def name_words(names: Iterable[str]) -> list[str]:
        """The learned names the model reads: letters (and hyphens), three or more."""
        return sorted({n for n in names if n.replace("-", "").isalpha() and len(n) >= 3})

    @staticmethod
    def drug_words(lexicon: Normalizer | None) -> list[str]:
        """The lexicon's one-word Drug forms of four or more letters."""
        forms = {f.lstrip("=") for f in (lexicon.lexicon.get("Drug", {}) if lexicon else ())}
        return sorted(d for d in forms if d.isalpha() and len(d) >= 4)

    @classmethod
    def from_lists(cls, names: Iterable[str], lexicon: Normalizer | None) -> "NameModel":
        return cls(cls.name_words(names), cls.drug_words(lexicon))


_NAME_SHAPE = re.compile(r"^[A-Z][a-z]+(?:['’-][A-Z]?[a-z]+)?$")


class LegalFilter:
    """Stop lists of names, abbreviations and crimes, and the rule that applies them to mentions.

    `lexicon` (the tagger's) keeps the forms it knows out of the names a text introduces; in legal text,
    mentions whose confidence (`indexer.ner_confidence`) is under `min_confidence` are dropped unless the lexicon
    knows their form (those keep the tagger's general floor, `ner.min_confidence`).
    """

    def __init__(self, names: Iterable[str] = (), abbreviations: Iterable[str] = (), crimes: Iterable[str] = (),
                 terms: Iterable[str] = (), legal_only: Iterable[str] = (), phrases: Iterable[str] = (),
                 leaning: Iterable[str] = (), disease_forms: Iterable[str] = (), drug_forms: Iterable[str] = (),
                 lexicon: Normalizer | None = None, min_confidence: float = 0.0):
        self.names, self.abbreviations = set(names), set(abbreviations)
        self.crimes = {key(c) for c in crimes}
        self.terms = {key(t) for t in terms}
        self.legal_only = set(legal_only)  # folded single words (`key`)
        self.phrases = set(phrases)  # folded two-word legal terms of art: "bodily injury", "death penalty"
        self.leaning = set(leaning)  # singular words far more frequent in legal than in medical text ("penalty")
        # folded disease and drug names of the medical corpora (MedQuAD's question focus, NCBI-disease)
        self.forms = {"Disease": set(disease_forms), "Drug": set(drug_forms)}
        self.lexicon, self.min_confidence = lexicon, min_confidence
        self._name_model: NameModel | None = None  # built on first use, from the names and the lexicon

    def looks_like_a_name(self, mention: Mention) -> bool:
        """A one-word capitalised Drug the lexicon does not know, spelled like the legal corpora's names."""
        if mention.label != "Drug" or not _NAME_SHAPE.match(mention.text) or _known(self.lexicon, mention.text):
            return False
        if self._name_model is None:
            self._name_model = NameModel.from_lists(self.names, self.lexicon)
        return self._name_model.ready and self._name_model.log_odds(mention.text) > NAME_ODDS

    def is_legal(self, text: str) -> bool:
        """Whether a text reads as legal: two distinct legal-only words, or a citation, code, party or claim."""
        if _LEGAL_MARKS.search(text):
            return True
        seen = set()
        for w in _WORD.findall(text.lower()):
            if singular(w) in self.legal_only:
                seen.add(singular(w))
                if len(seen) >= 2:
                    return True
        return False

    @classmethod
    def learn(cls, texts: Iterable[str], lexicon: Normalizer | None = None, min_count: int = 2,
              term_share: float = 0.15, term_count: int = 20, medical: Iterable[str] = (),
              medical_names: Iterable[str] = ()) -> "LegalFilter":
        """Stop lists from raw legal texts and a medical background; lexicon forms and medical long forms stay out.
        `medical_names`: (label, name) pairs of the medical corpora's diseases and drugs, kept as known forms."""
        focus = {w for table in (lexicon.lexicon.values() if lexicon else ()) for form in table
                 for w in form.lstrip("=").lower().split() if w.isalpha() and len(w) > 3}
        counts = learn_counts(texts, focus)
        candidates = {p for p, c in counts["phrases"].items() if c >= term_count and not _known(lexicon, p)}
        medical_words, medical_phrases = Counter(), set()
        for text in medical:
            words = [singular(w) for w in _WORD.findall(text.lower())]
            medical_words.update(words)
            medical_phrases.update(p for p in map(" ".join, zip(words, words[1:])) if p in candidates)
        phrases = candidates - medical_phrases if medical_words else set()
        legal_only = {w for w, c in counts["words"].items() if c >= term_count and w not in medical_words
                      and not _known(lexicon, w)} if medical_words else set()
        names = {n for n, c in counts["names"].items() if c >= min_count and not _known(lexicon, n)}
        names |= {n for n, c in counts["actors"].items() if c >= 3 * min_count and not _known(lexicon, n)}
        forms: dict[str, set[str]] = {}
        for abbr, long in counts["long_forms"]:
            forms.setdefault(abbr, set()).add(long)
        abbreviations = {a for a, c in counts["abbreviations"].items() if c >= min_count and not _known(lexicon, a)
                         and all(_is_official(long.split(), lexicon) for long in forms[a])}
        crimes = {k for k, c in counts["crimes"].items() if c >= min_count and not _known(lexicon, k)
                  and not MEDICAL_HEADS.intersection(k.split())}
        # an abbreviation ("PTSD" of "PTSD rating") is never a term of art
        terms = {w for w, c in counts["terms"].items() if c >= term_count and not _known(lexicon, w)
                 and counts["upper"][w] * 2 < counts["words"][w] and c >= term_share * counts["words"][w]}
        known_forms: dict[str, set[str]] = {"Disease": set(), "Drug": set()}
        for label, name in medical_names:
            if key(name):
                known_forms[label].add(key(name))
        disease_heads = {key(k.lstrip("=")).rsplit(" ", 1)[-1] for k in (lexicon.lexicon.get("Disease", {})
                                                                          if lexicon else ()) if key(k.lstrip("="))}
        disease_heads |= {f.rsplit(" ", 1)[-1] for f in known_forms["Disease"]}
        leaning = {w for w, c in counts["words"].items() if medical_words and c >= LEANING_COUNT
                   and w not in disease_heads and not _known(lexicon, w) and counts["upper"][w] * 2 < c
                   and leaning_log_ratio(c, sum(counts["words"].values()), medical_words[w],
                                         sum(medical_words.values())) >= LEANING_LOG_RATIO}
        return cls(names, abbreviations, crimes, terms, legal_only, phrases, leaning, known_forms["Disease"],
                   known_forms["Drug"])

    def stops(self, text: str, mention: Mention) -> bool:
        """Whether a mention is a legal false positive: by the citation rule, a letterless span or a list."""
        surface = " ".join(mention.text.split())
        if not any(c.isalpha() for c in surface) or surface[:1] in "'’":
            return True
        if _CITE_BEFORE.search(text[max(0, mention.start - 40):mention.start]) or \
                _CITE_AFTER.match(text[mention.end:mention.end + 8]):
            return True
        if surface in self.abbreviations or (surface.endswith("s") and surface[:-1] in self.abbreviations):
            return True
        after = text[mention.end:mention.end + 16]
        if surface.isupper() and (_SECTION_AFTER.match(after) or _CODE_AFTER.match(after)
                                  or _NEUTRAL_CITE.search(text[max(0, mention.start - 5):mention.start])):
            return True
        if surface.lower() == "no" and (_NUMBER_SIGN_AFTER.match(after) or
                                        _NUMBERED_BEFORE.search(text[max(0, mention.start - 12):mention.start])):
            return True
        if surface.lower() == "cir" and _CIRCUIT_BEFORE.search(text[max(0, mention.start - 8):mention.start]):
            return True
        words = re.findall(r"[\w'’-]+", surface)
        if words and all(w in self.names or w.rstrip("s'’") in self.names for w in words):
            return not is_abbreviation(surface) or surface in self.names
        if mention.label == "Disease" and (_not_a_diagnosis(text, mention, key(surface))
                                           or key(surface).rsplit(" ", 1)[-1] in self.legal_only):
            return True
        return key(surface) in self.crimes or key(surface) in self.phrases or \
            (mention.label == "Disease" and key(surface) in self.terms)

    def with_text(self, text: str, legal: bool = False) -> "LegalFilter":
        """This filter plus the names and office abbreviations that the text itself introduces (in legal text
        also its possessives, "X, supra" and "named X")."""
        counts = learn_counts([text], names_only=True)
        if legal:
            counts["names"].update(m.group(1) for pattern in (_OWNER, _SUPRA, _NAMED) for m in pattern.finditer(text))
        forms: dict[str, list[str]] = {}
        for abbr, long in counts["long_forms"]:
            forms.setdefault(abbr, []).append(long)
        offices = {a for a, longs in forms.items() if all(_is_official(long.split(), None) for long in longs)}
        names = {n for n in set(counts["names"]) | set(counts["actors"]) if not _known(self.lexicon, n)}
        if not names and not offices:
            return self
        local = LegalFilter(self.names | names, self.abbreviations | offices, lexicon=self.lexicon)
        local.crimes, local.terms, local.legal_only, local.phrases = (self.crimes, self.terms, self.legal_only,
                                                                      self.phrases)
        local.leaning, local.forms = self.leaning, self.forms
        return local

    def filter(self, text: str, mentions: Sequence[Mention], legal: bool | None = None) -> list[Mention]:
        """The mentions of a text that are not stopped, after their spans are repaired; in legal text also
        the legal-only span rules and the confidence floor. `legal` True: the text is (part of) a legal
        document, whatever its words say; None: `is_legal` judges."""
        if not mentions:
            return []
        legal = legal if legal is not None else self.is_legal(text)
        rules = self.with_text(text, legal)
        kept = [m for m in repair_spans(text, mentions) if not rules.stops(text, m)]
        if not legal:
            return kept
        kept = [legal_span_repair(p, self.lexicon) for m in kept for p in split_dashed(text, m)]
        kept = [_major(text, _crack(text, m)) for m in kept if not self._no_substance_or_phrase(text, m)]
        return [m for m in kept if not _not_a_legal_diagnosis(text, m, self.lexicon) and not self.looks_like_a_name(m)
                and not self._legal_sense(text, m)
                and (m.confidence is None or m.confidence >= self.min_confidence or self.knows(m.text, m.label)
                     or (m.label == "Drug" and m.text.lower().startswith("crack ")  # _crack's "crack cocaine"
                         and self.knows(m.text[6:].strip(), m.label)))]

    def knows(self, text: str, label: str = "Disease") -> bool:
        """Whether the tagger's lexicon (any label) or the medical corpora's names hold the form: a short form
        only under `label` ("ACL" names a ligament's injury, no drug), a word under either ("marijuana" is a
        MedlinePlus topic, not one of its drug pages)."""
        surface = " ".join(text.split())
        if _known(self.lexicon, surface):
            return True
        folded = key(surface)
        if is_abbreviation(surface):
            return folded in self.forms.get(label, ())
        return any(folded in forms for forms in self.forms.values())

    def _legal_sense(self, text: str, mention: Mention) -> bool:
        """In legal text: an unknown Disease span headed by a legal-leaning word ("death penalty", "drug
        paraphernalia"); the confusion of the rules of evidence ("confusion of the issues, or misleading the
        jury"); the oxygen of an oxygen saturation (a measurement)."""
        folded = key(mention.text)
        if mention.label == "Disease" and folded and folded.rsplit(" ", 1)[-1] in self.leaning and \
                not self.knows(mention.text):
            return True
        if mention.label == "Disease" and folded == "confusion" and \
                _JURY_AROUND.search(text[max(0, mention.start - 60):mention.end + 60]):
            return True
        if mention.label == "Disease" and folded == "pain" and _SUFFERING_AFTER.match(text[mention.end:mention.end + 20]):
            return True  # "pain and suffering": a head of damages
        if mention.label == "Disease" and folded == "nystagmus" and \
                _GAZE_BEFORE.search(text[max(0, mention.start - 20):mention.start]):
            return True  # "horizontal gaze nystagmus (HGN) test": a field sobriety test
        return mention.label == "Drug" and folded == "oxygen" and bool(_SATURATION_AFTER.match(text[mention.end:]))

    def _defined_as_substance(self, text: str, abbreviation: str) -> bool:
        """Whether the text spells the abbreviation out as something other than an institution or a document
        ("nitric oxide (NO)", not "the Veterans Claims Assistance Act of 2000 (VCAA)")."""
        for m in _DEFINED.finditer(text):
            if m.group(2) == abbreviation:
                words = m.group(1).split()[-(len(abbreviation) + 2):]
                if not _is_official(words, self.lexicon):
                    return True
        return False

    def _no_substance_or_phrase(self, text: str, mention: Mention) -> bool:
        """A Drug that names no substance ("Rx", "The AMC's compliance"), or a long Disease span holding a
        learned legal phrase ("death or great bodily injury")."""
        if mention.label == "Drug":
            if mention.text.isupper() and _STATUTE_BEFORE.search(text[max(0, mention.start - 30):mention.start]):
                return True  # "pursuant to the MPA": the Medical Practice Act, whatever the lexicon knows
            # an acronym the lexicon does not know ("VCAA", "SNHD": an act's or an office's), or a symbol of one
            # or two letters ("NO." and its OCR "Na," before a case number), names no drug here unless dosed or
            # spelled out as a substance
            unknown_acronym = mention.text.isupper() and mention.text.isalpha() and not _known(self.lexicon, mention.text)
            symbol = sum(c.isalpha() for c in mention.text) <= 2
            if (unknown_acronym or symbol) and not _DOSE_AFTER.match(text[mention.end:mention.end + 12]) and \
                    not self._defined_as_substance(text, mention.text):
                return True
            return mention.text.lower() in NOT_DRUGS or (mention.text.isupper()
                                                         and text[mention.end:mention.end + 2] in ("'s", "’s"))
        if mention.label != "Disease" or len(mention.text.split()) <= 2:
            return False
        folded = key(mention.text)
        return any(p in folded for p in self.phrases)

    def _kind(self, kind: str) -> set[str]:
        return self.forms["Drug" if kind == "drug_forms" else "Disease"] if kind.endswith("_forms") else getattr(self, kind)

    def digest(self) -> str:
        """A short checksum of the lists and the rules' version (ROUND): tags made under other lists are redone."""
        import hashlib

        lists = json.dumps({kind: sorted(self._kind(kind)) for kind in KINDS}, ensure_ascii=False)
        return hashlib.sha256(f"{ROUND}\n{lists}".encode("utf-8")).hexdigest()[:8]

    def sizes(self) -> dict[str, int]:
        """Entries per kind of list."""
        return {kind: len(self._kind(kind)) for kind in KINDS}

    def save(self, path: str | Path = STOPLIST_FILE) -> Path:
        """Write the stop lists as sorted JSON."""
        data = {kind: sorted(self._kind(kind)) for kind in KINDS}
        Path(path).write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        return Path(path)

    @classmethod
    def load(cls, path: str | Path = STOPLIST_FILE, lexicon: Normalizer | None = None,
             min_confidence: float = 0.0) -> "LegalFilter":
        """Read stop lists written by `save` (an absent file gives the list-free rules only)."""
        path = Path(path)
        if not path.is_file():
            return cls(lexicon=lexicon, min_confidence=min_confidence)
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(**{k: data.get(k, []) for k in KINDS}, lexicon=lexicon, min_confidence=min_confidence)


# the veterans' decisions come from three folders: the annotation sets draw only from the first, so with its
# annotated documents held out the other two (75 and 28 decisions, none of them in the first) still teach
# the list the Board's vocabulary ("RO", "VA", the citations' names)
LEGAL_CORPORA = (("bva", "bva-decisions/summarization/single_issue_PTSD_sample"),
                 ("vetclaims", "vetclaims"),
                 ("bva-annotated", "bva-decisions/annotated_casetext"),
                 ("nv-bme", "nv-medical-board-malpractice-filings"),
                 ("nm-appeals", "cap-nm-appeals-outcome/nm_appeals_500.tar.gz"))


def legal_texts(data_dir: Path, held_out: Sequence[str] = ()) -> Iterable[str]:
    """Texts of the legal corpora, leaving out any document that contains a held-out passage."""
    from indexer.documents import Document
    from indexer.readers import read

    probes = [" ".join(p.split())[:80] for p in held_out]
    for fmt, name in LEGAL_CORPORA:
        for record in read(fmt, data_dir / name):
            if isinstance(record, Document):
                flat = " ".join(record.text.split())
                if not any(p in flat for p in probes):
                    yield record.text


def medical_texts(data_dir: Path) -> Iterable[str]:
    """Texts of the medical corpora that define which words legal text alone uses (the clinical notes when
    the data directory has them)."""
    import csv

    from indexer.documents import Document
    from indexer.readers import read

    for fmt, name in MEDICAL_CORPORA:
        for record in read(fmt, data_dir / name):
            if isinstance(record, Document):
                yield f"{record.title} {record.text}"
    notes = data_dir / CLINICAL_NOTES
    if notes.is_file():
        csv.field_size_limit(1 << 30)
        with notes.open(encoding="utf-8", errors="replace", newline="") as f:
            for row in csv.reader(f):
                yield " ".join(row[1:])


def medical_forms(data_dir: Path) -> Iterable[tuple[str, str]]:
    """(label, name) pairs: the disease and drug names of the medical corpora: MedQuAD's question focus (a drug without its dosage form,
    a topic before " - ", a parenthesised short form on its own) and NCBI-disease's gold mentions."""
    import gzip

    from indexer.documents import Document
    from indexer.readers import read

    with gzip.open(data_dir / "medquad" / "medquad_qa.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            focus = " ".join((row.get("focus") or "").split())
            if not focus:
                continue
            focus = focus.split(" - ")[0]
            short = re.search(r"\(([^()]{2,12})\)", focus)
            focus = re.sub(r"\s*\([^()]*\)", "", focus)
            label = "Drug" if row.get("source") in MEDQUAD_DRUG_SOURCES else "Disease"
            if short:
                yield label, short.group(1)
            if label == "Drug":
                focus = _DOSAGE_FORM.sub("", focus)
            if focus and len(focus.split()) <= 6:
                yield label, focus
    for name in NCBI_FILES:
        if (data_dir / name).is_file():
            for record in read("pubtator", data_dir / name):
                if isinstance(record, Document):
                    yield from (("Disease", m.text) for m in record.mentions)


def check_name_model(names: Iterable[str], lexicon: Normalizer, seed: int = 0) -> dict[str, float]:
    """Fit NameModel on four fifths of each list (seeded) and score the rest: share of held-out names above
    NAME_ODDS and of held-out drug forms at or below it."""
    import random

    rng = random.Random(seed)
    names, drugs = NameModel.name_words(names), NameModel.drug_words(lexicon)
    rng.shuffle(names)
    rng.shuffle(drugs)
    cut_n, cut_d = len(names) // 5, len(drugs) // 5
    model = NameModel(names[cut_n:], drugs[cut_d:])
    return {"names_caught": sum(model.log_odds(n) > NAME_ODDS for n in names[:cut_n]) / max(1, cut_n),
            "drugs_kept": sum(model.log_odds(d) <= NAME_ODDS for d in drugs[:cut_d]) / max(1, cut_d),
            "held_out_names": cut_n, "held_out_drugs": cut_d}


def main(argv: Sequence[str] | None = None) -> None:
    """Learn the stop list from the configured data dir's legal corpora, holding out a dev set's passages."""
    import argparse

    from indexer.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m indexer.legal_filter", description=main.__doc__)
    parser.add_argument("--held-out", type=Path, default=None,
                        help="BEIR corpus whose passages' documents are not learned from "
                             "(default: the legal NER dev set, read from the data directory)")
    parser.add_argument("--hold-out-split", action="append", default=None,
                        help="annotation splits whose documents are not learned from (repeatable; default: the "
                             "blind sets not scored yet, indexer.legal_dev.BLIND_SPLITS)")
    parser.add_argument("--hold-out-all", action="store_true",
                        help="hold out the documents of every annotated passage (the lists of rounds 1-8)")
    parser.add_argument("--lexicon", type=Path, required=True, help="the tagger's lexicon.json")
    parser.add_argument("--output", type=Path, default=STOPLIST_FILE)
    parser.add_argument("--check-names", action="store_true",
                        help="only score the name-vs-drug model on held-out fifths of the stop list's names and "
                             "the lexicon's Drug forms")
    args = parser.parse_args(argv)
    if args.check_names:
        found = check_name_model(LegalFilter.load(args.output).names, Normalizer.load(args.lexicon))
        print(f"held out {found['held_out_names']} names, {found['held_out_drugs']} drug forms; at log odds > "
              f"{NAME_ODDS:g}: names caught {found['names_caught']:.3f}, drug forms kept {found['drugs_kept']:.3f}")
        return
    data_dir = load_settings(None, ()).data.dir
    if args.held_out is None:
        from indexer.legal_dev import BLIND_SPLITS, passages

        splits = set(args.hold_out_split or BLIND_SPLITS)
        held = [p["text"] for p in passages(data_dir) if args.hold_out_all or p["metadata"]["split"] in splits]
    else:
        held = [json.loads(line)["text"] for line in args.held_out.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    print(f"holding out the documents of {len(held)} annotated passages")
    found = LegalFilter.learn(legal_texts(data_dir, held), Normalizer.load(args.lexicon),
                              medical=medical_texts(data_dir), medical_names=medical_forms(data_dir))
    path = found.save(args.output)
    print(f"wrote {path}: " + ", ".join(f"{k} {n}" for k, n in found.sizes().items()))


if __name__ == "__main__":
    main()
