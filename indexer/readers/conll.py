"""CoNLL IOB: one token per line (token first, tag last, tab or space separated), blank line between sentences.

A file that starts with `-DOCSTART-` holds documents separated by `-DOCSTART-` lines; a file
without them (e.g. NCBI-disease's conll/train.tsv) is read one document per sentence. Text is
rebuilt as the tokens joined by single spaces, sentences by newlines, so every mention's
offsets slice Document.text exactly. Tags may be IOB1, IOB2 or IOBES (decoded by seqeval).
Document ids are `<file stem>-<n>` (n counts from 1).
"""
from __future__ import annotations

import re
from itertools import chain
from pathlib import Path
from typing import Iterator

from seqeval.metrics.sequence_labeling import get_entities

from indexer.documents import Document, Mention, validate_mentions
from indexer.errors import ReaderError
from indexer.readers import ReadOptions, Record
from indexer.readers.io import open_text
from indexer.readers.util import files_under

SUFFIXES = tuple(s + gz for s in (".conll", ".tsv", ".txt", ".iob", ".bio") for gz in ("", ".gz"))
TAG = re.compile(r"O|[BIES]-\S+")
Sentence = list[tuple[int, str, str]]  # (line number, token, tag)


def _document(doc_id: str, sentences: list[Sentence], path: str, options: ReadOptions) -> Record:
    """Join the sentences' tokens into text and turn their tags into mentions."""
    parts, mentions, pos = [], [], 0
    for sent in sentences:
        starts = []
        for i, (_, token, _) in enumerate(sent):
            starts.append(pos)
            parts.append(token + (" " if i < len(sent) - 1 else "\n"))
            pos += len(parts[-1])
        for label, first, last in get_entities([tag for _, _, tag in sent]):
            start, end = starts[first], starts[last] + len(sent[last][1])
            mentions.append((label, start, end))
    text = "".join(parts).rstrip("\n")
    doc = Document(doc_id, "", text, {"source": options.source or "conll"},
                   [Mention(s, e, text[s:e], options.label_map.get(lab, lab), source_label=lab)
                    for lab, s, e in mentions])
    problems = validate_mentions(doc)
    return ReaderError(problems[0], path, f"line {sentences[0][0][0]}") if problems else doc


def _blocks(file: Path) -> Iterator[tuple[str, object]]:
    """('doc', None) at -DOCSTART-, ('sent', Sentence) per sentence, ('bad', ReaderError) per bad line."""
    sent: Sentence = []
    bad: ReaderError | None = None
    with open_text(file) as handle:
        for no, line in enumerate(handle, 1):
            cols = line.split()
            if not cols or cols[0] == "-DOCSTART-":
                if bad or sent:
                    yield ("bad", bad) if bad else ("sent", sent)
                sent, bad = [], None
                if cols:
                    yield "doc", None
                continue
            if bad:
                continue
            if len(cols) < 2 or not TAG.fullmatch(cols[-1]):
                bad = ReaderError(f"expected `TOKEN ... TAG` with TAG one of O, B-X, I-X, E-X, S-X; got "
                                  f"{line.strip()[:80]!r}", str(file), f"line {no}")
                continue
            sent.append((no, cols[0], cols[-1]))
    if bad or sent:
        yield ("bad", bad) if bad else ("sent", sent)


def read(path: Path, options: ReadOptions) -> Iterator[Record]:
    """Documents of a CoNLL file, or of every .conll/.tsv/.txt/.iob file under a directory."""
    for file in files_under(path, SUFFIXES):
        stem = file.name.split(".")[0]
        n, doc_mode, pending, broken = 0, False, [], False
        for kind, value in chain(_blocks(file), [("doc", None)]):  # a final DOCSTART flushes the last doc
            if kind == "bad":
                yield value
                broken = doc_mode  # in document mode the whole document is dropped
                n += 0 if doc_mode else 1  # ids stay the sentence's position either way
            elif kind == "sent" and doc_mode:
                pending.append(value)
            elif kind == "sent":
                n += 1
                yield _document(f"{stem}-{n}", [value], str(file), options)
            else:
                if pending or broken:
                    n += 1
                    if not broken:
                        yield _document(f"{stem}-{n}", pending, str(file), options)
                doc_mode, pending, broken = True, [], False
