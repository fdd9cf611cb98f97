"""`indexer train-ner` and `indexer eval-ner`: train the BERT(+BiLSTM)+CRF tagger, score it with seqeval.

Training examples are the sentences of the training documents cut into words, with BIO tags from
the gold mentions; a sentence longer than the sub-token budget is cut into pieces. Evaluation runs
the full tagging path (sentences, windows, character spans) and maps predicted and gold spans back
onto the same words, so the scores are those of the tagger that `indexer tag` uses.
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch

from indexer.documents import Document, Mention
from indexer.errors import ConfigError
from indexer.importing import CorpusReader
from indexer.legal_filter import is_legal_document
from indexer.ner import (BertCrfTagger, CrfTaggerModel, ModelConfig, Tagger, encode_words, sentence_words,
                         subtoken_counts, tags_from_mentions, windows)
from indexer.negation import NegationDetector
from indexer.normalize import Normalizer
from indexer.readers import ReadOptions
from indexer.settings import Settings

Example = tuple[list[str], list[str]]  # words, BIO tags


def load_documents(paths: Iterable[str | Path], fmt: str, label_map: dict[str, str],
                   limit: int | None = None, skip_bad: bool = False) -> list[Document]:
    """Every document of the given files or directories; a malformed record is an error unless skip_bad."""
    return list(CorpusReader(fmt, list(paths), ReadOptions(label_map=label_map), limit, skip_bad))


def select_documents(docs: Sequence[Document], where: Sequence[str]) -> list[Document]:
    """Documents whose meta matches every `KEY=VALUE` condition."""
    conditions = []
    for item in where:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--where {item!r} is not KEY=VALUE")
        conditions.append((name, value))
    return [d for d in docs if all(str(d.meta.get(k)) == v for k, v in conditions)]


def data_paths(settings: Settings, names: Sequence[str]) -> list[Path]:
    """Training/dev files relative to the data directory (absolute paths as given)."""
    out = []
    for name in names:
        path = Path(name) if Path(name).is_absolute() else settings.data.dir / name
        if not path.exists():
            raise ConfigError(f"training data {str(path)!r} does not exist (data.dir is {str(settings.data.dir)!r})")
        out.append(path)
    return out


def tag_set(docs: Sequence[Document]) -> tuple[str, ...]:
    """'O' then B-/I- tags of every label found in the documents, sorted."""
    labels = sorted({m.label for d in docs for m in d.mentions})
    if not labels:
        raise ConfigError("the training documents have no gold mentions, so there are no labels to learn")
    return ("O",) + tuple(f"{p}-{label}" for label in labels for p in ("B", "I"))


def examples(docs: Sequence[Document], tokenizer, budget: int) -> list[Example]:
    """Word/tag sequences of all sentences, cut to at most `budget` sub-tokens."""
    out = []
    for doc in docs:
        for words in sentence_words(doc.text):
            strings = [doc.text[s:e] for s, e in words]
            tags = tags_from_mentions(words, doc.mentions)
            for a, b in windows(subtoken_counts(tokenizer, strings), 10**9, 10**9, budget):
                out.append((strings[a:b], tags[a:b]))
    return out


def batches(data: Sequence[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Batches of similar length (less padding), in shuffled order."""
    order = sorted(range(len(data)), key=lambda i: (len(data[i][0]), rng.random()))
    groups = [[data[i] for i in order[k:k + size]] for k in range(0, len(order), size)]
    rng.shuffle(groups)
    return groups


def negation_scores(docs: Sequence[Document], predicted: Sequence[Sequence[Mention]]) -> dict:
    """Negation accuracy over mentions found with the gold span and label, with a gold -> predicted confusion."""
    confusion: Counter = Counter()
    for doc, found in zip(docs, predicted):
        gold = {(m.start, m.end, m.label): m.negation for m in doc.mentions}
        for m in found:
            if (m.start, m.end, m.label) in gold:
                confusion[f"{gold[(m.start, m.end, m.label)]}->{m.negation}"] += 1
    matched = sum(confusion.values())
    correct = sum(n for pair, n in confusion.items() if pair.split("->")[0] == pair.split("->")[1])
    return {"matched": matched, "correct": correct, "accuracy": correct / matched if matched else 0.0,
            "confusion": dict(sorted(confusion.items()))}


def score(docs: Sequence[Document], predicted: Sequence[Sequence[Mention]]) -> dict:
    """seqeval strict IOB2 entity scores per label, micro (all labels together), macro and weighted, plus
    negation accuracy; predicted[i] are the mentions found in docs[i]."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    gold, pred = [], []
    for doc, found in zip(docs, predicted):
        for words in sentence_words(doc.text):
            gold.append(tags_from_mentions(words, doc.mentions))
            pred.append(tags_from_mentions(words, found))
    report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0) \
        if any(t != "O" for seq in gold + pred for t in seq) else {}
    clean = {name: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                    "f1": float(v["f1-score"]), "support": int(v["support"])} for name, v in report.items()}
    return {"labels": {k: v for k, v in clean.items() if not k.endswith(" avg")},
            "micro": clean.get("micro avg"), "macro": clean.get("macro avg"), "weighted": clean.get("weighted avg"),
            "negation": negation_scores(docs, predicted), "documents": len(docs),
            "tokens": sum(len(g) for g in gold)}


def parse_thresholds(spec: str) -> list[float]:
    """"0.5,0.7,0.9" -> [0.5, 0.7, 0.9]; each in [0, 1]."""
    try:
        values = [float(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"confidence thresholds {spec!r}: give numbers between 0 and 1, e.g. 0.5,0.7,0.9") from None
    if not values or any(not 0 <= v <= 1 for v in values):
        raise ConfigError(f"confidence thresholds {spec!r}: give numbers between 0 and 1, e.g. 0.5,0.7,0.9")
    return values


def confident(predicted: Sequence[Sequence[Mention]], threshold: float) -> list[list[Mention]]:
    """The mentions whose confidence reaches the threshold (a mention without one is kept)."""
    return [[m for m in ms if m.confidence is None or m.confidence >= threshold] for ms in predicted]


def sweep(docs: Sequence[Document], predicted: Sequence[Sequence[Mention]], thresholds: Sequence[float],
          by: str | None = None) -> dict:
    """`score` at each confidence threshold, from one tagging pass; with `by`, per value of that meta field too."""
    groups: dict[str, list[int]] = {"all": list(range(len(docs)))}
    if by:
        for i, doc in enumerate(docs):
            groups.setdefault(str(doc.meta.get(by)), []).append(i)
    out = {}
    for threshold in thresholds:
        kept = confident(predicted, threshold)
        out[f"{threshold:g}"] = {name: score([docs[i] for i in idx], [kept[i] for i in idx])
                                 for name, idx in groups.items()}
    return out


def format_sweep(table: dict) -> list[str]:
    """One row per threshold and group: P / R / F1 of each label and of all labels together (micro)."""
    lines = [f"{'threshold':<10}{'group':<14}{'label':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for threshold, groups in table.items():
        for name, metrics in groups.items():
            for label, v in list(metrics["labels"].items()) + [("micro", metrics["micro"])]:
                if v:
                    lines.append(f"{threshold:<10}{name[:13]:<14}{label:<10}{v['precision']:>10.4f}"
                                 f"{v['recall']:>10.4f}{v['f1']:>10.4f}{v['support']:>10}")
    return lines


def evaluate(tagger: Tagger, docs: Sequence[Document], progress: bool = False, by: str | None = None,
             thresholds: Sequence[float] = ()) -> dict:
    """`score` of the tagger's mentions on the documents, with documents/s and tokens/s; with `by`, also
    the scores of each value of that meta field (e.g. source) under metrics["by"]; with thresholds, the
    scores at each confidence threshold under metrics["sweep"] (and every mention under "predicted")."""
    from tqdm import tqdm

    predicted: list[list[Mention]] = []
    batch = 32
    t0 = time.perf_counter()
    for k in tqdm(range(0, len(docs), batch), desc="eval-ner", unit="batch", disable=not progress,
                  dynamic_ncols=True):
        part = docs[k:k + batch]
        predicted.extend(tagger.tag([d.text for d in part], legal=[is_legal_document(d.meta) for d in part]))
    seconds = time.perf_counter() - t0
    metrics = score(docs, predicted)
    metrics.update(seconds=round(seconds, 2), docs_per_s=round(len(docs) / max(seconds, 1e-9), 2),
                   tokens_per_s=round(metrics["tokens"] / max(seconds, 1e-9), 1))
    if by:
        groups: dict[str, list[int]] = {}
        for i, doc in enumerate(docs):
            groups.setdefault(str(doc.meta.get(by)), []).append(i)
        metrics["by"] = {value: score([docs[i] for i in idx], [predicted[i] for i in idx])
                         for value, idx in sorted(groups.items())}
    if thresholds:
        metrics["sweep"] = sweep(docs, predicted, thresholds, by)
        metrics["predicted"] = {doc.id: [dataclasses.asdict(m) for m in ms] for doc, ms in zip(docs, predicted)}
    return metrics


def format_scores(metrics: dict, title: str = "label") -> list[str]:
    """Rows of per-label and averaged scores, then the negation accuracy."""
    lines = [f"{title:<24}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    rows = list(metrics["labels"].items()) + [(f"{k} avg", metrics[k]) for k in ("micro", "macro", "weighted")]
    for name, v in rows:
        if v:
            lines.append(f"{name:<24}{v['precision']:>10.4f}{v['recall']:>10.4f}{v['f1']:>10.4f}{v['support']:>10}")
    neg = metrics.get("negation")
    if neg and neg["matched"]:
        lines.append(f"negation accuracy {neg['accuracy']:.4f} over {neg['matched']} matched mentions "
                     f"({', '.join(f'{k} {v}' for k, v in neg['confusion'].items())})")
    return lines


def format_report(metrics: dict) -> str:
    """The metrics as a fixed-width table (micro avg = all labels together), one more per `by` group."""
    lines = format_scores(metrics)
    for value, part in metrics.get("by", {}).items():
        lines += [""] + format_scores(part, value[:24])
    lines.append(f"{metrics['documents']} documents, {metrics['tokens']} tokens in {metrics['seconds']:.1f} s: "
                 f"{metrics['docs_per_s']:.2f} docs/s, {metrics['tokens_per_s']:.1f} tokens/s")
    return "\n".join(lines)


def _optimizer(model: CrfTaggerModel, cfg) -> torch.optim.Optimizer:
    """AdamW with the encoder at encoder_lr and the heads at head_lr; no decay on biases and norms."""
    groups = []
    for params, lr in ((list(model.encoder.named_parameters()), cfg.encoder_lr),
                       ([(n, p) for n, p in model.named_parameters() if not n.startswith("encoder.")], cfg.head_lr)):
        decay = [p for n, p in params if p.ndim > 1]
        plain = [p for n, p in params if p.ndim <= 1]
        groups += [{"params": decay, "lr": lr, "weight_decay": cfg.weight_decay},
                   {"params": plain, "lr": lr, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups)


def load_encoder(base: Path, layers: int):
    """The base transformer, cut to its lowest `layers` layers (0 = all of them); the saved config says how many."""
    from transformers import AutoConfig, AutoModel

    total = AutoConfig.from_pretrained(base).num_hidden_layers
    if layers < 0 or layers > total:
        raise ConfigError(f"train_ner.encoder_layers = {layers}: the base model {str(base)!r} has {total} layers; "
                          f"give 1 to {total}, or 0 for all")
    return AutoModel.from_pretrained(base, num_hidden_layers=layers or total)


def build_tagger(settings: Settings, train_docs: Sequence[Document]) -> BertCrfTagger:
    """A fresh tagger: the base encoder with new heads for the labels of the training data."""
    from transformers import AutoTokenizer

    from indexer.models import resolve_device, resolve_model_dir

    cfg = settings.train_ner
    base = resolve_model_dir(cfg.base_model)
    config = ModelConfig(tags=tag_set(train_docs), use_lstm=cfg.use_lstm, use_crf=cfg.use_crf,
                         lstm_hidden=cfg.lstm_hidden, dropout=cfg.dropout, max_length=cfg.max_length,
                         class_weight_o=cfg.class_weight_o)
    model = CrfTaggerModel(load_encoder(base, cfg.encoder_layers), config)
    return BertCrfTagger(model, AutoTokenizer.from_pretrained(base), Normalizer.learn(train_docs),
                         NegationDetector.load(scope_words=settings.ner.negation_scope_words),
                         batch_size=settings.ner.batch_size, window_words=settings.ner.window_words,
                         window_stride=settings.ner.window_stride, device=resolve_device(settings.ner.device))


def train_step(tagger: BertCrfTagger, batch: list[Example], optimizer, scheduler, grad_clip: float) -> float:
    """One optimisation step on a batch; returns its loss."""
    model, tags = tagger.model, tagger.model.config.tags
    enc = encode_words(tagger.tokenizer, [w for w, _ in batch], model.config.max_length)
    gold = torch.zeros_like(enc["first"])
    for i, (_, t) in enumerate(batch):
        gold[i, : len(t)] = torch.tensor([tags.index(x) if x in tags else 0 for x in t])
    enc["tags"] = gold
    loss = model.loss({k: v.to(tagger.device) for k, v in enc.items()})
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return loss.item()


def train_ner(settings: Settings, progress: bool = True) -> tuple[Path, dict]:
    """Train on train_ner.train, stop early on dev micro F1; returns the saved model dir and its dev metrics."""
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    cfg, t_start = settings.train_ner, time.perf_counter()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    # A malformed training record is skipped with a warning rather than ending a long run.
    train_docs = load_documents(data_paths(settings, cfg.train), cfg.format, cfg.label_map, skip_bad=True)
    dev_docs = load_documents(data_paths(settings, cfg.dev), cfg.format, cfg.label_map, skip_bad=True)
    tagger = build_tagger(settings, train_docs)
    data = examples(train_docs, tagger.tokenizer, cfg.max_length - 2)
    per_epoch = math.ceil(len(data) / cfg.batch_size)
    # The schedule spans all epochs; max_steps only stops early, so a short run follows the same
    # learning-rate curve as the start of a full one (comparable ablations, smoke runs).
    scheduled = per_epoch * cfg.epochs
    total = min(scheduled, cfg.max_steps or scheduled)
    optimizer = _optimizer(tagger.model, cfg)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * scheduled), scheduled)
    best, best_metrics, history, stale, step = -1.0, {}, [], 0, 0
    bar = tqdm(total=total, desc="train-ner", unit="step", disable=not progress, dynamic_ncols=True)
    for epoch in range(1, cfg.epochs + 1):
        losses = _epoch(tagger, batches(data, cfg.batch_size, rng)[: total - step], optimizer, scheduler,
                        cfg.grad_clip, bar)
        step, loss = step + len(losses), sum(losses) / max(1, len(losses))
        metrics = evaluate(tagger, dev_docs)
        f1 = metrics["micro"]["f1"] if metrics["micro"] else 0.0
        history.append({"epoch": epoch, "step": step, "loss": loss, "dev_f1": f1,
                        "seconds": round(time.perf_counter() - t_start, 1)})
        bar.write(f"epoch {epoch}: loss {loss:.4f}, dev micro F1 {f1:.4f}")
        if f1 > best:
            best, best_metrics, stale = f1, metrics, 0
            tagger.save(cfg.output_dir, _record(settings, epoch, step, t_start, metrics, history))
        else:
            stale += 1
        bar.set_postfix(best_dev_f1=f"{best:.4f}")
        over_time = cfg.time_limit_min and time.perf_counter() - t_start > 60 * cfg.time_limit_min
        if step >= total or stale >= cfg.patience or over_time:
            break
    bar.close()
    _finish_record(cfg.output_dir / "tagger.json", history, time.perf_counter() - t_start)
    return cfg.output_dir, best_metrics


def _epoch(tagger: BertCrfTagger, groups: list[list[Example]], optimizer, scheduler, grad_clip: float,
           bar) -> list[float]:
    """One optimisation step per batch; returns the losses."""
    tagger.model.train()
    losses: list[float] = []
    for batch in groups:
        losses.append(train_step(tagger, batch, optimizer, scheduler, grad_clip))
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.3f}", refresh=False)
    return losses


def _record(settings: Settings, epoch: int, step: int, t_start: float, metrics: dict, history: list) -> dict:
    """Training facts saved beside the model."""
    cfg = settings.train_ner
    return {"training": {"base_model": cfg.base_model, "train": list(cfg.train), "dev": list(cfg.dev),
                         "seed": cfg.seed, "best_epoch": epoch, "best_step": step,
                         "seconds_to_best": round(time.perf_counter() - t_start, 1),
                         "threads": torch.get_num_threads(), "history": list(history)},
            "dev_metrics": metrics}


def _finish_record(path: Path, history: list, seconds: float) -> None:
    """Add the full history and total training time to tagger.json."""
    import json

    if not path.is_file():
        return
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta["training"].update(history=history, total_seconds=round(seconds, 1))
    path.write_text(json.dumps(meta, indent=2), encoding="utf-8")

