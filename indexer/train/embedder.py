"""Fine-tune MiniLM into the 256-d medical-legal embedder with sentence-transformers' trainer.

Model: Transformer -> mean Pooling -> Dropout (training only) -> Dense projection -> Normalize,
saved in sentence-transformers format. Objectives: in-batch InfoNCE (MNRL, cached below the
batch size) on the pairs of every source, and a triplet loss with cosine distance on
hard-negative triplets (pairs with mined negatives plus the entity-aware pairs), which also
train InfoNCE with their mined negatives among the in-batch ones. Hard negatives are mined with the
current model before training and again before each epoch listed in `remine_epochs`; each
stage between two minings is one trainer run, and the best dev checkpoint of the whole run
is kept.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from indexer.errors import ConfigError, choices
from indexer.models import resolve_device, resolve_model_dir
from indexer.settings import Settings, TrainEmbedderSettings
from indexer.train.pairs import DevSet, TrainingData, check_sources, collect, mine_triplets

LOSSES = ("mnrl", "triplet", "mnrl+triplet")


@dataclass
class TrainResult:
    """What a training run produced."""

    model_dir: Path
    dev_metrics: dict[str, float]  # final evaluator scores of the saved model
    seconds: float
    device: str
    steps: int
    pairs: dict[str, int]  # training pairs per source


def build_model(base_dir: Path, ts: TrainEmbedderSettings, device: str, pca_texts: Sequence[str] = ()):
    """Base encoder + mean pooling + dropout + Dense(dim, identity) + Normalize.

    The projection starts from the top principal directions of the base model's pooled
    vectors on `pca_texts` (random orthogonal when too few), so the tuned model starts
    close to the base model's geometry instead of from a random rotation.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Dropout, Normalize, Pooling, Transformer

    encoder = Transformer(str(base_dir), max_seq_length=ts.max_length)
    hidden = encoder.get_embedding_dimension()
    pooling = Pooling(hidden, pooling_mode="mean")
    weight = torch.empty(ts.dimension, hidden)
    torch.nn.init.orthogonal_(weight)
    if len(pca_texts) >= ts.dimension and ts.dimension <= hidden:
        pooled = SentenceTransformer(modules=[encoder, pooling], device=device).encode(
            list(pca_texts), batch_size=32, convert_to_numpy=True, show_progress_bar=True)
        _, _, vt = np.linalg.svd(pooled.astype(np.float64), full_matrices=False)
        weight = torch.tensor(vt[:ts.dimension], dtype=torch.float32)
    dense = Dense(hidden, ts.dimension, activation_function=torch.nn.Identity(), init_weight=weight,
                  init_bias=torch.zeros(ts.dimension))
    modules = [encoder, pooling, Dropout(ts.projection_dropout), dense, Normalize()]
    return SentenceTransformer(modules=modules, device=device)


def make_evaluator(dev_sets: Sequence[DevSet], batch_size: int = 32):
    """One InformationRetrievalEvaluator per dev set; the primary score is the mean NDCG@10 of the
    medical dev sets (of all, when none is medical).

    The legal dev set (18 BVA decisions) moves by +-0.05 between evaluations and would otherwise
    choose the checkpoint; its floor (lose at most 0.01) is checked in the report.
    """
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.base.evaluation.sequential import SequentialEvaluator

    evaluators = [InformationRetrievalEvaluator(d.queries, d.corpus, d.relevant, name=d.name, batch_size=batch_size,
                                                score_functions=None, write_csv=False, show_progress_bar=False)
                  for d in dev_sets]
    primary = [i for i, d in enumerate(dev_sets) if d.domain == "medical"] or list(range(len(dev_sets)))
    return SequentialEvaluator(evaluators, main_score_function=lambda scores: float(np.mean([scores[i] for i in primary])))


def encoder_of(model, batch_size: int = 32):
    """texts -> unit-norm float32 vectors with the model in eval mode."""
    def encode(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                            show_progress_bar=len(texts) > 2000)
    return encode


def stages(epochs: int, remine_epochs: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) epoch ranges between re-minings: epochs=7, remine [3, 6] -> [(0,3), (3,6), (6,7)]."""
    cuts = sorted({e for e in remine_epochs if 0 < e < epochs})
    bounds = [0, *cuts, epochs]
    return list(zip(bounds[:-1], bounds[1:]))


def datasets_for(data: TrainingData, triplets: list[tuple[str, str, str, str]], loss: str,
                 batching: str = "mixed") -> dict:
    """The trainer's named datasets: 'pairs' (or 'pairs-<source>' when batching by source) for MNRL,
    'triplets' for the triplet loss.

    The trainer draws each batch from one named dataset, so with by-source batching the in-batch
    negatives of a SciFact claim are other SciFact abstracts, not MedQuAD answers it tells apart
    by style alone.
    """
    from datasets import Dataset

    out = {}
    if "mnrl" in loss:
        groups = {"pairs": data.pairs} if batching == "mixed" else {
            f"pairs-{s}": [p for p in data.pairs if p.source == s] for s in dict.fromkeys(p.source for p in data.pairs)}
        for name, pairs in groups.items():
            if pairs:
                out[name] = Dataset.from_dict({"anchor": [p.anchor for p in pairs],
                                               "positive": [p.positive for p in pairs]})
    if "triplet" in loss and triplets:
        out["triplets"] = Dataset.from_dict({"anchor": [t[0] for t in triplets], "positive": [t[1] for t in triplets],
                                             "negative": [t[2] for t in triplets]})
    return out


def losses_for(model, ts: TrainEmbedderSettings, names: Sequence[str]) -> dict:
    """In-batch InfoNCE (MNRL; the cached variant when mini_batch_size < batch_size) for pairs,
    TripletLoss with cosine distance for triplets.

    On unit vectors cosine distance lies in [0, 2], and the margin is a required gap between
    sim(anchor, positive) and sim(anchor, negative). The base model's mean gap on mined dev
    triplets is 0.12-0.27 for the medical pair types, so a margin of 0.1 leaves most true
    triplets satisfied (no gradient) and acts on the violated ones; 0.3 was active on nearly
    every triplet and, with lr 1e-4, lost NDCG@10 on SciFact and BC5CDR dev. The reference's
    2.0 on unnormalised outputs has no meaning here (2.0 is the largest possible distance).
    """
    from sentence_transformers.sentence_transformer.losses import (CachedMultipleNegativesRankingLoss,
                                                                   MultipleNegativesRankingLoss, TripletLoss,
                                                                   TripletDistanceMetric)

    out = {}
    pair_sets = [n for n in names if n == "pairs" or n.startswith("pairs-")]
    cached = ts.mini_batch_size < ts.batch_size
    if cached:  # gradient cache: a large batch in small mini-batches
        mnrl = CachedMultipleNegativesRankingLoss(model, mini_batch_size=ts.mini_batch_size)
    else:  # the same loss without the cache's extra forward pass
        mnrl = MultipleNegativesRankingLoss(model)
    out |= {n: mnrl for n in pair_sets}  # one loss module shared by every pair dataset
    if "triplets" in names:
        triplet = TripletLoss(model, distance_metric=TripletDistanceMetric.COSINE, triplet_margin=ts.triplet_margin)
        in_batch = ts.hard_negatives_in_batch and "mnrl" in ts.loss and not cached
        out["triplets"] = InfoNCEAndTriplet(model, mnrl, triplet) if in_batch else triplet
    return out


class InfoNCEAndTriplet(torch.nn.Module):
    """MNRL over (anchor, positive, mined negative) rows plus the triplet loss, from one forward pass.

    InfoNCE then ranks each anchor's positive above every positive and every mined negative of
    the batch (the mined ones are the hard part); the margin term keeps the triplet objective.
    """

    def __init__(self, model, mnrl, triplet):
        from sentence_transformers.base.losses.merged_forward import embed_columns

        super().__init__()
        self.model, self.mnrl, self.triplet, self._embed = model, mnrl, triplet, embed_columns

    def forward(self, sentence_features, labels):
        embeddings = self._embed(self.model, sentence_features)
        return (self.mnrl.compute_loss_from_embeddings(embeddings, labels)
                + self.triplet.compute_loss_from_embeddings(embeddings, labels))

    def get_config_dict(self) -> dict:
        return {"mnrl": self.mnrl.get_config_dict(), "triplet": self.triplet.get_config_dict()}


def training_args(ts: TrainEmbedderSettings, out: Path, epochs: int, device: str, has_eval: bool):
    """SentenceTransformerTrainingArguments from the [train_embedder] settings."""
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers, MultiDatasetBatchSamplers

    return SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=epochs, max_steps=ts.max_steps if ts.max_steps > 0 else -1,
        per_device_train_batch_size=ts.batch_size, per_device_eval_batch_size=ts.batch_size,
        learning_rate=ts.learning_rate, weight_decay=ts.weight_decay,
        warmup_steps=ts.warmup_ratio,  # a float below 1 is a share of the steps
        seed=ts.seed, data_seed=ts.seed, bf16=use_bf16(ts.mixed_precision, device),
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # a repeated text in a batch would be a false in-batch negative
        multi_dataset_batch_sampler=MultiDatasetBatchSamplers.PROPORTIONAL,
        eval_strategy="steps" if has_eval else "no", eval_steps=ts.eval_steps, save_strategy="steps" if has_eval else "no",
        save_steps=ts.eval_steps, save_total_limit=2, load_best_model_at_end=has_eval,
        metric_for_best_model="eval_sequential_score" if has_eval else None, greater_is_better=True,
        logging_steps=max(1, min(ts.eval_steps, 10)), report_to=[], use_cpu=device == "cpu",
        dataloader_num_workers=0, disable_tqdm=False)


PRECISIONS = ("auto", "bf16", "no")
BATCHINGS = ("mixed", "by-source")


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 natively: a bf16-capable GPU, or a CPU with AVX512-BF16 or AMX."""

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(mode: str, device: str) -> bool:
    """bf16 autocast for training: forced, off, or (auto) where the hardware does it natively.

    On a 2-core AVX512-BF16 CPU it doubled training throughput (11 vs 5 pairs/s, MiniLM, 128 tokens);
    where bf16 is emulated it would be slower, so auto leaves it off there. Weights stay fp32 and
    the saved model is fp32.
    """
    return mode == "bf16" or (mode == "auto" and native_bf16(device))


def check_settings(ts: TrainEmbedderSettings) -> None:
    """Refuse an unknown loss, source or precision before any data is read."""
    if ts.loss not in LOSSES:
        raise ConfigError(f"train_embedder.loss {ts.loss!r} is not one of {choices(LOSSES)}")
    if ts.batching not in BATCHINGS:
        raise ConfigError(f"train_embedder.batching {ts.batching!r} is not one of {choices(BATCHINGS)}")
    if ts.mixed_precision not in PRECISIONS:
        raise ConfigError(f"train_embedder.mixed_precision {ts.mixed_precision!r} is not one of {choices(PRECISIONS)}")
    check_sources(ts.sources)
    if not 0 < ts.dimension:
        raise ConfigError(f"train_embedder.dimension must be positive, got {ts.dimension}")


def fit(model, data: TrainingData, ts: TrainEmbedderSettings, work: Path, device: str, evaluator=None) -> dict:
    """Train through every stage, re-mining hard negatives at each; returns the trainer history and best score."""
    from sentence_transformers import SentenceTransformerTrainer
    from transformers import EarlyStoppingCallback

    check_settings(ts)
    history, best, steps = [], None, 0
    for k, (start, end) in enumerate(stages(ts.epochs, ts.remine_epochs)):
        triplets = []
        if "triplet" in ts.loss:
            model.eval()
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16(ts.mixed_precision, device)):
                triplets = mine_triplets(data.pairs + data.entity, encoder_of(model), ts.hard_negative_ratio,
                                         ts.seed + start, pools=data.pools)
        sets = datasets_for(data, triplets, ts.loss, ts.batching)
        trainer = SentenceTransformerTrainer(
            model=model, args=training_args(ts, work / f"stage{k}", end - start, device, evaluator is not None),
            train_dataset=sets, loss=losses_for(model, ts, list(sets)), evaluator=evaluator,
            callbacks=[EarlyStoppingCallback(early_stopping_patience=ts.patience)] if evaluator is not None else [])
        trainer.train()
        history += [{**h, "stage": k, "total_step": steps + h.get("step", 0)} for h in trainer.state.log_history]
        steps += trainer.state.global_step
        score = trainer.state.best_metric
        stopped = trainer.state.global_step < trainer.state.max_steps
        if best is not None and score is not None and score <= best:
            model = _reload(model, work / "best")  # a stage without a better dev score: back to the best, stop
            break
        if score is not None:
            best = score
            if k + 1 < len(stages(ts.epochs, ts.remine_epochs)):
                save(model, work / "best")
        if stopped or (ts.max_steps > 0 and steps >= ts.max_steps):
            break
    return {"history": history, "best_score": best, "steps": steps, "model": model}


def _reload(model, path: Path):
    """The model saved at `path`, on the same device."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device=str(model.device))


def best_metrics(history: list[dict], best: float | None) -> dict[str, float]:
    """The dev metrics logged at the evaluation that scored best (the checkpoint that is kept)."""
    evals = [h for h in history if "eval_sequential_score" in h]
    if not evals:
        return {}
    row = next((h for h in evals if best is not None and abs(h["eval_sequential_score"] - best) < 1e-12), evals[-1])
    return {k.removeprefix("eval_"): float(v) for k, v in row.items() if k.startswith("eval_") and "_cosine_" in k
            or k == "eval_sequential_score"}


def train_embedder(settings: Settings) -> TrainResult:
    """Build the data, train, save to train_embedder.output_dir and return its dev metrics."""

    ts = settings.train_embedder
    check_settings(ts)
    device = resolve_device(ts.device)
    torch.manual_seed(ts.seed)
    data = collect(settings.data.dir, ts.sources, ts.max_pairs_per_source, ts.dev_fraction, ts.dev_max_queries,
                   ts.dev_max_corpus, ts.seed, settings.train_ner.label_map, ts.pairs_per_source)
    base = resolve_model_dir(ts.base_model)
    started = time.perf_counter()
    pca = [p.positive for p in data.pairs[:: max(1, len(data.pairs) // (ts.dimension + 128))]]
    model = build_model(base, ts, device, pca)
    evaluator = make_evaluator(data.dev) if data.dev else None
    work = ts.output_dir.parent / (ts.output_dir.name + ".work")
    run = fit(model, data, ts, work, device, evaluator)
    model = run["model"]
    model.eval()
    metrics = best_metrics(run["history"], run["best_score"])
    if not metrics and evaluator is not None:  # fewer steps than eval_steps: evaluate the saved model once
        metrics = evaluator(model)
    save(model, ts.output_dir)
    shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    counts: dict[str, int] = {}
    for p in data.pairs + data.entity:
        counts[p.source] = counts.get(p.source, 0) + 1
    result = TrainResult(ts.output_dir, {k: float(v) for k, v in metrics.items()}, seconds, device, run["steps"], counts)
    (ts.output_dir / "training.json").write_text(json.dumps({**asdict(result), "model_dir": str(result.model_dir),
                                                             "settings": _jsonable(asdict(ts)),
                                                             "history": run["history"]}, indent=2, default=str))
    return result


def save(model, out: Path) -> None:
    """Replace `out` with `model.save` (sentence-transformers format; also a CrossEncoder's). An embedder's
    Dropout module is saved too; it is inert at inference."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save(str(out))


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value
