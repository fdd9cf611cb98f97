"""Training pairs, dev sets and hard-negative triplets for the embedder, built from the readers.

Every source yields (anchor, positive) pairs from its train split only; SciFact, MedQuAD and
the BVA decisions have no dev split here, so a seeded fold of their train items is held out
(never trained on). Entity-aware pairs join two abstracts that share normalised MeSH ids;
their negatives are close in embedding space but share none.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from indexer.documents import Document
from indexer.errors import ConfigError, choices
from indexer.folds import split_ids
from indexer.importing import CorpusReader
from indexer.readers import ReadOptions
from indexer.readers.beir import load_qrels, load_queries
from indexer.readers.medquad import answered_rows

SOURCES = ("bc5cdr", "ncbi", "scifact", "nfcorpus", "medquad", "bva", "entity")

Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> unit-norm float32 (n, dim)


@dataclass(frozen=True)
class Pair:
    """One (anchor, positive) training example; `group` marks texts that must not be negatives."""

    anchor: str
    positive: str
    source: str
    group: str  # id of the positive's document (or a shared answer key)
    ids: frozenset[str] = frozenset()  # normalised entity ids of the anchor's document
    known: frozenset[str] = frozenset()  # other documents judged relevant to the anchor: never its negatives


@dataclass
class DevSet:
    """An IR dev set: queries, a corpus and the relevant corpus ids of each query."""

    name: str
    queries: dict[str, str]
    corpus: dict[str, str]
    relevant: dict[str, set[str]]
    domain: str = "medical"  # medical | legal


def docs_of(fmt: str, path: Path, label_map: dict[str, str] | None = None) -> list[Document]:
    """Every well-formed Document of a corpus; malformed records (a few NCBI offsets) are skipped with a warning."""
    return list(CorpusReader(fmt, path, ReadOptions(label_map=label_map or {}), skip_bad=True))


def abstract_of(doc: Document) -> str:
    """The document text without its leading title (PubTator text starts with the title)."""
    text = doc.text
    if doc.title and text.startswith(doc.title):
        text = text[len(doc.title):]
    return text.strip()


def entity_ids(doc: Document) -> frozenset[str]:
    """Normalised ids of the document's Disease and Drug/Chemical mentions."""
    return frozenset(m.norm_id for m in doc.mentions if m.norm_id and m.norm_id != "-")


def title_pairs(docs: Iterable[Document], source: str) -> list[Pair]:
    """Title -> abstract pairs of documents that have both."""
    return [Pair(d.title.strip(), abstract_of(d), source, d.id, entity_ids(d))
            for d in docs if d.title.strip() and abstract_of(d)]


def entity_pairs(docs: Sequence[Document], min_jaccard: float = 0.1) -> list[Pair]:
    """Title of A -> abstract of B, where B shares the largest share of A's normalised entity ids."""
    ids = [entity_ids(d) for d in docs]
    out = []
    for i, a in enumerate(docs):
        if not ids[i] or not a.title.strip():
            continue
        best, score = -1, min_jaccard
        for j, b_ids in enumerate(ids):
            if j != i and b_ids:
                jac = len(ids[i] & b_ids) / len(ids[i] | b_ids)
                if jac > score:
                    best, score = j, jac
        if best >= 0 and abstract_of(docs[best]):
            out.append(Pair(a.title.strip(), abstract_of(docs[best]), "entity", docs[best].id, ids[i]))
    return out


def beir_text(doc: Document) -> str:
    """A BEIR document as one passage: title and text."""
    return f"{doc.title}. {doc.text}" if doc.title else doc.text


def beir_pairs(qrels: dict[str, dict[str, int]], queries: dict[str, str], corpus: dict[str, str],
               source: str, per_query: int = 3) -> list[Pair]:
    """Query -> document pairs at each query's highest grade (at most `per_query` per query); every
    document judged relevant at any grade is `known`, so mining never makes it a negative (an
    NFCorpus query has dozens)."""
    out = []
    for qid in sorted(qrels):
        judged = {d: g for d, g in qrels[qid].items() if g > 0 and d in corpus}
        if qid not in queries or not judged:
            continue
        top = max(judged.values())
        for did in sorted(d for d, g in judged.items() if g == top)[:per_query]:
            out.append(Pair(queries[qid], corpus[did], source, did, known=frozenset(judged)))
    return out


def make_dev(name: str, queries: dict[str, str], corpus: dict[str, str], relevant: dict[str, set[str]],
             max_queries: int, max_corpus: int, seed: int, domain: str = "medical") -> DevSet:
    """Sample queries (seeded) with at most cap/20 relevant documents each, while these fill at most
    two thirds of the corpus cap; keep
    every relevant document of the chosen queries and fill the corpus up to the cap with others."""
    candidates = sorted(q for q in relevant if q in queries and relevant[q] & corpus.keys())
    rng = random.Random(seed)
    rng.shuffle(candidates)
    qids, keep = [], set()
    for q in candidates:
        if len(qids) >= max_queries:
            break
        mine = relevant[q] & corpus.keys()
        more = keep | mine
        if len(mine) > max(1, max_corpus // 20) or len(more) > max_corpus * 2 // 3:
            continue  # NFCorpus queries with hundreds of relevant documents would crowd out distractors
        qids.append(q)
        keep = more
    qids.sort()
    rel = {q: relevant[q] & corpus.keys() for q in qids}
    others = sorted(corpus.keys() - keep)
    rng.shuffle(others)
    keep |= set(others[:max(0, max_corpus - len(keep))])
    return DevSet(name, {q: queries[q] for q in qids}, {d: corpus[d] for d in sorted(keep)}, rel, domain)


def pubtator_dev(path: Path, name: str, max_queries: int, max_corpus: int, seed: int) -> DevSet:
    """Title -> abstract retrieval over the abstracts of a PubTator dev file."""
    docs = [d for d in docs_of("pubtator", path) if d.title.strip() and abstract_of(d)]
    return make_dev(name, {d.id: d.title for d in docs}, {d.id: abstract_of(d) for d in docs},
                    {d.id: {d.id} for d in docs}, max_queries, max_corpus, seed)


def beir_source(path: Path, split: str, source: str, dev_fraction: float, seed: int, max_queries: int,
                max_corpus: int, dev_split: str | None = None) -> tuple[list[Pair], DevSet, dict[str, str]]:
    """Train pairs of a BEIR set, its dev split (or a seeded fold of the train queries) and its corpus."""
    corpus = {d.id: beir_text(d) for d in docs_of("beir", path)}
    queries = load_queries(path)
    qrels = load_qrels(path, split)
    if dev_split:
        train_q, dev_qrels = set(qrels), load_qrels(path, dev_split)
    else:
        train_q, dev_q = split_ids(qrels, dev_fraction, seed)
        dev_qrels = {q: qrels[q] for q in dev_q}
    pairs = beir_pairs({q: qrels[q] for q in train_q}, queries, corpus, source)
    relevant = {q: {d for d, g in r.items() if g > 0} for q, r in dev_qrels.items()}
    return pairs, make_dev(f"{source}-dev", queries, corpus, relevant, max_queries, max_corpus, seed), corpus


def medquad_source(path: Path, dev_fraction: float, seed: int, max_queries: int,
                   max_corpus: int) -> tuple[list[Pair], DevSet]:
    """Question -> answer pairs of MedQuAD records with answers; the dev fold is split by source page."""
    records = answered_rows(path)
    train_docs, dev_docs = split_ids((r["group"] for r in records), dev_fraction, seed)
    pairs = [Pair(r["question"], r["answer"], "medquad", r["qid"]) for r in records if r["group"] in train_docs]
    dev = [r for r in records if r["group"] in dev_docs]
    return pairs, make_dev("medquad-dev", {r["qid"]: r["question"] for r in dev}, {r["qid"]: r["answer"] for r in dev},
                           {r["qid"]: {r["qid"]} for r in dev}, max_queries, max_corpus, seed)


_HEADER = re.compile(r"^[A-Z][A-Z ,']{3,}$")


def decision_sections(text: str) -> dict[str, str]:
    """Sections of a BVA decision keyed by their all-caps heading (THE ISSUE, FINDINGS OF FACT, ...)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if _HEADER.match(line.strip()) and len(line.strip()) <= 60:
            current = line.strip()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line.strip())
    return {k: re.sub(r"\s+", " ", " ".join(v)).strip() for k, v in sections.items()}


def bva_pair(decision_id: str, text: str, tail_chars: int = 1500) -> Pair | None:
    """Issue and findings of fact -> the closing part of the reasons and bases (its case-specific analysis)."""
    sections = decision_sections(text)
    issue = next((v for k, v in sections.items() if k.startswith("THE ISSUE")), "")
    findings = next((v for k, v in sections.items() if k.startswith("FINDING")), "")
    reasons = next((v for k, v in sections.items() if k.startswith("REASONS AND BASES")), "")
    if not (issue and findings and reasons):
        return None
    tail = reasons[-tail_chars:]
    tail = tail[tail.find(" ") + 1:] if len(reasons) > tail_chars else tail  # start at a word
    return Pair(f"{issue} {findings}", tail, "bva", decision_id)


def bva_source(folder: Path, dev_fraction: float, seed: int) -> tuple[list[Pair], DevSet]:
    """Pairs from BVA decisions, split by decision into train and a legal dev set."""
    if not folder.is_dir():
        raise ConfigError(f"BVA decision folder {str(folder)!r} does not exist; check [data] dir")
    pairs = [p for f in sorted(folder.glob("*.txt"))
             if (p := bva_pair(f.stem, f.read_text(encoding="utf-8", errors="replace"))) is not None]
    train_ids, dev_ids = split_ids((p.group for p in pairs), dev_fraction, seed)
    dev = [p for p in pairs if p.group in dev_ids]
    devset = DevSet("bva-dev", {p.group: p.anchor for p in dev}, {p.group: p.positive for p in dev},
                    {p.group: {p.group} for p in dev}, "legal")
    return [p for p in pairs if p.group in train_ids], devset


def _cap(pairs: list[Pair], limit: int, seed: int) -> list[Pair]:
    """A seeded sample of at most `limit` pairs (all when limit is 0)."""
    if limit <= 0 or len(pairs) <= limit:
        return list(pairs)
    return random.Random(seed).sample(pairs, limit)


def check_sources(sources: Iterable[str]) -> list[str]:
    """The configured sources, or a ConfigError naming the unknown one and the valid ones."""
    sources = list(sources)
    for s in sources:
        if s not in SOURCES:
            raise ConfigError(f"unknown training source {s!r}; valid sources: {choices(SOURCES)}")
    return sources


def mine_triplets(pairs: Sequence[Pair], encode: Encode, hard_ratio: float, seed: int,
                  top_k: int = 20, pools: dict[str, Sequence[tuple[str, str]]] | None = None,
                  ) -> list[tuple[str, str, str, str]]:
    """(anchor, positive, negative, source) for a seeded `hard_ratio` share of the pairs.

    Candidates are the positives of the same source plus `pools[source]` ((id, text), e.g. the
    whole SciFact corpus). A mined negative is the most similar candidate that is neither the
    pair's own group nor a document `known` relevant to the anchor, shares no entity id with the
    anchor and scores below the positive (a candidate above it is more likely an unjudged
    positive than a negative); a pair with no such candidate among the `top_k` nearest gets a
    random admissible one (and no triplet if there is none). The other pairs get no triplet: random negatives are what the
    in-batch InfoNCE already trains on, and a triplet loss on them is mostly zero (wasted compute).
    """
    rng = random.Random(seed)
    out = []
    by_source: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_source.setdefault(p.source, []).append(i)
    for source, idx in sorted(by_source.items()):
        group = [pairs[i] for i in idx]
        pool = sorted({(p.group, p.positive) for p in group} | set((pools or {}).get(source, ())))
        if len(pool) < 2:
            continue
        pool_ids = {g: ids for g, ids in ((p.group, p.ids) for p in group)}
        hard = [rng.random() < hard_ratio for _ in group]
        mined = _mine(group, pool, pool_ids, encode, hard, top_k)
        for p, h, neg in zip(group, hard, mined):
            if not h:
                continue  # in-batch InfoNCE already gives every pair random negatives
            if neg is None:  # no admissible near neighbour: a random document of another group
                others = [c for c in pool if c[0] != p.group and c[0] not in p.known
                          and not (p.ids & pool_ids.get(c[0], frozenset()))]
                if not others:
                    continue
                neg = others[rng.randrange(len(others))]
            out.append((p.anchor, p.positive, neg[1], source))
    return out


def _mine(group: Sequence[Pair], pool: Sequence[tuple[str, str]], pool_ids: dict[str, frozenset[str]],
          encode: Encode, hard: Sequence[bool], top_k: int) -> list[tuple[str, str] | None]:
    """The nearest admissible pool entry for each pair flagged hard; None elsewhere."""
    chosen: list[tuple[str, str] | None] = [None] * len(group)
    which = [i for i, h in enumerate(hard) if h]
    if not which:
        return chosen
    anchors = encode([group[i].anchor for i in which])
    docs = encode([text for _, text in pool])
    positives = {text: k for k, (_, text) in enumerate(pool)}
    sims = anchors @ docs.T
    for row, i in enumerate(which):
        p = group[i]
        pos_score = sims[row, positives[p.positive]]
        for k in np.argsort(-sims[row])[:top_k]:
            g = pool[k][0]
            if (g == p.group or g in p.known or sims[row, k] >= pos_score
                    or (p.ids and p.ids & pool_ids.get(g, frozenset()))):
                continue
            chosen[i] = pool[k]
            break
    return chosen


def dev_triplets(dev: DevSet, encode: Encode, limit: int = 200) -> list[tuple[str, str, str]]:
    """(query, a relevant document, the most similar non-relevant document) for each dev query."""
    qids = list(dev.queries)[:limit]
    cids = list(dev.corpus)
    if not qids or len(cids) < 2:
        return []
    sims = encode([dev.queries[q] for q in qids]) @ encode([dev.corpus[c] for c in cids]).T
    out = []
    for row, q in enumerate(qids):
        rel = sorted(dev.relevant[q])
        for k in np.argsort(-sims[row]):
            if cids[k] not in dev.relevant[q]:
                out.append((dev.queries[q], dev.corpus[rel[0]], dev.corpus[cids[k]]))
                break
    return out


# Where each source lives, relative to the data directory (train splits only).
PATHS = {
    "bc5cdr": "bc5cdr/CDR_TrainingSet.PubTator.txt",
    "bc5cdr-dev": "bc5cdr/CDR_DevelopmentSet.PubTator.txt",
    "ncbi": "ncbi-disease/NCBItrainset_corpus.txt",
    "scifact": "scifact",
    "nfcorpus": "nfcorpus",
    "medquad": "medquad/medquad_qa.jsonl.gz",
    "bva": "bva-decisions/summarization/single_issue_PTSD_sample",
}


@dataclass
class TrainingData:
    """Capped training pairs per source, entity-aware pairs and the dev sets."""

    pairs: list[Pair]
    entity: list[Pair]
    dev: list[DevSet]
    pools: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # source -> extra (id, text) to mine from


def collect(data_dir: Path, sources: Sequence[str], max_pairs: int, dev_fraction: float, max_queries: int,
            max_corpus: int, seed: int, label_map: dict[str, str] | None = None,
            caps: dict[str, int] | None = None) -> TrainingData:
    """Read every configured source; pairs are capped per source (`caps[source]`, else `max_pairs`),
    dev sets capped as configured."""
    caps = caps or {}

    def cap(pairs: list[Pair], limit: int, seed: int) -> list[Pair]:
        return _cap(pairs, caps.get(pairs[0].source, limit) if pairs else limit, seed)

    pairs: list[Pair] = []
    entity: list[Pair] = []
    dev: list[DevSet] = []
    pools: dict[str, list[tuple[str, str]]] = {}
    sources = check_sources(sources)
    path = {k: data_dir / v for k, v in PATHS.items()}
    if "bc5cdr" in sources or "ncbi" in sources or "entity" in sources:
        docs = {s: docs_of("pubtator", path[s], label_map) for s in ("bc5cdr", "ncbi") if s in sources or "entity" in sources}
        for s in ("bc5cdr", "ncbi"):
            if s in sources:
                pairs += cap(title_pairs(docs[s], s), max_pairs, seed)
        if "entity" in sources:
            entity = cap(entity_pairs(docs["bc5cdr"] + docs["ncbi"]), max_pairs, seed)
        dev.append(pubtator_dev(path["bc5cdr-dev"], "bc5cdr-dev", max_queries, max_corpus, seed))
    for s, dev_split in (("scifact", None), ("nfcorpus", "dev")):
        if s in sources:
            p, d, corpus = beir_source(path[s], "train", s, dev_fraction, seed, max_queries, max_corpus, dev_split)
            pairs += cap(p, max_pairs, seed)
            dev.append(d)
            pools[s] = sorted(corpus.items())  # mining candidates: the whole corpus, not only training positives
    if "medquad" in sources:
        p, d = medquad_source(path["medquad"], dev_fraction, seed, max_queries, max_corpus)
        pairs += cap(p, max_pairs, seed)
        dev.append(d)
    if "bva" in sources:
        p, d = bva_source(path["bva"], dev_fraction, seed)
        pairs += cap(p, max_pairs, seed)
        dev.append(d)
    # MedQuAD repeats templated questions ("How to diagnose X ?") across source pages, so a
    # question of the dev fold can recur in the train fold: no dev query is ever a training anchor.
    held_out = {q for d in dev for q in d.queries.values()}
    return TrainingData([p for p in pairs if p.anchor not in held_out],
                        [p for p in entity if p.anchor not in held_out], dev, pools)
