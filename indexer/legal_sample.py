"""Draw passages for a legal NER annotation set: seeded, stratified, one passage per file, used files left out.

A passage is a run of 1-3 sentences (`sentence_spans`) of a file of the veterans' decisions, the
Nevada medical board filings or the New Mexico opinions. Strata follow docs/legal-ner-dev.md:
`medical` (a sentence with a medical word), `dense` (three or more), `citation` ("X v. Derwinski"),
`office` (an office abbreviation and no medical word) and `none` (no medical word). Medical words
are the one-word forms of the tagger's lexicon and a few legal-medical nouns: the sampler never runs
the tagger, so annotating what it draws is not steered by the tagger's output. OCR tables (few
letters, many short lines) are left out. The draw is a pure function of the files, the seed and
the quotas, so a set can be drawn again.
"""
from __future__ import annotations

import json
import random
import re
import tarfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from indexer.documents import sentence_spans
from indexer.legal_dev import source_text, text_digest

STRATA = ("medical", "dense", "citation", "office", "none")
# corpus folder -> (id prefix, quota per stratum)
QUOTAS: dict[str, tuple[str, dict[str, int]]] = {
    "bva-decisions": ("bva", {"medical": 6, "dense": 5, "citation": 4, "office": 4, "none": 3}),
    "nv-medical-board-malpractice-filings": ("nv", {"medical": 6, "dense": 6, "citation": 1, "none": 3}),
    "cap-nm-appeals-outcome": ("nm", {"medical": 6, "dense": 6, "citation": 3, "none": 3}),
    # the VetClaims decisions (BVA PTSD decisions as JSON): the BVA quotas, for when the single-issue folder runs out
    "vetclaims": ("vc", {"medical": 6, "dense": 5, "citation": 4, "office": 4, "none": 3}),
}
_EXTRA_MEDICAL = {"ptsd", "diagnosis", "diagnosed", "medication", "medications", "prescribed", "prescription",
                  "psychiatric", "psychiatrist", "symptoms", "treatment", "patient", "surgery", "drug", "drugs",
                  "injury", "disorder", "disease", "alcohol", "opioid", "opioids", "pain", "depression"}
_CITATION = re.compile(r"\b[A-Z][a-z]+\s+v\.\s+(?:Derwinski|Gober|Brown|West|Principi|Nicholson|Shinseki|"
                       r"McDonald|Wilkie|State|[A-Z][a-z]+)\b")
_OFFICE = re.compile(r"\b(?:RO|VA|AOJ|VCAA|BVA|VAMC|NAC|NRS|NMSA)\b")
_WORD = re.compile(r"[A-Za-z]+")


def medical_words(lexicon_file: Path) -> set[str]:
    """One-word forms (5+ letters) of a tagger lexicon, lower case, with a few legal-medical nouns."""
    data = json.loads(Path(lexicon_file).read_text(encoding="utf-8"))
    words = {form.lstrip("=").lower() for forms in data["lexicon"].values() for form in forms
             if " " not in form and form.lstrip("=").isalpha() and len(form.lstrip("=")) >= 5}
    return words | _EXTRA_MEDICAL


def legal_files(data_dir: Path) -> dict[str, list[str]]:
    """Per corpus folder, its files as the annotations name them (`archive:member`, `#content`/`#text` for JSON).

    The corpora come in this order and `draw` takes them in it, so a corpus added at the end leaves the
    draws of the earlier ones as they were."""
    bva = sorted(p.name for p in (data_dir / "bva-decisions/summarization/single_issue_PTSD_sample").glob("*.txt"))
    out = {"bva-decisions": [f"bva-decisions/summarization/single_issue_PTSD_sample/{n}" for n in bva]}
    nv = "nv-medical-board-malpractice-filings/nv_bme_filings_text.tar.gz"
    nm = "cap-nm-appeals-outcome/nm_appeals_500.tar.gz"
    with tarfile.open(data_dir / nv) as tar:
        out["nv-medical-board-malpractice-filings"] = sorted(f"{nv}:{m.name}" for m in tar.getmembers()
                                                             if m.isfile() and m.name.endswith(".txt"))
    with tarfile.open(data_dir / nm) as tar:
        out["cap-nm-appeals-outcome"] = sorted(f"{nm}:{m.name}#content" for m in tar.getmembers()
                                               if m.isfile() and m.name.endswith(".json"))
    vetclaims = sorted(p.relative_to(data_dir).as_posix() for p in (data_dir / "vetclaims").rglob("*.json"))
    out["vetclaims"] = [f"{p}#text" for p in vetclaims]
    return out


def stratum(text: str, medical: set[str]) -> str | None:
    """The stratum of a passage, or None for an OCR table or a fragment."""
    letters = sum(c.isalpha() for c in text)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if len(text) < 60 or letters < 0.6 * len(text) or (len(lines) > 3 and len(text) / len(lines) < 40):
        return None
    hits = sum(1 for w in _WORD.findall(text) if w.lower() in medical)
    if _CITATION.search(text):
        return "citation"
    if hits >= 3:
        return "dense"
    if hits:
        return "medical"
    return "office" if _OFFICE.search(text) else "none"


def _candidates(text: str, medical: set[str], rng: random.Random) -> dict[str, tuple[int, int]]:
    """One random passage (start, end) of each stratum the text offers."""
    sentences = sentence_spans(text)
    order = list(range(len(sentences)))
    rng.shuffle(order)
    found: dict[str, tuple[int, int]] = {}
    for i in order:
        j = min(len(sentences), i + rng.randint(1, 3))
        while j > i + 1 and sentences[j - 1][1] - sentences[i][0] > 700:
            j -= 1
        start, end = sentences[i][0], sentences[j - 1][1]
        if end - start > 900:
            continue
        kind = stratum(text[start:end], medical)
        if kind is not None and kind not in found:
            found[kind] = (start, end)
    return found


def draw(data_dir: Path, medical: set[str], seed: int, exclude: Iterable[str] = (), split: str = "heldout",
         quotas: dict[str, tuple[str, dict[str, int]]] = QUOTAS) -> list[dict[str, Any]]:
    """Annotation rows without mentions: per corpus, files shuffled by the seed, each quota filled in turn.

    A corpus the quotas leave out is skipped (and takes nothing from the seeded sequence)."""
    used = set(exclude)
    rng = random.Random(seed)
    rows, cache = [], {}
    for corpus, files in legal_files(data_dir).items():
        if corpus not in quotas:
            continue
        prefix, quota = quotas[corpus]
        pool = [f for f in files if f not in used]
        rng.shuffle(pool)
        need = dict(quota)
        for where in pool:
            if not any(need.values()):
                break
            text = source_text(data_dir, where, cache)
            cache.clear()
            offer = _candidates(text, medical, rng)
            kind = next((k for k in STRATA if need.get(k) and k in offer), None)
            if kind is None:
                continue
            need[kind] -= 1
            start, end = offer[kind]
            stem = Path(where.split(":")[-1].split("#")[0]).stem
            rows.append({"_id": f"{prefix}-{stem}-{start}",
                         "metadata": {"source": corpus, "file": where, "offset": start, "split": split,
                                      "length": end - start, "stratum": kind},
                         "sha256": text_digest(text[start:end]), "mentions": []})
    return rows


def used_files(annotations: Sequence[Path]) -> set[str]:
    """The files the given annotation files already draw passages from."""
    return {json.loads(line)["metadata"]["file"] for path in annotations
            for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()}
