"""`indexer train-models`: train the tagger, the embedder and the reranker into the models search path, each with its card."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from indexer.settings import Settings

KINDS = ("tagger", "embedder", "reranker")


def tagger_card(settings: Settings, path: Path, metrics: dict, command: str) -> Path:
    """Write medlex-model.json for a tagger `train_ner` just saved (dev F1 overall and per label)."""
    import json

    from indexer import registry
    from indexer.models import resolve_device

    dev = {"micro_f1": metrics["micro"]["f1"]} if metrics.get("micro") else {}
    dev.update({f"{label}_f1": v["f1"] for label, v in metrics.get("labels", {}).items()})
    seconds = json.loads((path / "tagger.json").read_text(encoding="utf-8"))["training"]["total_seconds"]
    return registry.write_card(path, "tagger", command, list(settings.train_ner.train), dev, seconds,
                               resolve_device(settings.ner.device), settings.root)


def embedder_card(settings: Settings, result, command: str) -> Path:
    """Write medlex-model.json for an embedder `train_embedder` just saved."""
    from indexer import registry

    return registry.write_card(result.model_dir, "embedder", command, list(settings.train_embedder.sources),
                               dict(result.dev_metrics), result.seconds, result.device, settings.root)


def reranker_card(settings: Settings, result, command: str) -> Path:
    """Write medlex-model.json (kind "reranker") for a cross-encoder `train_reranker` just saved."""
    from indexer import registry

    return registry.write_card(result.model_dir, "reranker", command, list(settings.train_reranker.sources),
                               dict(result.dev_metrics), result.seconds, result.device, settings.root)


def train_models(settings: Settings, which: tuple[str, ...] = KINDS) -> list[Path]:
    """Train the tagger, the embedder and/or the reranker into the first writable search-path entry
    (ner/, embedder/, reranker/)."""
    from indexer import registry

    root = registry.writable_root(settings)
    out = []
    if "tagger" in which:
        from indexer.train.ner import train_ner

        tuned = settings.replace(train_ner=dataclasses.replace(settings.train_ner, output_dir=root / "ner"))
        path, metrics = train_ner(tuned)
        tagger_card(tuned, path, metrics, "indexer train-models")
        out.append(path)
    if "embedder" in which:
        from indexer.train.embedder import train_embedder

        tuned = settings.replace(train_embedder=dataclasses.replace(settings.train_embedder,
                                                                    output_dir=root / "embedder"))
        result = train_embedder(tuned)
        embedder_card(tuned, result, "indexer train-models")
        out.append(result.model_dir)
    if "reranker" in which:
        from indexer.train.reranker import train_reranker

        tuned = settings.replace(train_reranker=dataclasses.replace(settings.train_reranker,
                                                                    output_dir=root / "reranker"))
        result = train_reranker(tuned)
        reranker_card(tuned, result, "indexer train-models")
        out.append(result.model_dir)
    return out
