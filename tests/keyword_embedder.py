"""A deterministic keyword embedder for tests: each word hashes to a signed coordinate.

Two texts score by the words they share (a bag-of-words cosine), so expected rankings can be
worked out by hand. It sits at the Embedder protocol seam; nothing else is faked.
"""
from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")
STOP = frozenset("a an and the of for to in on with by was is are be his her he she it that this as at from".split())


def words(text: str) -> list[str]:
    """Lower-case words without stop words, with a plural 's' stripped."""
    out = []
    for w in _WORD.findall(text.lower()):
        if w in STOP:
            continue
        out.append(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


class KeywordEmbedder:
    """Bag of hashed words, L2-normalised; a text without words maps to the first basis vector."""

    def __init__(self, dim: int = 256, name: str = "keyword-fake"):
        self.dim = dim
        self.name = name
        self.calls = 0

    def _one(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for w in words(text):
            h = zlib.crc32(w.encode())
            v[h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        n = float(np.linalg.norm(v))
        if n == 0:
            v[0] = 1.0
            return v
        return v / n

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)
