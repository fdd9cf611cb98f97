"""MedQuAD question-answer pairs (`medquad_qa.jsonl.gz`): one document per answered question.

PATH is the file or the `medquad` folder. Records without an answer (the three MedlinePlus
subsets whose answers were removed for copyright) are passed over. title = the question,
text = the answer (runs of spaces collapsed), doc_type = `qa`, meta qtype, focus, url and the
NIH site (`source_site`). `qid` is not unique (some CancerGov pages repeat it for different
questions), so the id is `<site>/<qid>`, with `#2`, `#3`, ... on repeats in file order.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

from indexer.documents import Document
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.io import open_text

FILE = "medquad_qa.jsonl.gz"


def _answer(text: str) -> str:
    lines = (re.sub(r"[ \t]+", " ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return "\n".join(lines).strip()


def _file(path: Path) -> Path:
    if not path.is_dir():
        return path
    for file in (path / FILE, path / FILE.removesuffix(".gz")):
        if file.is_file():
            return file
    raise ReaderError(f"no {FILE} (or unzipped) in this folder", str(path))


def answered_rows(path: Path) -> list[dict]:
    """Answered records as plain rows (group = source page id, qid as in the file, question and
    answer stripped), for building training pairs and eval sets; a malformed line is an error."""
    file = _file(path)
    rows = []
    for no, line in _lines(file):
        try:
            rec = json.loads(line)
            question, answer = rec["question"].strip(), (rec.get("answer") or "").strip()
            # a few records lack doc_id; the page id is also the qid's prefix
            group = str(rec.get("doc_id") or str(rec["qid"]).split("-")[0])
            qid = str(rec["qid"])
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise ReaderError(f"bad MedQuAD record: {exc!r}", str(file), f"line {no}") from None
        if question and answer:  # three source sites ship questions without answers
            rows.append({"group": group, "qid": qid, "question": question, "answer": answer,
                         "focus": rec.get("focus"), "qtype": rec.get("qtype"), "source": rec.get("source")})
    return rows


def _lines(file: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) of each non-blank line of the JSON-lines file."""
    with open_text(file) as handle:
        for no, line in enumerate(handle, 1):
            if line.strip():
                yield no, line


def count(path: Path, options: ReadOptions) -> int:
    """Number of answered questions (one quick JSON pass, a few seconds)."""
    return sum(1 for _, line in _lines(_file(path)) if _answered(line))


def _answered(line: str) -> bool:
    try:
        answer = json.loads(line).get("answer")
    except (json.JSONDecodeError, AttributeError):
        return True  # reported as malformed by read, so it counts as a record
    return isinstance(answer, str) and bool(answer.strip())


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Answered MedQuAD questions."""
    file = _file(path)
    seen: Counter = Counter()
    for no, line in _lines(file):
        try:
            rec = json.loads(line)
            answer, qid, site = rec.get("answer") or "", str(rec["qid"]), str(rec.get("source", ""))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as exc:
            yield ReaderError(f"expected a JSON object with `qid`, `question`, `answer`: {exc}",
                              str(file), f"line {no}")
            continue
        if not isinstance(answer, str) or not answer.strip():
            continue
        base = f"{site}/{qid}" if site else qid
        seen[base] += 1
        doc_id = base if seen[base] == 1 else f"{base}#{seen[base]}"
        meta = {"source": options.source or "medquad", "doc_type": "qa", "source_site": site,
                "qtype": rec.get("qtype"), "focus": rec.get("focus"), "url": rec.get("url")}
        yield Document(doc_id, str(rec.get("question") or "").strip(), _answer(answer),
                       {k: v for k, v in meta.items() if v})
