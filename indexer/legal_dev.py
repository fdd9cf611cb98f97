"""The hand-annotated legal NER dev set: our annotations in the repository, the passages read from the data.

eval/legal-ner-dev/annotations.jsonl (splits tune and test), heldout.jsonl, heldout2.jsonl and
heldout3.jsonl (splits heldout, heldout2, heldout3, drawn by `indexer.legal_sample` and annotated later, each scored only after its
annotations were committed) hold, per passage, where it lies in the shared data (file, or
archive member and JSON field, character offset and length), a checksum of its text, its tune/test
split and our Disease/Drug mentions with negation (offsets into the passage). No corpus text is
committed: `indexer legal-dev-set` reads each passage from the data directory, checks its checksum
and writes a BEIR corpus (var/legal-ner-dev/corpus.jsonl) that `indexer eval-ner --format beir` scores.
"""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any, Iterator, Sequence

from indexer.errors import ConfigError, ReaderError
from indexer.readers import bva, nv_bme
from indexer.readers.util import decode, normalise_newlines, read_text

ANNOTATION_DIR = Path(__file__).resolve().parent.parent / "eval" / "legal-ner-dev"
ANNOTATIONS = ANNOTATION_DIR / "annotations.jsonl"  # tune and test
HELDOUT = ANNOTATION_DIR / "heldout.jsonl"  # the fresh held-out set (round 1), then tuned on in round 2
HELDOUT2 = ANNOTATION_DIR / "heldout2.jsonl"  # the second fresh held-out set (round 3b), tuned on in round 3c
HELDOUT3 = ANNOTATION_DIR / "heldout3.jsonl"  # the third fresh held-out set (round 3c)
HELDOUT4 = ANNOTATION_DIR / "heldout4.jsonl"  # the fourth (round 4: twice the quotas, seed 20261205)
HELDOUT5 = ANNOTATION_DIR / "heldout5.jsonl"  # the fifth (round 5: seed 20261206)
HELDOUT6 = ANNOTATION_DIR / "heldout6.jsonl"  # the sixth (round 6: seed 20261207)
HELDOUT7 = ANNOTATION_DIR / "heldout7.jsonl"  # the seventh (round 7: twice the quotas, seed 20261208)
# the eighth (round 8: vetclaims, Nevada and New Mexico, twice the quotas, seed 20261209)
HELDOUT8 = ANNOTATION_DIR / "heldout8.jsonl"
# the ninth (round 9: seed 20261210; vetclaims with the BVA quotas, Nevada and New Mexico twice theirs)
HELDOUT9 = ANNOTATION_DIR / "heldout9.jsonl"
# The splits whose documents the stop list (indexer.legal_filter) must not learn from: the fresh sets not scored
# yet. A scored set's documents are learned from like any legal text (its one untuned scoring is on record).
BLIND_SPLITS: tuple[str, ...] = ()  # heldout9 scored once (round 9, docs/legal-ner-dev.md)
ANNOTATION_FILES = (ANNOTATIONS, HELDOUT, HELDOUT2, HELDOUT3, HELDOUT4, HELDOUT5, HELDOUT6, HELDOUT7, HELDOUT8,
                    HELDOUT9)
# what each corpus's reader puts in every document's meta that says it is legal (readers/bva.py, nv_bme.py,
# nm_appeals.py, vetclaims.py), given to each passage of the corpus
READER_META: dict[str, dict[str, str]] = {
    "bva-decisions": {"court": bva.COURT, "doc_type": "decision"},
    "nv-medical-board-malpractice-filings": {"court": nv_bme.BOARD},
    "cap-nm-appeals-outcome": {"doc_type": "opinion"},
    "vetclaims": {"court": bva.COURT, "doc_type": "decision"},  # readers/vetclaims.py (bva.decision_meta)
}
DEFAULT_OUT = Path("var/legal-ner-dev/corpus.jsonl")


def text_digest(text: str) -> str:
    """A short checksum of a passage's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def source_text(data_dir: Path, where: str, cache: dict[str, str]) -> str:
    """The whole text a passage was cut from: a file, `archive.tar.gz:member`, `...:member.json#field`, or
    `file.json#field` (a JSON file's field, newlines normalised as readers/vetclaims.py does)."""
    if where in cache:
        return cache[where]
    path, colon, member = where.partition(":")
    if colon:
        member, _, json_field = member.partition("#")
    else:
        path, _, json_field = path.partition("#")
    full = data_dir / path
    if not full.is_file():
        raise ConfigError(f"legal dev set: {str(full)!r} is missing; check [data] dir")
    if member:
        with tarfile.open(full) as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise ReaderError(f"no member {member!r}", str(full))
            raw = handle.read().decode("utf-8", errors="replace")
        text = _json_field(raw, json_field, f"{full}:{member}") if json_field else raw
    elif json_field:
        text = normalise_newlines(_json_field(decode(full.read_bytes()), json_field, str(full)))
    else:
        text = read_text(full)  # as the readers decode it (the BVA files are Windows-1252)
    cache[where] = text
    return text


def _json_field(raw: str, field: str, where: str) -> str:
    """The string `field` of a JSON object; an error names the file and the field."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ReaderError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", where) from None
    if not isinstance(data, dict) or not isinstance(data.get(field), str):
        raise ReaderError(f"no string field {field!r} in the JSON object", where)
    return data[field]


def _rows(annotations: Path | Sequence[Path]) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """(file, line number, row) of every annotation file; an id seen twice is an error."""
    seen: set[str] = set()
    for path in [annotations] if isinstance(annotations, Path) else annotations:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row["_id"] in seen:
                raise ReaderError(f"passage id {row['_id']!r} is annotated twice", str(path), f"line {n}")
            seen.add(row["_id"])
            yield Path(path), n, row


def passages(data_dir: Path, annotations: Path | Sequence[Path] = ANNOTATION_FILES) -> Iterator[dict[str, Any]]:
    """BEIR records of the dev set, each passage read from the data and checked against its checksum."""
    cache: dict[str, str] = {}
    for path, n, row in _rows(annotations):
        meta = row["metadata"]
        text = source_text(data_dir, meta["file"], cache)[meta["offset"]:meta["offset"] + meta["length"]]
        if text_digest(text) != row["sha256"]:
            raise ReaderError(f"passage {row['_id']} does not match its checksum (the data differs from the "
                              f"one annotated)", str(path), f"line {n}")
        mentions = [dict(m, text=text[m["start"]:m["end"]]) for m in row["mentions"]]
        # the court and doc_type the corpus's reader gives the whole document, so a passage is tagged as legal
        # text the way the build tags it (indexer.legal_filter.is_legal_document)
        meta = {**READER_META.get(meta["source"], {}), **meta}
        yield {"_id": row["_id"], "title": "", "text": text, "metadata": meta, "mentions": mentions}


def materialize(data_dir: Path, out: Path, annotations: Path | Sequence[Path] = ANNOTATION_FILES) -> int:
    """Write the dev set's BEIR corpus to `out`; returns the number of passages."""
    rows = list(passages(data_dir, annotations))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)
