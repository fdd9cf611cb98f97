"""`indexer train-models`: train the tagger and the embedder into the models search path, each with its card."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from indexer.settings import Settings


def train_models(settings: Settings, which: tuple[str, ...]) -> list[Path]:
    """Train the tagger and/or the embedder into the first writable search-path entry; writes their cards."""
    from indexer import registry
    from indexer.models import resolve_device

    root = registry.writable_root(settings)
    out = []
    if "tagger" in which:
        from indexer.train.ner import train_ner

        ts = dataclasses.replace(settings.train_ner, output_dir=root / "ner")
        started = time.perf_counter()
        path, metrics = train_ner(settings.replace(train_ner=ts))
        dev = {"micro_f1": metrics["micro"]["f1"]} if metrics.get("micro") else {}
        dev.update({f"{k}_f1": v["f1"] for k, v in metrics.get("labels", {}).items() if "f1" in v})
        registry.write_card(path, "tagger", "indexer train-models", list(ts.train), dev,
                            time.perf_counter() - started, resolve_device(settings.ner.device), settings.root)
        out.append(path)
    if "embedder" in which:
        from indexer.train.embedder import train_embedder

        es = dataclasses.replace(settings.train_embedder, output_dir=root / "embedder")
        result = train_embedder(settings.replace(train_embedder=es))
        registry.write_card(result.model_dir, "embedder", "indexer train-models", list(es.sources),
                            dict(result.dev_metrics), result.seconds, result.device, settings.root)
        out.append(result.model_dir)
    return out
