"""User text -> a safe SQLite FTS5 query.

The user syntax is small: words, "quoted phrases", and a leading `-` to exclude a word or
phrase. Words are OR-ed, so a long natural-language question still matches documents that
share some of its terms and BM25 ranks by how many and how rare. Every word or phrase reaches
FTS5 as a double-quoted string (with `"` doubled), so FTS5 operators, column filters,
parentheses, `*` and `^` in user text are plain text and no input can raise an SQLite error.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from indexer.errors import ConfigError, choices

MAX_TERMS = 32  # longer queries keep their first terms; BM25 gains nothing from more
# Function words match most chunks, so OR-ing them in makes FTS5 score nearly the whole corpus
# (measured: 170 ms of a 190 ms keyword query at 100,000 chunks) while their BM25 weight is near
# zero. They are dropped from a query that has other words, and kept inside "quoted phrases".
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no nor not of off on once
only or other our ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
""".split())
# Lucene's default English stop set (EnglishAnalyzer), the list behind Pyserini's BEIR BM25 runs
LUCENE_STOP_WORDS = frozenset("""
a an and are as at be but by for if in into is it no not of on or such that the their then there these they this
to was will with
""".split())
STOP_LISTS = {"medlex": STOP_WORDS, "lucene": LUCENE_STOP_WORDS, "none": frozenset()}
_PIECE = re.compile(r'(-?)"([^"]*)"?|(-?)([^\s"]+)')
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class KeywordQuery:
    include: tuple[str, ...]  # words or phrases (space-joined words), any of which may match
    exclude: tuple[str, ...]  # words or phrases no matching chunk may contain

    def fts(self) -> str | None:
        """The FTS5 MATCH expression, or None when nothing positive is left to match."""
        if not self.include:
            return None
        expr = " OR ".join(_quote(t) for t in self.include)
        if len(self.include) > 1:
            expr = f"({expr})"
        for t in self.exclude:
            expr = f"{expr} NOT {_quote(t)}"
        return expr

    def terms(self) -> list[str]:
        """Positive words, for highlighting outside FTS5."""
        return [w for t in self.include for w in t.split()]


def stop_list(name: str) -> frozenset[str]:
    """The stop list a setting names (search.stop_words); a ConfigError names the valid ones."""
    if name not in STOP_LISTS:
        raise ConfigError(f"unknown stop list {name!r} (search.stop_words); valid: {choices(STOP_LISTS)}")
    return STOP_LISTS[name]


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _words(text: str) -> list[str]:
    # NFKC folds full-width and compatibility forms the way a user would read them;
    # \w+ keeps letters and digits of any script, which is what the unicode61 tokenizer indexes.
    return [w for w in _WORD.findall(unicodedata.normalize("NFKC", text)) if w.strip("_")]


def parse(text: str, stop_words: frozenset[str] = STOP_WORDS) -> KeywordQuery:
    """Parse user text into words and phrases to include or exclude (dropping `stop_words`); never raises."""
    include: list[str] = []
    exclude: list[str] = []
    for m in _PIECE.finditer(text or ""):
        if m.group(2) is not None:  # a quoted phrase
            negative, words = bool(m.group(1)), _words(m.group(2))
            items = [" ".join(words)] if words else []
        else:
            negative, words = bool(m.group(3)), _words(m.group(4))
            items = words if not negative else [" ".join(words)] if words else []
        target = exclude if negative else include
        for item in items:
            if item.lower() not in (t.lower() for t in target):
                target.append(item)
    content = [t for t in include if t.lower() not in stop_words or " " in t]
    return KeywordQuery(tuple((content or include)[:MAX_TERMS]), tuple(exclude[:MAX_TERMS]))


def fts_query(text: str, stop_words: frozenset[str] = STOP_WORDS) -> str | None:
    """The FTS5 expression for user text, or None when it has no searchable words."""
    return parse(text, stop_words).fts()
