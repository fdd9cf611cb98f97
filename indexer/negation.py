"""Negated and hypothetical context of a mention, NegEx/ConText style.

Trigger phrases (indexer/data/negation_triggers.json) are found in the mention's sentence, longest
first, so that a pseudo-trigger ("no increase", "is denied" in a legal ruling) masks the trigger
word inside it. A pre-trigger governs the words after it and a post-trigger the words before it,
up to `scope_words` words away, and never across a termination term ("no fever but chest pain":
the pain is affirmed). Negation wins over hypothesis when both apply.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import ConfigError

TRIGGERS_FILE = Path(__file__).resolve().parent / "data" / "negation_triggers.json"
_WORDS = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Trigger:
    start: int
    end: int
    kind: str  # negated | hypothetical | pseudo | termination
    direction: str  # pre | post | none


class NegationDetector:
    """Classifies a mention as affirmed, negated or hypothetical from its sentence."""

    def __init__(self, triggers: dict, scope_words: int = 8):
        if scope_words < 1:
            raise ConfigError(f"negation scope_words={scope_words} must be at least 1")
        self.scope_words = scope_words
        phrases: dict[str, tuple[str, str]] = {}
        try:
            for kind in ("negated", "hypothetical"):
                for direction in ("pre", "post"):
                    for p in triggers[kind][direction]:
                        phrases.setdefault(p.lower(), (kind, direction))
            for p in triggers["pseudo"]:
                phrases[p.lower()] = ("pseudo", "none")
            for p in triggers["termination"]:
                phrases.setdefault(p.lower(), ("termination", "none"))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"negation triggers need negated/hypothetical pre+post, pseudo and termination "
                              f"lists; missing {exc}") from None
        self.phrases = phrases
        self._last: tuple = ((None, None), [])  # the last sentence scanned: a tagger asks once per mention in it
        alternatives = sorted(phrases, key=len, reverse=True)  # longest first: pseudo phrases mask their parts
        body = "|".join(r"\s+".join(map(re.escape, p.split())) for p in alternatives)
        self.pattern = re.compile(rf"(?<![\w-])(?:{body})(?![\w-])", re.IGNORECASE)

    @classmethod
    def load(cls, path: str | Path | None = None, scope_words: int = 8) -> "NegationDetector":
        """Read trigger lists from a JSON file (default: the packaged one)."""
        path = Path(path) if path else TRIGGERS_FILE
        if not path.is_file():
            raise ConfigError(f"negation trigger file {str(path)!r} does not exist")
        return cls(json.loads(path.read_text(encoding="utf-8")), scope_words)

    def triggers(self, text: str, start: int = 0, end: int | None = None) -> list[Trigger]:
        """Trigger matches in text[start:end], left to right, not overlapping."""
        end = len(text) if end is None else end
        out = []
        for m in self.pattern.finditer(text, start, end):
            kind, direction = self.phrases[" ".join(m.group().lower().split())]
            out.append(Trigger(m.start(), m.end(), kind, direction))
        return out

    def classify(self, text: str, sentence: tuple[int, int], start: int, end: int) -> str:
        """'negated', 'hypothetical' or 'affirmed' for the mention text[start:end] in its sentence."""
        key, scanned = self._last  # one tuple, swapped whole: safe when threads share the detector
        if key[1] != sentence or key[0] is not text and key[0] != text:
            scanned = self.triggers(text, *sentence)
            self._last = ((text, sentence), scanned)
        found = [t for t in scanned if t.end <= start or t.start >= end]
        states = set()
        for t in found:
            if t.direction == "pre" and t.end <= start and self._reaches(text, found, t.end, start):
                states.add(t.kind)
            elif t.direction == "post" and t.start >= end and self._reaches(text, found, end, t.start):
                states.add(t.kind)
        return "negated" if "negated" in states else "hypothetical" if "hypothetical" in states else "affirmed"

    def _reaches(self, text: str, found: list[Trigger], a: int, b: int) -> bool:
        """Whether a trigger's scope spans the gap text[a:b]: few enough words, no termination term."""
        if len(_WORDS.findall(text, a, b)) > self.scope_words:
            return False
        return not any(t.kind == "termination" and a <= t.start and t.end <= b for t in found)
