"""Document and Mention records, and sentence-aware, token-aware chunking.

A chunk is a window of at most `max_tokens` encoder tokens (special tokens included) cut
at sentence boundaries where possible, overlapping its neighbour by about
`overlap_tokens`. Every chunk keeps its character span in the document text, so
`doc.text[chunk.start:chunk.end] == chunk.text` always holds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, Sequence

from indexer.errors import ConfigError

NEGATION_STATES = ("affirmed", "negated", "hypothetical")
META_COLUMNS = ("source", "doc_type", "court", "date")  # meta keys stored as filterable columns


@dataclass(frozen=True)
class Mention:
    """An entity mention: character span [start, end) in Document.text."""

    start: int
    end: int
    text: str
    label: str  # facet label, e.g. Disease, Drug
    source_label: str | None = None  # the corpus' own label, e.g. Chemical
    norm_id: str | None = None  # e.g. MESH:D009203
    norm_name: str | None = None  # readable canonical name
    negation: str = "affirmed"  # affirmed | negated | hypothetical
    confidence: float | None = None  # tagger mentions: the least sure word's tag marginal (ner_confidence)


@dataclass
class Document:
    """One document as read from a corpus; meta holds source, doc_type, court, date, ..."""

    id: str
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    mentions: list[Mention] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    ordinal: int
    start: int
    end: int
    text: str


class TokenOffsets(Protocol):
    """Gives the character span of every encoder token of a text (no special tokens)."""

    def __call__(self, text: str) -> list[tuple[int, int]]: ...


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def regex_offsets(text: str) -> list[tuple[int, int]]:
    """Fallback tokenizer: words and single punctuation marks."""
    return [m.span() for m in _WORD.finditer(text)]


class WordPieceOffsets:
    """Token offsets from a Hugging Face fast tokenizer (tokenizer.json in a model dir)."""

    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer  # light: no torch, no transformers

        path = Path(model_dir) / "tokenizer.json"
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()

    def __call__(self, text: str) -> list[tuple[int, int]]:
        enc = self._tok.encode(text, add_special_tokens=False)
        return [o for o in enc.offsets if o[1] > o[0]]


@lru_cache(maxsize=4)
def offsets_for_model(model_dir: str) -> TokenOffsets:
    """Token offsets for a model directory, falling back to regex words without tokenizer.json."""
    if (Path(model_dir) / "tokenizer.json").is_file():
        return WordPieceOffsets(model_dir)
    return regex_offsets


# A sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace and an
# upper-case letter, digit or opening quote; or at a blank line. Abbreviations like "e.g."
# followed by lower case do not end a sentence.
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])|\n\s*\n")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of sentences, whitespace trimmed; empty text has none."""
    spans, start = [], 0
    for m in _SENT_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    out = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def chunk_text(text: str, offsets: TokenOffsets = regex_offsets, max_tokens: int = 128,
               overlap_tokens: int = 32) -> list[Chunk]:
    """Cut text into overlapping token windows that prefer sentence boundaries."""
    budget = max_tokens - 2  # [CLS] and [SEP]
    if budget < 8:
        raise ConfigError(f"max_tokens={max_tokens} is too small; use at least 10")
    overlap = max(0, min(overlap_tokens, budget // 2))
    tokens = offsets(text)
    if not tokens:
        return []
    # Each token gets the index of the sentence it starts in.
    sents = sentence_spans(text)
    sent_of = []
    si = 0
    for s, _ in tokens:
        while si + 1 < len(sents) and s >= sents[si + 1][0]:
            si += 1
        sent_of.append(si)
    # Windows start and end at word starts, so a chunk never begins inside a word: re-tokenizing
    # the chunk text then gives the same tokens.
    word_start = [i == 0 or tokens[i][0] != tokens[i - 1][1] or not text[tokens[i][0]].isalnum()
                  or not text[tokens[i - 1][1] - 1].isalnum() for i in range(len(tokens))]
    windows: list[tuple[int, int]] = []  # token index ranges [a, b)
    a, n = 0, len(tokens)
    while a < n:
        b = min(n, a + budget)
        w = b
        while a + 1 < w < n and not word_start[w]:
            w -= 1
        if w > a + 1:  # a single word longer than the window is cut inside it
            b = w
        if b < n:
            # back off to the last sentence start inside the window, if that keeps it at least half full
            cut = b
            while cut > a + budget // 2 and sent_of[cut] == sent_of[cut - 1]:
                cut -= 1
            if cut > a + budget // 2:
                b = cut
        windows.append((a, b))
        if b >= n:
            break
        nxt = max(a + 1, b - overlap)
        while nxt < b and not word_start[nxt]:
            nxt += 1
        # start the overlap at a sentence start when one lies inside it
        for j in range(nxt, b):
            if sent_of[j] != sent_of[j - 1]:
                nxt = j
                break
        a = nxt
    return [Chunk(i, tokens[a][0], tokens[b - 1][1], text[tokens[a][0]:tokens[b - 1][1]])
            for i, (a, b) in enumerate(windows)]


def chunk_document(doc: Document, offsets: TokenOffsets, max_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Chunks of a document's text (the title is stored apart and not chunked)."""
    return chunk_text(doc.text, offsets, max_tokens, overlap_tokens)


def validate_mentions(doc: Document) -> list[str]:
    """Problems with a document's mention offsets (empty list when all slice the text exactly)."""
    problems = []
    for m in doc.mentions:
        if not (0 <= m.start < m.end <= len(doc.text)):
            problems.append(f"mention {m.text!r} span [{m.start}, {m.end}) is outside the text (length {len(doc.text)})")
        elif doc.text[m.start:m.end] != m.text:
            problems.append(f"mention {m.text!r} at [{m.start}, {m.end}) slices {doc.text[m.start:m.end]!r}")
        if m.negation not in NEGATION_STATES:
            problems.append(f"mention {m.text!r} negation {m.negation!r} is not one of {NEGATION_STATES}")
    return problems


def chunk_of(chunks: Sequence[Chunk], start: int, end: int) -> int | None:
    """Ordinal of the first chunk that contains the span, or that overlaps it most."""
    best, best_overlap = None, 0
    for c in chunks:
        if c.start <= start and end <= c.end:
            return c.ordinal
        ov = min(end, c.end) - max(start, c.start)
        if ov > best_overlap:
            best, best_overlap = c.ordinal, ov
    return best
