"""The seeded dev fold: one draw that embedder training holds out and evaluation scores on.

Training (indexer/train/pairs.py) and evaluation (searchd/eval/evalsets.py) both call
`split_ids`, so with the same fraction and seed (`train_embedder.dev_fraction` and
`train_embedder.seed`) `searchd eval --fold dev` measures exactly the queries the embedder
never trained on.
"""
from __future__ import annotations

import random
from typing import Iterable


def split_ids(ids: Iterable[str], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """A seeded (train, dev) split of ids: sort, shuffle with `seed`, dev is the first round(fraction * n)."""
    ordered = sorted(set(ids))  # sorted first, so the draw does not depend on the order ids arrive in
    random.Random(seed).shuffle(ordered)
    cut = int(round(len(ordered) * fraction))
    return set(ordered[cut:]), set(ordered[:cut])
