"""Where trained models are found: the `[models] path` search path and each model's medlex-model.json.

A model directory is what its trainer saved (sentence-transformers layout for the embedder,
encoder/ + heads.pt + tagger.json for the tagger) plus a small card, medlex-model.json, that says
what it is and how it was made. Directories without a card (older training runs) are recognised
by their files, and their card is read from what the trainer recorded (tagger.json's training
block). The first directory of the search path that holds a model of a kind wins, so a model
trained here (var/models) shadows a shared one.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from indexer.errors import ModelError
from indexer.settings import Settings

CARD = "medlex-model.json"
KINDS = ("embedder", "tagger", "reranker")
DATA_DIR_TOKEN = "{data_dir}"


@dataclass(frozen=True)
class FoundModel:
    """A model directory on the search path and what its card says."""

    kind: str
    path: Path
    card: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: dev metrics, training time and device, when the card has them."""
        parts = []
        metrics = self.card.get("dev_metrics") or {}
        parts += [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(metrics.items())]
        if self.card.get("training_seconds") is not None:
            parts.append(f"trained {float(self.card['training_seconds']):.0f} s on {self.card.get('device', '?')}")
        if self.card.get("commit"):
            parts.append(f"commit {self.card['commit']}")
        return ", ".join(parts) or "no card"


def search_path(settings: Settings) -> list[Path]:
    """The configured search path: `{data_dir}` expands to the data directory, relative entries to the config's."""
    out = []
    for entry in settings.models.path:
        path = Path(entry.replace(DATA_DIR_TOKEN, str(settings.data.dir)))
        out.append((path if path.is_absolute() else settings.root / path).resolve())
    return out


def detect_kind(path: Path) -> str | None:
    """'embedder', 'tagger' or None, from the card, else from the files the trainers write."""
    card = path / CARD
    if card.is_file():
        kind = read_card(path).get("kind")
        if kind not in KINDS:
            raise ModelError(f"{str(card)!r} names kind {kind!r}; valid kinds: {', '.join(KINDS)}")
        return kind
    if (path / "tagger.json").is_file():
        return "tagger"
    if (path / "modules.json").is_file() and (path / "config.json").is_file():
        return "reranker" if _is_cross_encoder(path) else "embedder"
    return None


def _is_cross_encoder(path: Path) -> bool:
    """Whether a sentence-transformers dir holds a CrossEncoder (its config names the model type)."""
    config = path / "config_sentence_transformers.json"
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type") == "CrossEncoder"
    except (OSError, json.JSONDecodeError):
        return False


def read_card(path: Path) -> dict[str, Any]:
    """The card of a model directory; without one, what the trainer recorded (tagger.json), or {}."""
    card = path / CARD
    if card.is_file():
        try:
            return json.loads(card.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ModelError(f"{str(card)!r} is not valid JSON ({exc.msg})") from None
    tagger = path / "tagger.json"
    if tagger.is_file():
        training = json.loads(tagger.read_text(encoding="utf-8")).get("training", {})
        history = training.get("history") or [{}]
        best = max(history, key=lambda h: h.get("dev_f1", 0.0))
        return {"kind": "tagger", "command": "indexer train-ner", "training_data": training.get("train", []),
                "dev_metrics": {"micro_f1": best["dev_f1"]} if "dev_f1" in best else {},
                "training_seconds": training.get("total_seconds"), "device": training.get("device", "cpu")}
    return {}


def find_models(settings: Settings) -> list[FoundModel]:
    """Every model directory on the search path, in search order (a path entry, then its subfolders by name)."""
    found = []
    for root in search_path(settings):
        if not root.is_dir():
            continue
        for path in [root] + sorted(p for p in root.iterdir() if p.is_dir()):
            kind = detect_kind(path)
            if kind is not None:
                found.append(FoundModel(kind, path, read_card(path)))
    return found


def find(settings: Settings, kind: str) -> FoundModel | None:
    """The first model of a kind on the search path, or None."""
    if kind not in KINDS:
        raise ModelError(f"unknown model kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    return next((m for m in find_models(settings) if m.kind == kind), None)


def writable_root(settings: Settings) -> Path:
    """The first search-path entry that exists or can be created, and can be written to."""
    for root in search_path(settings):
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(root, os.W_OK):
            return root
    raise ModelError(f"no writable directory on the models search path ({', '.join(map(str, search_path(settings)))}); "
                     f"set [models] path")


def git_commit(repo: Path) -> str:
    """The repository's HEAD commit (short), or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_card(path: Path, kind: str, command: str, training_data: list[str], dev_metrics: dict[str, float],
               seconds: float, device: str, repo: Path) -> Path:
    """Write medlex-model.json into a freshly trained model directory."""
    card = {"kind": kind, "command": command, "commit": git_commit(repo), "training_data": training_data,
            "dev_metrics": dev_metrics, "training_seconds": round(seconds, 1), "device": device,
            "machine": platform.processor() or platform.machine(),
            "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (path / CARD).write_text(json.dumps(card, indent=2, sort_keys=True), encoding="utf-8")
    return path / CARD


def describe(settings: Settings) -> list[str]:
    """The search path, every model found on it, and which model each command uses."""
    from indexer.models import packaged_model_dir, resolve_embedder_dir
    from indexer.ner import resolve_tagger_dir

    lines = ["search path:"] + [f"  {p}{'' if p.is_dir() else ' (absent)'}" for p in search_path(settings)]
    found = find_models(settings)
    lines.append("found:" if found else "found: no trained model")
    lines += [f"  {m.kind:9} {m.path}  ({m.summary()})" for m in found]
    embedder = resolve_embedder_dir(settings)
    base = " (the packaged base all-MiniLM-L6-v2: train one with `indexer train-models`)" \
        if embedder == packaged_model_dir() else ""
    tagger = resolve_tagger_dir(settings)
    lines.append(f"indexer build, searchd: embedder {embedder}{base}")
    lines.append(f"indexer build, indexer tag: tagger {tagger}" if tagger is not None else
                 "indexer build, indexer tag: no tagger (gold mentions only; train one with `indexer train-models`)")
    lines.append(backend_line("embedder", "embedder", embedder, settings.embedder, settings))
    lines.append(backend_line("query encoder (searchd)", "embedder", embedder, settings.embedder, settings, "query"))
    if tagger is not None:
        lines.append(backend_line("tagger encoder", "encoder", tagger / "encoder", settings.ner, settings))
    return lines


def backend_line(title: str, kind: str, model_dir: Path, section: Any, settings: Settings,
                 purpose: str = "build") -> str:
    """Which backend and precision a model runs with, why, and whether its export is ready."""
    from indexer.embedder import EXPORT_COMMAND, model_checksum
    from indexer.inference.exports import staleness
    from indexer.inference.select import choice_for
    from indexer.models import resolve_device

    checksum = model_checksum(model_dir)
    choice = choice_for(section.backend, section.precision, resolve_device(section.device),
                        settings.models.exports_dir, checksum, purpose)
    state = ""
    if choice.variant.backend != "torch":
        why = staleness(settings.models.exports_dir, checksum, choice.variant, kind)
        state = "; export ready" if why is None else f"; export {why} (`{EXPORT_COMMAND}` or `indexer build` makes it)"
        if why is not None and purpose == "query":
            build = choice_for(section.backend, section.precision, resolve_device(section.device),
                               settings.models.exports_dir, checksum)
            state += f"; until then searchd encodes queries with {build.variant}"
    return f"{title} backend: {choice.variant} ({choice.reason}{state})"
