"""Facet values for mentions: a lexicon learned from training data maps surface forms to MeSH ids.

Lookup keys fold case, Unicode forms, hyphens and a trailing plural, so "Myocardial infarctions"
and "myocardial infarction" meet; short upper-case forms ("MI", "PTSD") are also kept with their
case, since folding them collides with words. Inside a document, "long form (SF)" defines an
abbreviation whose later uses get the long form's id. Forms the lexicon does not know fall back
to `text:<key>`, a normalised surface string, so spelling variants still count as one value.

Spelling variants fold: a prefix written apart or hyphenated joins its word ("post-traumatic",
"post traumatic" and "posttraumatic" have one key), and common short forms without an in-document
definition ("PTSD" in a decision that never spells it out) take the long form of a packaged table
(indexer/data/abbreviations.json), so all three spellings and the abbreviation are one facet value.
"""
from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

from indexer.documents import Document, Mention

_PUNCT = re.compile(r"[\s\-‐‑‒–—/,]+")
ABBREVIATIONS_FILE = Path(__file__).resolve().parent / "data" / "abbreviations.json"
# Prefixes written solid, hyphenated or apart ("posttraumatic", "post-traumatic"); "non" stays apart,
# since "non-Hodgkin" is never written solid.
PREFIXES = frozenset({"post", "pre", "anti", "hyper", "hypo", "intra", "inter", "peri", "pseudo", "poly"})
_ABBREV = re.compile(r"^[A-Z0-9][A-Za-z0-9\-+]{0,9}s?$")  # "MI", "PTSD", "5-FU", "NSAIDs"


def singular(word: str) -> str:
    """A crude English singular that maps regular plurals onto their singular."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "os")):
        return word[:-1]
    return word


def fold_prefixes(words: Sequence[str]) -> list[str]:
    """Words with each detached prefix joined to the word after it."""
    out: list[str] = []
    for i, word in enumerate(words):
        if out and out[-1] in PREFIXES and i > 0 and words[i - 1] == out[-1]:
            out[-1] += word
        else:
            out.append(word)
    return out


def key(text: str) -> str:
    """Lookup key: NFKC, lower case, hyphens and slashes as spaces, prefixes joined, last word singular."""
    words = fold_prefixes(_PUNCT.sub(" ", unicodedata.normalize("NFKC", text).lower()).split())
    if not words:
        return ""
    words[-1] = singular(words[-1])
    return " ".join(words)


def _refold(stored: str) -> str:
    """A lexicon key saved before prefix folding, folded (case keys of abbreviations stay)."""
    return stored if stored.startswith("=") else " ".join(fold_prefixes(stored.split()))


@functools.lru_cache(maxsize=4)
def load_abbreviations(path: Path = ABBREVIATIONS_FILE) -> dict[str, str]:
    """Short form -> long form table (keys starting with '_' are comments)."""
    if not path.is_file():
        return {}
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if not k.startswith("_")}


def is_abbreviation(text: str) -> bool:
    """Short forms with capitals and no spaces, e.g. MI, PTSD, 5-FU, NSAIDs."""
    return bool(_ABBREV.match(text)) and sum(c.isupper() for c in text) >= 2


def _case_key(text: str) -> str:
    """Case-keeping key of an abbreviation (plural s dropped)."""
    return "=" + (text[:-1] if text.endswith("s") and text[:-1].isupper() else text)


def _readable(forms: Counter) -> str:
    """Display name of an id: its most frequent full form, else its most frequent form."""
    full = [(n, f) for f, n in forms.items() if not is_abbreviation(f)]
    pool = full or [(n, f) for f, n in forms.items()]
    return max(pool, key=lambda nf: (nf[0], -len(nf[1]), nf[1]))[1]


class Normalizer:
    """Lexicon label -> key -> id, id -> readable name; learned from gold mentions."""

    def __init__(self, lexicon: dict[str, dict[str, str]] | None = None, names: dict[str, str] | None = None,
                 abbreviations: dict[str, str] | None = None):
        self.lexicon = {label: {} for label in lexicon or {}}
        for label, table in (lexicon or {}).items():
            for stored, value in sorted(table.items()):
                self.lexicon[label].setdefault(_refold(stored), value)
        self.names = names or {}
        self.abbreviations = load_abbreviations() if abbreviations is None else abbreviations
        self.canonical = {key(long): long for long in self.abbreviations.values()}

    @classmethod
    def learn(cls, docs: Iterable[Document]) -> "Normalizer":
        """Each key maps to its most frequent gold id per label; ids get their most frequent full form as name."""
        ids: dict[tuple[str, str], Counter] = defaultdict(Counter)
        forms: dict[str, Counter] = defaultdict(Counter)
        for doc in docs:
            for m in doc.mentions:
                if not m.norm_id or m.norm_id in ("-", "-1"):
                    continue
                surface = " ".join(m.text.split())
                ids[(m.label, key(surface))][m.norm_id] += 1
                if is_abbreviation(surface):
                    ids[(m.label, _case_key(surface))][m.norm_id] += 1
                forms[m.norm_id][surface if is_abbreviation(surface) else surface.lower()] += 1
        lexicon: dict[str, dict[str, str]] = defaultdict(dict)
        for (label, k), counts in sorted(ids.items()):
            lexicon[label][k] = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0]
        return cls(dict(lexicon), {i: _readable(f) for i, f in sorted(forms.items())})

    def lookup(self, label: str, text: str) -> tuple[str, str] | None:
        """(id, name) of a surface form under a label, or None when the lexicon does not know it."""
        table = self.lexicon.get(label, {})
        surface = " ".join(text.split())
        found = table.get(_case_key(surface)) if is_abbreviation(surface) else None
        found = found or table.get(key(surface))
        if not found and self._expansion(surface):
            return self.lookup(label, self._expansion(surface))
        return (found, self.names.get(found, surface)) if found else None

    def _expansion(self, surface: str) -> str | None:
        """The table's long form of a short form (plural s allowed), else None."""
        if not is_abbreviation(surface):
            return None
        return self.abbreviations.get(surface) or self.abbreviations.get(_case_key(surface)[1:])

    def fallback(self, text: str) -> tuple[str, str]:
        """Facet value of an unknown form: the normalised surface string (a table short form: its long form)."""
        surface = " ".join(text.split())
        surface = self._expansion(surface) or surface
        k = key(surface)
        name = self.canonical.get(k) or (surface if is_abbreviation(surface) else surface.lower())
        return f"text:{k}", name

    def normalize_document(self, text: str, mentions: Sequence[Mention]) -> list[Mention]:
        """Mentions with norm_id/norm_name: gold ids kept, lexicon, in-document abbreviations, fallback."""
        resolved: list[tuple[str, str] | None] = []
        for m in mentions:
            if m.norm_id and m.norm_id not in ("-", "-1"):
                resolved.append((m.norm_id, m.norm_name or self.names.get(m.norm_id, " ".join(m.text.split()))))
            else:
                resolved.append(self.lookup(m.label, m.text))
        for short, value in self._abbreviations(text, mentions, resolved).items():
            for i, m in enumerate(mentions):
                if resolved[i] is None and " ".join(m.text.split()) == short:
                    resolved[i] = value
        return [replace(m, norm_id=v[0], norm_name=v[1]) if v else
                replace(m, norm_id=self.fallback(m.text)[0], norm_name=self.fallback(m.text)[1])
                for m, v in zip(mentions, resolved)]

    def _abbreviations(self, text: str, mentions: Sequence[Mention],
                       resolved: Sequence[tuple[str, str] | None]) -> dict[str, tuple[str, str]]:
        """Short form -> value of its long form, from "long form (SF)" pairs of mentions."""
        out: dict[str, tuple[str, str]] = {}
        order = sorted(range(len(mentions)), key=lambda i: mentions[i].start)
        for a, b in zip(order, order[1:]):
            long, short = mentions[a], mentions[b]
            between = text[long.end:short.start]
            if between.strip() != "(" or not is_abbreviation(short.text) or long.label != short.label:
                continue
            value = resolved[a] or self.fallback(long.text)
            out.setdefault(short.text, value)
        return out

    def save(self, path: str | Path) -> None:
        """Write the lexicon as JSON."""
        Path(path).write_text(json.dumps({"lexicon": self.lexicon, "names": self.names}, ensure_ascii=False,
                                         sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Normalizer":
        """Read a lexicon written by `save` (an absent file gives an empty lexicon)."""
        path = Path(path)
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data.get("lexicon", {}), data.get("names", {}))
