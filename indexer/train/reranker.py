"""Train the cross-encoder reranker from MiniLM with sentence-transformers' CrossEncoderTrainer.

Data: the embedder's (query, relevant document) pairs of every source (indexer/train/pairs.py,
train splits and folds only), each labelled 1, plus per pair the base embedder's nearest
admissible non-relevant document (mined as for the embedder's triplets) and `random_negatives`
random ones of the same source, labelled 0. Loss: binary cross-entropy on the one logit.
The model starts from the packaged MiniLM's encoder with a fresh, seeded classification head.
Training stops at `time_limit_min`; after a linear warmup the learning rate stays constant, so a
run stopped by the clock is as well trained as its steps allow (no schedule left half-way).
The card's dev metric is the pairwise accuracy on each dev set's hardest triplets: how often
the relevant document scores above the most similar non-relevant one (base embedder 0 by
construction, since that negative is the one it ranks highest).
"""
from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from transformers import TrainerCallback

from indexer.errors import ConfigError, choices
from indexer.models import resolve_device, resolve_model_dir
from indexer.settings import Settings, TrainRerankerSettings
from indexer.train.embedder import PRECISIONS, save, use_bf16  # save: replace the dir, model.save (ST and CrossEncoder)
from indexer.train.pairs import DevSet, Encode, Pair, TrainingData, check_sources, collect, dev_triplets, mine_triplets


@dataclass
class RerankerResult:
    """What a reranker training run produced."""

    model_dir: Path
    dev_metrics: dict[str, float]  # pairwise accuracy per dev set
    seconds: float
    device: str
    steps: int
    rows: dict[str, int]  # training rows (positives + negatives) per source


def check_settings(ts: TrainRerankerSettings) -> None:
    """Refuse an unknown source or precision and impossible sizes before any data is read."""
    check_sources(ts.sources)
    if ts.mixed_precision not in PRECISIONS:
        raise ConfigError(f"train_reranker.mixed_precision {ts.mixed_precision!r} is not one of {choices(PRECISIONS)}")
    for name in ("max_length", "batch_size", "epochs"):
        if getattr(ts, name) <= 0:
            raise ConfigError(f"train_reranker.{name} must be positive, got {getattr(ts, name)}")
    if ts.random_negatives < 0:
        raise ConfigError(f"train_reranker.random_negatives must be 0 or more, got {ts.random_negatives}")


def labelled_rows(pairs: Sequence[Pair], mined: Sequence[tuple[str, str, str, str]], random_negatives: int,
                  seed: int, pools: dict[str, Sequence[tuple[str, str]]] | None = None,
                  ) -> list[tuple[str, str, float, str]]:
    """(query, document, label, source) rows: every pair as a positive, each mined negative, and
    `random_negatives` random documents per pair drawn from its source's positives and pool that are
    neither its own group nor known relevant; shuffled with `seed`."""
    rng = random.Random(seed)
    rows = [(p.anchor, p.positive, 1.0, p.source) for p in pairs]
    rows += [(a, neg, 0.0, source) for a, _, neg, source in mined]
    if random_negatives:
        by_source: dict[str, list[tuple[str, str]]] = {}
        for p in pairs:
            by_source.setdefault(p.source, []).append((p.group, p.positive))
        for source, extra in (pools or {}).items():
            by_source.setdefault(source, []).extend(extra)
        for p in pairs:
            pool = by_source[p.source]
            for _ in range(random_negatives):
                for _attempt in range(10):  # a few draws: the pool is large next to one pair's known set
                    group, text = pool[rng.randrange(len(pool))]
                    if group != p.group and group not in p.known and text != p.positive:
                        rows.append((p.anchor, text, 0.0, p.source))
                        break
    rng.shuffle(rows)
    return rows


def base_encoder(device: str, bf16: bool, max_length: int = 128) -> Encode:
    """The packaged MiniLM as a mining encoder (texts -> unit vectors), under bf16 autocast when asked."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(resolve_model_dir("packaged")), device=device)
    model.max_seq_length = max_length

    def encode(texts: Sequence[str]) -> np.ndarray:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            out = model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                               show_progress_bar=len(texts) > 500)
        return out.astype(np.float32)
    return encode


def build_model(base_dir: Path, ts: TrainRerankerSettings, device: str):
    """A CrossEncoder with one output logit on the base encoder (the head is new, seeded by ts.seed)."""
    from sentence_transformers.cross_encoder import CrossEncoder

    torch.manual_seed(ts.seed)
    return CrossEncoder(str(base_dir), num_labels=1, max_length=ts.max_length, device=device)


class TimeLimit(TrainerCallback):
    """Stops training once `minutes` have passed since it was made (0 = never)."""

    def __init__(self, minutes: float):
        self.minutes, self.started, self.stopped_early = minutes, time.perf_counter(), False

    def on_step_end(self, args, state, control, **kwargs):
        if self.minutes > 0 and time.perf_counter() - self.started > self.minutes * 60:
            control.should_training_stop = True
            self.stopped_early = True
        return control


def fit(model, rows: list[tuple[str, str, float, str]], ts: TrainRerankerSettings, work: Path, device: str) -> dict:
    """One trainer run with BCE on the labelled rows; returns the trainer history, steps and whether time ran out."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    data = Dataset.from_dict({"query": [r[0] for r in rows], "document": [r[1] for r in rows],
                              "label": [r[2] for r in rows]})
    args = CrossEncoderTrainingArguments(
        output_dir=str(work), num_train_epochs=ts.epochs, max_steps=ts.max_steps if ts.max_steps > 0 else -1,
        per_device_train_batch_size=ts.batch_size, learning_rate=ts.learning_rate, weight_decay=ts.weight_decay,
        warmup_steps=ts.warmup_steps, lr_scheduler_type="constant_with_warmup", seed=ts.seed, data_seed=ts.seed, bf16=use_bf16(ts.mixed_precision, device),
        save_strategy="no", eval_strategy="no", logging_steps=10, report_to=[], use_cpu=device == "cpu",
        dataloader_num_workers=0, disable_tqdm=False)
    stop = TimeLimit(ts.time_limit_min)
    trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=data, loss=BinaryCrossEntropyLoss(model),
                                  callbacks=[stop])
    trainer.train()
    return {"history": trainer.state.log_history, "steps": trainer.state.global_step,
            "planned_steps": trainer.state.max_steps, "stopped_by_time": stop.stopped_early}


def pairwise_accuracy(model, triplets: Sequence[tuple[str, str, str]], batch_size: int = 32) -> float:
    """Share of (query, relevant, negative) triplets whose relevant document the model scores higher."""
    if not triplets:
        return float("nan")
    pos = model.predict([(q, p) for q, p, _ in triplets], batch_size=batch_size, show_progress_bar=False)
    neg = model.predict([(q, n) for q, _, n in triplets], batch_size=batch_size, show_progress_bar=False)
    return float(np.mean(np.asarray(pos) > np.asarray(neg)))


def small_dev(dev: DevSet, queries: int, corpus: int, seed: int) -> DevSet:
    """The first `queries` queries of a dev set against their relevant documents plus seeded others,
    `corpus` documents in all (mining the whole dev corpus costs minutes on a shared CPU)."""
    qids = list(dev.queries)[:queries]
    keep = set().union(*(dev.relevant[q] & dev.corpus.keys() for q in qids)) if qids else set()
    others = sorted(dev.corpus.keys() - keep)
    random.Random(seed).shuffle(others)
    keep |= set(others[:max(0, corpus - len(keep))])
    return DevSet(dev.name, {q: dev.queries[q] for q in qids}, {d: dev.corpus[d] for d in sorted(keep)},
                  {q: dev.relevant[q] for q in qids}, dev.domain)


def dev_metrics(model, data: TrainingData, encode: Encode, queries: int, corpus: int, seed: int) -> dict[str, float]:
    """Pairwise accuracy on each dev set's hardest triplets for the base embedder."""
    if queries <= 0:
        return {}
    model.model.eval()
    return {f"{d.name}_pairwise_accuracy": pairwise_accuracy(model, dev_triplets(small_dev(d, queries, corpus, seed),
                                                                                  encode, queries))
            for d in data.dev}


def sample(items: Sequence, limit: int, seed: int) -> list:
    """A seeded sample of at most `limit` items in their order (all when limit is 0)."""
    if limit <= 0 or len(items) <= limit:
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [x for i, x in enumerate(items) if i in keep]


def train_reranker(settings: Settings) -> RerankerResult:
    """Collect the pairs, mine negatives with the base embedder, train, save to train_reranker.output_dir."""
    ts = settings.train_reranker
    check_settings(ts)
    device = resolve_device(ts.device)
    bf16 = use_bf16(ts.mixed_precision, device)
    started = time.perf_counter()
    fold = settings.train_embedder  # the same folds the embedder and `searchd eval --fold` use
    data = collect(settings.data.dir, ts.sources, ts.max_pairs_per_source, fold.dev_fraction, fold.dev_max_queries,
                   fold.dev_max_corpus, fold.seed, settings.train_ner.label_map, ts.pairs_per_source)
    pairs = data.pairs + data.entity
    encode = base_encoder(device, bf16)
    pools = {k: sample(v, ts.mining_pool, ts.seed) for k, v in data.pools.items()}
    mined = mine_triplets(pairs, encode, 1.0, ts.seed, pools=pools) if ts.hard_negatives else []
    rows = labelled_rows(pairs, mined, ts.random_negatives, ts.seed, pools)
    model = build_model(resolve_model_dir(ts.base_model), ts, device)
    work = ts.output_dir.parent / (ts.output_dir.name + ".work")
    run = fit(model, rows, ts, work, device)
    save(model, ts.output_dir)  # before the dev measurement, so that a failure there keeps the model
    metrics = dev_metrics(model, data, encode, ts.dev_queries, ts.dev_corpus, ts.seed)
    shutil.rmtree(work, ignore_errors=True)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[3]] = counts.get(r[3], 0) + 1
    result = RerankerResult(ts.output_dir, metrics, time.perf_counter() - started, device, run["steps"], counts)
    record = {**asdict(result), "model_dir": str(result.model_dir), "planned_steps": run["planned_steps"],
              "stopped_by_time": run["stopped_by_time"], "bf16": bf16, "mined_negatives": len(mined),
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(ts).items()},
              "history": run["history"]}
    (ts.output_dir / "training.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return result
