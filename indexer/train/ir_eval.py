"""Base vs fine-tuned embedder on the dev sets: IR metrics, dev-triplet accuracy and similarity gaps.

Both models see exactly the same dev sets (built by `pairs.collect` with the same seed) and
the same dev triplets, whose negatives are mined once with the base model: for each dev
query the most similar non-relevant document of its dev corpus, and for entity-aware
triplets the nearest BC5CDR dev abstract that shares no MeSH id with the anchor.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer.models import resolve_device, resolve_model_dir
from indexer.settings import Settings
from indexer.train.pairs import PATHS, DevSet, collect, docs_of, dev_triplets, entity_pairs, mine_triplets

IR_KEYS = ("accuracy@1", "accuracy@3", "accuracy@5", "accuracy@10", "ndcg@10", "mrr@10", "map@100")
MIN_MEAN_GAIN = 0.03  # floor: mean NDCG@10 gain on the medical dev sets the issue names
FLOOR_SETS = ("bc5cdr-dev", "scifact-dev", "nfcorpus-dev")  # the medical dev sets for the mean-gain floor
MAX_LEGAL_LOSS = 0.01  # floor: largest NDCG@10 loss allowed on a legal dev set


def ir_metrics(model, dev: DevSet, batch_size: int = 32) -> dict[str, float]:
    """accuracy@k, ndcg@10, mrr@10, map@100 of one model on one dev set (cosine)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    evaluator = InformationRetrievalEvaluator(dev.queries, dev.corpus, dev.relevant, name=dev.name,
                                              batch_size=batch_size, write_csv=False)
    scores = evaluator(model)
    prefix = f"{dev.name}_cosine_"
    return {k: float(scores[prefix + k]) for k in IR_KEYS}


def triplet_scores(encode, triplets: Sequence[tuple[str, str, str]]) -> dict[str, float]:
    """Share of triplets with sim(anchor, positive) > sim(anchor, negative), and the mean gap."""
    if not triplets:
        return {"triplets": 0, "accuracy": float("nan"), "mean_gap": float("nan")}
    a, p, n = (encode([t[i] for t in triplets]) for i in range(3))
    gap = (a * p).sum(1) - (a * n).sum(1)
    return {"triplets": len(triplets), "accuracy": float((gap > 0).mean()), "mean_gap": float(gap.mean())}


def dev_triplet_sets(settings: Settings, devs: Sequence[DevSet], encode, limit: int) -> dict[str, list]:
    """Per pair type: dev triplets mined with the base model (`encode`)."""
    out = {d.name: dev_triplets(d, encode, limit) for d in devs}
    if "entity" in settings.train_embedder.sources:
        docs = docs_of("pubtator", settings.data.dir / PATHS["bc5cdr-dev"], settings.train_ner.label_map)
        pairs = entity_pairs(docs)[:limit]
        out["entity-dev"] = [t[:3] for t in mine_triplets(pairs, encode, 1.0, settings.train_embedder.seed)]
    return out


def base_results(settings: Settings, data, triplet_limit: int) -> dict:
    """Base-model metrics and the dev triplets mined with it, cached beside the tuned model's dir.

    The cache key holds every setting that shapes the dev sets, so a changed setting recomputes.
    """
    from sentence_transformers import SentenceTransformer

    from indexer.train.embedder import encoder_of

    ts = settings.train_embedder
    base_dir = resolve_model_dir(ts.base_model)
    key = json.dumps([str(base_dir), ts.sources, ts.dev_fraction, ts.dev_max_queries,  # what shapes the dev sets
                      ts.dev_max_corpus, ts.seed, ts.max_length, triplet_limit])
    cache = ts.output_dir.parent / f"{ts.output_dir.name}-base-dev.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached
    model = _load(SentenceTransformer, base_dir, ts)
    encode = encoder_of(model)
    triplets = dev_triplet_sets(settings, data.dev, encode, triplet_limit)
    out = {"key": key, "base_dir": str(base_dir), "triplet_sets": triplets,
           "ir": {d.name: ir_metrics(model, d) for d in data.dev},
           "triplets": {n: triplet_scores(encode, t) for n, t in triplets.items()}}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


def _load(cls, path: Path, ts):
    model = cls(str(path), device=resolve_device(ts.device))
    model.max_seq_length = ts.max_length
    model.eval()
    return model


def compare(settings: Settings, tuned_dir: Path, training: dict | None = None, tuned_metrics: dict | None = None,
            triplet_limit: int = 50) -> tuple[dict, Path]:
    """Evaluate the base and the tuned model on every dev set; write dev_report.json beside the tuned model.

    `tuned_metrics` (evaluator keys like `scifact-dev_cosine_ndcg@10`, as training returns them for
    the saved model on the same dev sets) spare a second evaluation of the tuned model.
    """
    from sentence_transformers import SentenceTransformer

    from indexer.train.embedder import encoder_of

    ts = settings.train_embedder
    data = collect(settings.data.dir, ts.sources, ts.max_pairs_per_source, ts.dev_fraction, ts.dev_max_queries,
                   ts.dev_max_corpus, ts.seed, settings.train_ner.label_map, ts.pairs_per_source)
    base = base_results(settings, data, triplet_limit)
    tuned = _load(SentenceTransformer, Path(tuned_dir), ts)
    report: dict = {"base_dir": base["base_dir"], "tuned_dir": str(tuned_dir), "device": resolve_device(ts.device),
                    "training": training or _training_info(tuned_dir), "dev_sets": {}, "triplets": {}}
    for d in data.dev:
        report["dev_sets"][d.name] = {"domain": d.domain, "queries": len(d.queries), "corpus": len(d.corpus),
                                      "base": base["ir"][d.name], "tuned": _given(tuned_metrics, d.name) or ir_metrics(tuned, d)}
    for name, trips in base["triplet_sets"].items():
        report["triplets"][name] = {"base": base["triplets"][name], "tuned": triplet_scores(encoder_of(tuned), trips)}
    report["floors"] = floors(report["dev_sets"])
    report["evaluated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = Path(tuned_dir) / "dev_report.json"
    path.write_text(json.dumps(report, indent=2))
    plot(report, _history(tuned_dir), path.with_suffix(".png"))
    return report, path


def _history(tuned_dir: Path) -> list[dict]:
    """The training log with a step count that runs on across stages (each stage's trainer restarts at 0)."""
    path = Path(tuned_dir) / "training.json"
    history = json.loads(path.read_text()).get("history", []) if path.is_file() else []
    offset = last = 0
    for h in history:
        if "total_step" not in h:  # written before stages were numbered: a step that falls back starts a stage
            step = h.get("step", 0)
            offset += last if step < last else 0
            h["total_step"], last = offset + step, step
    return history


def plot(report: dict, history: Sequence[dict], path: Path) -> None:
    """Left: NDCG@10 of base and tuned per dev set. Right: dev NDCG@10 per set over training steps."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    names = list(report["dev_sets"])
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = np.arange(len(names))
    for i, model in enumerate(("base", "tuned")):
        drawn = bars.bar(xs + (i - 0.5) * 0.4, [report["dev_sets"][n][model]["ndcg@10"] for n in names], 0.4,
                         label=model)
        bars.bar_label(drawn, fmt="%.3f", fontsize=7, padding=1)
    bars.set_xticks(xs, names, rotation=15)
    bars.set_ylim(0, 1.1)
    bars.set_ylabel("NDCG@10")
    bars.set_title("dev sets: base vs fine-tuned")
    bars.legend(fontsize=8)
    evals = [h for h in history if "eval_sequential_score" in h]
    for name in names:
        key = f"eval_{name}_cosine_ndcg@10"
        points = [(h.get("total_step", h.get("step", 0)), h[key]) for h in evals if key in h]
        if points:
            curves.plot(*zip(*points), marker="o", label=name)
    for name in names:  # the base model's score as a dashed level in the same colour order
        curves.axhline(report["dev_sets"][name]["base"]["ndcg@10"], linestyle=":", linewidth=0.8, color="grey")
    curves.set_xlabel("training step")
    curves.set_ylabel("dev NDCG@10 (dotted: base model)")
    curves.set_title("dev NDCG@10 during training" if evals else "no evaluation during training")
    if evals:
        curves.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _given(metrics: dict | None, name: str) -> dict[str, float] | None:
    keys = {k: f"{name}_cosine_{k}" for k in IR_KEYS}
    if not metrics or not all(v in metrics for v in keys.values()):
        return None
    return {k: float(metrics[v]) for k, v in keys.items()}


def floors(dev_sets: dict) -> dict:
    """The acceptance floors: tuned beats base on NDCG@10 on every medical set, by +0.03 on average
    over the issue's sets (BC5CDR, SciFact, NFCorpus dev; every medical set where none of them is
    there), and loses at most 0.01 on a legal set. `mean_all_medical_gain` also averages MedQuAD."""
    gains = {n: r["tuned"]["ndcg@10"] - r["base"]["ndcg@10"] for n, r in dev_sets.items()}
    medical = [g for n, g in gains.items() if dev_sets[n]["domain"] == "medical"]
    named = [g for n, g in gains.items() if n in FLOOR_SETS] or medical
    legal = [g for n, g in gains.items() if dev_sets[n]["domain"] == "legal"]
    return {"ndcg@10_gain": gains,
            "every_medical_gains": bool(medical) and all(g > 0 for g in medical),
            "mean_medical_gain": float(np.mean(named)) if named else float("nan"),
            "mean_medical_gain_ok": bool(named) and float(np.mean(named)) >= MIN_MEAN_GAIN,
            "mean_all_medical_gain": float(np.mean(medical)) if medical else float("nan"),
            "legal_ok": all(g >= -MAX_LEGAL_LOSS for g in legal)}


def _training_info(tuned_dir: Path) -> dict:
    path = Path(tuned_dir) / "training.json"
    if not path.is_file():
        return {}
    info = json.loads(path.read_text())
    return {k: info.get(k) for k in ("seconds", "device", "steps", "pairs")}


def markdown(report: dict) -> str:
    """The report as Markdown tables: IR metrics per dev set and model, then dev triplets."""
    lines = ["| dev set | queries / corpus | model | " + " | ".join(IR_KEYS) + " |",
             "|---|---|---|" + "---|" * len(IR_KEYS)]
    for name, r in report["dev_sets"].items():
        for model in ("base", "tuned"):
            cells = " | ".join(f"{r[model][k]:.4f}" for k in IR_KEYS)
            lines.append(f"| {name} ({r['domain']}) | {r['queries']} / {r['corpus']} | {model} | {cells} |")
    lines += ["", "| pair type | triplets | base accuracy | tuned accuracy | base mean gap | tuned mean gap |",
              "|---|---|---|---|---|---|"]
    for name, r in report["triplets"].items():
        lines.append(f"| {name} | {r['base']['triplets']} | {r['base']['accuracy']:.4f} | {r['tuned']['accuracy']:.4f} "
                     f"| {r['base']['mean_gap']:.4f} | {r['tuned']['mean_gap']:.4f} |")
    f = report["floors"]
    t = report.get("training") or {}
    lines += ["", "NDCG@10 gains: " + ", ".join(f"{k} {v:+.4f}" for k, v in f["ndcg@10_gain"].items()),
              f"floors: every medical set gains: {f['every_medical_gains']}; mean medical gain "
              f"{f['mean_medical_gain']:+.4f} (>= {MIN_MEAN_GAIN}: {f['mean_medical_gain_ok']}; every medical set "
              f"{f.get('mean_all_medical_gain', f['mean_medical_gain']):+.4f}); "
              f"legal loss <= {MAX_LEGAL_LOSS}: {f['legal_ok']}"]
    if t:
        lines.append(f"training: {t.get('seconds', 0):.0f} s, {t.get('steps')} steps on {t.get('device')}")
    return "\n".join(lines)
