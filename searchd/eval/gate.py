"""`searchd gate`: measure every backend x precision against torch fp32 and record it for `auto`.

Quality: the configured embedder's dense NDCG@10 through `searchd eval`'s `evaluate` on each
retrieval set (SciFact's dev fold of train, NFCorpus dev), and the tagger's micro F1 on BC5CDR
dev through `indexer eval-ner`'s `evaluate`. Speed: the inference table's child processes, at 2
threads. The record goes to `models.exports_dir/<model checksum>/gate.json`, with the machine it
was measured on; `indexer models` shows what `auto` then picks. `--corpus-sample N` evaluates on
a seeded subsample of each corpus (every document judged for the evaluated queries, plus seeded
distractors up to N), written as a BEIR set beside the eval indexes, and the record says so.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path
from typing import Any, Callable

from indexer.inference import TORCH, Variant, available_variants
from indexer.settings import Settings

RETRIEVAL = (("scifact", "train", "dev"), ("nfcorpus", "dev", None))
NER_DEV = "bc5cdr/CDR_DevelopmentSet.PubTator.txt"


def subsample(dataset: Path, split: str, fold: str | None, settings: Settings, size: int, seed: int,
              max_queries: int | None = None) -> Path:
    """A BEIR copy of `dataset` whose corpus is every judged document of the evaluated queries plus distractors."""
    from indexer.readers.beir import find_file
    from indexer.readers.io import open_text
    from searchd.eval.evaluate import load_eval_data

    data = load_eval_data(dataset, split, settings, fold, max_queries)  # the same seeded queries the eval runs
    judged = {d for q in data.qrels.values() for d in q}
    out = settings.eval.evalsets_dir / f"{dataset.name}-sample{size}-q{max_queries or 'all'}-seed{seed}"
    if (out / "corpus.jsonl").is_file():
        return out
    with open_text(find_file(dataset, "corpus")) as handle:
        lines = [line if line.endswith("\n") else line + "\n" for line in handle if line.strip()]
    ids = [json.loads(line)["_id"] for line in lines]
    others = [i for i, d in enumerate(ids) if d not in judged]
    keep = {i for i, d in enumerate(ids) if d in judged}
    keep |= set(random.Random(seed).sample(others, max(0, min(len(others), size - len(keep)))))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text("".join(lines[i] for i in sorted(keep)), encoding="utf-8")
    (out / "queries.jsonl").write_bytes(find_file(dataset, "queries").read_bytes())
    (out / "qrels" / f"{split}.tsv").write_bytes((dataset / "qrels" / f"{split}.tsv").read_bytes())
    return out


def embedder_quality(settings: Settings, variant: Variant, sample: int, max_queries: int | None) -> dict[str, float]:
    """NDCG@10 of the configured embedder on this variant, per retrieval set."""
    from indexer.models import packaged_model_dir, resolve_embedder_dir
    from searchd.eval.evaluate import evaluate

    system = "dense-base" if resolve_embedder_dir(settings) == packaged_model_dir() else "dense-tuned"
    s = settings.replace(embedder=dataclasses.replace(settings.embedder, backend=variant.backend,
                                                      precision=variant.precision, device="cpu"))
    out = {}
    for name, split, fold in RETRIEVAL:
        dataset = settings.data_path(name)
        if sample:
            dataset = subsample(dataset, split, fold, settings, sample, settings.eval.sample_seed, max_queries)
        report, _ = evaluate(dataset, split, s, [system], fold, max_queries)
        out[f"{name}/ndcg@10"] = float(report["systems"][system]["mean"]["ndcg@10"])
    return out


def tagger_quality(settings: Settings, variant: Variant, limit: int | None) -> dict[str, float]:
    """Micro F1 of the tagger on this variant over BC5CDR dev (the first `limit` documents)."""
    from indexer.ner import load_tagger
    from indexer.train.ner import evaluate, load_documents

    s = settings.replace(ner=dataclasses.replace(settings.ner, backend=variant.backend, precision=variant.precision,
                                                 device="cpu"))
    tagger = load_tagger(s, True, lambda: _calibration(settings))
    docs = load_documents([settings.data_path(NER_DEV)], "pubtator", settings.train_ner.label_map)[:limit]
    return {"bc5cdr-dev/micro_f1": float(evaluate(tagger, docs)["micro"]["f1"])}


def _calibration(settings: Settings) -> list[str]:
    from searchd.eval.inference import passages

    return passages(settings, 256, seed=1)


def run_gate(settings: Settings, kinds: tuple[str, ...], sample: int, max_queries: int | None,
             ner_limit: int | None, say: Callable[[str], None] = print, speed_only: bool = False,
             only: tuple[str, ...] = ()) -> None:
    """Measure each kind on every installed variant and write its gate record, saying each result.

    `speed_only` times the variants of the model's existing record again (throughput, and one query's
    latency for the embedder) and keeps its quality metrics: speed changes with the load, quality does not.
    `only` (variant names) measures just those and keeps the other rows of this machine's record as they
    are; torch fp32, the reference, is measured too when the record lacks it."""
    from indexer.embedder import model_checksum
    from indexer.errors import ModelError
    from indexer.inference.gate import TOLERANCE, gate, read_record, write_record
    from indexer.inference.select import machine_id
    from indexer.models import resolve_embedder_dir
    from indexer.ner import resolve_tagger_dir
    from searchd.eval.inference import measure, overrides_for

    installed = [TORCH] + [v for v in available_variants() if v != TORCH]
    wanted = {str(Variant.parse(name)) for name in only}  # a misspelt variant is a ConfigError naming the valid ones
    missing = sorted(wanted - {str(v) for v in installed})
    if missing:
        raise ModelError(f"variant {missing[0]} cannot run here: its runtime is not installed")
    for kind in kinds:
        model_dir = resolve_embedder_dir(settings) if kind == "embedder" else resolve_tagger_dir(settings)
        if model_dir is None:
            say(f"{kind}: no model; skipped")
            continue
        checksum = model_checksum(model_dir if kind == "embedder" else model_dir / "encoder")
        folder = settings.models.exports_dir / checksum
        old = read_record(folder) if speed_only or wanted else None
        if old is not None and old.get("machine") != machine_id():
            old = None  # measured on another CPU: nothing of it holds here
        if speed_only and old is None:
            raise ModelError(f"--speed-only needs a gate record of {kind} {str(model_dir)!r} measured on this machine "
                             f"under {str(folder)!r}; run `searchd gate --kind {kind}` first")
        how = {"corpus_sample": sample or "full corpus", "max_queries": max_queries or "all",
               "ner_documents": ner_limit or "all", "seed": settings.eval.sample_seed}
        if speed_only:
            how = old["how"]
        elif old is not None and old.get("how") != how:  # --variant: the kept rows must share the evaluation
            raise ModelError(f"the gate record of {kind} under {str(folder)!r} was measured with {_fmt_how(old.get('how'))}, "
                             f"this run with {_fmt_how(how)}; give the same options, or run `searchd gate --kind {kind}` "
                             f"without --variant")
        known = {r["variant"]: r for r in old["measured"]} if old else {}
        rows: list[dict[str, Any]] = []
        for variant in installed:
            name = str(variant)
            if wanted and name not in wanted and (name in known or variant != TORCH):
                if name in known:
                    rows.append(known[name])  # not asked for: kept as measured
                continue
            if speed_only and name not in known:
                continue
            started = time.perf_counter()
            if speed_only:
                metrics = known[name]["metrics"]
            else:
                metrics = embedder_quality(settings, variant, sample, max_queries) if kind == "embedder" else \
                    tagger_quality(settings, variant, ner_limit)
            speed = measure(overrides_for(settings), kind, variant, 96, 20)
            timing = speed.get("threads", {}).get("2", {})
            row = {"variant": name, "metrics": metrics, "speed": float(timing.get("items_per_s", 0.0)),
                   "seconds": round(time.perf_counter() - started, 1)}
            if "query_p50_ms" in timing:
                row["query_p50_ms"] = round(float(timing["query_p50_ms"]), 3)
            rows.append(row)
            verdict = "reference" if variant == TORCH else gate(rows[0]["metrics"], metrics).describe()
            query = f", one query p50 {row['query_p50_ms']:.1f} ms" if "query_p50_ms" in row else ""
            say(f"{kind} {variant}: {_fmt(metrics)}; {row['speed']:.1f} chunks/s at 2 threads{query}; {verdict}")
        record = {"kind": kind, "model": str(model_dir), "checksum": checksum, "machine": machine_id(),
                  "tolerance": TOLERANCE, "measured": rows, "how": how, "command": "searchd gate",
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if old:
            record["quality_measured_at"] = old.get("quality_measured_at", old.get("measured_at"))
        say(f"wrote {write_record(folder, record)}")


def _fmt_how(how: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((how or {}).items())) or "nothing recorded"


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
