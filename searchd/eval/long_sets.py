"""Long-query (query by document) eval sets: the facts of a case as the query, the rest of its decision the answer.

- BVA decisions (`bva`): the query is the start of the Board's discussion of the evidence, the
  text under REASONS AND BASES FOR FINDINGS AND CONCLUSION (or, in a remand, under INTRODUCTION),
  up to the ORDER or REMAND heading.
- New Mexico opinions (`nm-appeals`): the query is the statement of facts (the FACTS or
  BACKGROUND section, up to DISCUSSION).

The passage is at most `max_chars` long (cut at a sentence end) and at least `min_chars`, else
the document gives no query. It is removed from its own document, so the answer never contains
the query's text: what links them is the rest of the decision (issue, findings, reasoning)
about the same facts. Every other document of the corpus stays whole, as a distractor. Ids and
titles are those of the legal query set (`<prefix>:<reader id>`), so an index built for one
reuses the other's vectors of unchanged passages through the vector cache.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from indexer.errors import ReaderError
from searchd.eval.evalsets import EvalSet

MIN_CHARS, MAX_CHARS = 1500, 5000
_BVA = re.compile(r"^(?:REASONS AND BASES FOR FINDINGS? AND CONCLUSIONS?|INTRODUCTION)[ \t]*$", re.MULTILINE)
_BVA_END = re.compile(r"^(?:ORDER|REMAND)[ \t]*$", re.MULTILINE)
_NM_FACTS = re.compile(r"(?:[IVX]+\.\s*)?(?:STATEMENT OF (?:THE )?FACTS|FACTUAL AND PROCEDURAL BACKGROUND|FACTS AND "
                       r"PROCEDURAL (?:HISTORY|BACKGROUND)|PROCEDURAL AND FACTUAL BACKGROUND|FACTUAL BACKGROUND|"
                       r"BACKGROUND|FACTS)\s*\{\d+\}\s*")  # the heading and the paragraph mark after it
_NM_END = re.compile(r"(?:[IVX]+\.\s*)?(?:DISCUSSION|ANALYSIS|STANDARD OF REVIEW)\s*(?=\{\d+\})")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|\{|$)")
FORMATS = {"bva": ("bva", "bva-decisions/summarization/single_issue_PTSD_sample"),
           "nm-appeals": ("nm", "cap-nm-appeals-outcome/nm_appeals_500.tar.gz")}


def _cut(text: str, start: int, end: int, max_chars: int) -> tuple[int, int]:
    """[start, end) shortened to at most max_chars, ending after a sentence when one ends in it."""
    end = min(end, start + max_chars)
    ends = [m.end() for m in _SENTENCE_END.finditer(text, start, end)]
    return start, ends[-1] if ends and ends[-1] > start + max_chars // 2 else end


def bva_span(text: str, max_chars: int = MAX_CHARS) -> tuple[int, int] | None:
    """The query passage of a BVA decision: the start of its reasons (or remand introduction)."""
    m = _BVA.search(text)
    if not m:
        return None
    end = _BVA_END.search(text, m.end())  # the ORDER (or REMAND) that follows is the answer's, never the query's
    return _cut(text, m.end(), end.start() if end else len(text), max_chars)


def nm_span(text: str, max_chars: int = MAX_CHARS) -> tuple[int, int] | None:
    """The query passage of a New Mexico opinion: its statement of facts."""
    m = _NM_FACTS.search(text)
    if not m:
        return None
    end = _NM_END.search(text, m.end())
    return _cut(text, m.end(), end.start() if end else len(text), max_chars)


SPANS: dict[str, Callable[[str, int], tuple[int, int] | None]] = {"bva": bva_span, "nm-appeals": nm_span}


def long_query_set(fmt: str, path: Path, name: str, min_chars: int = MIN_CHARS,
                   max_chars: int = MAX_CHARS, limit: int | None = None) -> EvalSet:
    """Facts -> rest-of-decision pairs of one legal corpus (its first `limit` documents), the rest as distractors."""
    from indexer.importing import CorpusReader

    if fmt not in SPANS:
        raise ReaderError(f"long-query sets are made from {', '.join(SPANS)}, not {fmt!r}", str(path))
    prefix = FORMATS[fmt][0]
    out = EvalSet(name)
    for doc in CorpusReader(fmt, path, limit=limit):
        doc_id, text = f"{prefix}:{doc.id}", doc.text
        span = SPANS[fmt](text, max_chars)
        if span and span[1] - span[0] >= min_chars:
            query = " ".join(text[span[0]:span[1]].split())
            text = text[:span[0]].rstrip() + "\n\n" + text[span[1]:].lstrip()
            out.queries[doc_id] = query
            out.qrels[doc_id] = {doc_id: 1}
        meta = {k: doc.meta[k] for k in ("source", "doc_type", "court", "date") if doc.meta.get(k)}
        out.corpus.append({"_id": doc_id, "title": doc.title, "text": text, "metadata": meta})
    if not out.queries:
        raise ReaderError(f"no document has a query passage of at least {min_chars} characters", str(path))
    return out
