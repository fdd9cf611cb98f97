"""From `backend`/`precision` settings to the variant that runs, and why; opening its export.

Explicit settings are used as given. `auto` reads the gate record of the model (measured on this
machine: a record from a CPU with other instructions is ignored) and takes the fastest variant
that passed: by throughput for builds and tagging, by one query's latency for the query encoder
(`purpose="query"`, what searchd loads). Without a record it takes an fp32 export, which computes
what torch computes, in the order OpenVINO, ONNX Runtime, torch for builds and ONNX Runtime,
OpenVINO, torch for queries (the orders they ran in every round of docs/inference.md: OpenVINO
encodes batches faster, ONNX Runtime answers one query sooner), and says which command measures
the rest.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from indexer.inference import TORCH, Variant, all_variants, available_variants, check, cpu_facts, installed
from indexer.inference.gate import choose, measured_from, read_record

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")
GATE_COMMAND = "searchd gate"
FP32_ORDER = ("openvino", "onnx", "torch")  # batches (indexer build, tagging)
QUERY_FP32_ORDER = ("onnx", "openvino", "torch")  # one query at a time (searchd)
PURPOSES = ("build", "query")


@dataclass(frozen=True)
class Choice:
    """The variant a model runs with and the reason, for `indexer models` and the logs."""

    variant: Variant
    reason: str


def machine_id() -> str:
    """CPU model and the vector instructions int8 and bf16 speed depend on (what a gate record is valid for)."""
    name, flags = cpu_facts()
    return f"{name} [{' '.join(f for f in CPU_FLAGS if f in flags)}]"


def candidates(backend: str, precision: str) -> list[Variant]:
    """Installed variants that the settings allow ('auto' allows any of `available_variants`; a precision named
    outright, bf16 included, is offered whatever the CPU)."""
    pool = available_variants() if precision == "auto" else [v for v in all_variants() if installed(v.backend)]
    return [v for v in pool if backend in ("auto", v.backend) and precision in ("auto", v.precision)]


def resolve(backend: str, precision: str, record: dict | None, machine: str, purpose: str = "build") -> Choice:
    """The variant for these settings, given the model's gate record (or None) on this machine; `purpose` "build"
    (batches) or "query" (one query at a time) decides what "fastest" means."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r}; valid: {PURPOSES}")
    if backend != "auto" and precision != "auto":
        return Choice(check(backend, precision), "configured")
    allowed = candidates(backend, precision)
    if not allowed:
        return Choice(check(backend if backend != "auto" else "torch", "fp32"),
                      f"no installed backend allows backend={backend!r} precision={precision!r}")
    if record is not None and record.get("machine") == machine:
        reference, measured = measured_from(record)
        picked = choose(reference, measured, allowed, float(record.get("tolerance", 0.005)), purpose)
        if picked is not None:
            return Choice(*picked)
    order = QUERY_FP32_ORDER if purpose == "query" else FP32_ORDER
    exact = sorted((v for v in allowed if v.exact), key=lambda v: order.index(v.backend))
    why = "no quality-gate record for this model on this machine" if record is None or \
        record.get("machine") != machine else "no measured variant passed the gate"
    chosen = exact[0] if exact else allowed[0]
    return Choice(chosen, f"{why}: {chosen} (fp32 exports give torch's vectors); `{GATE_COMMAND}` measures "
                          f"int8 and bf16")


def open_variant(kind: str, model_dir: Path, checksum: str, choice: Choice, exports: Path | None, threads: int,
                 prepare: bool, calibration: Callable[[], Sequence[str]], command: str, say=print, streams: int = 1,
                 lengths: Sequence[int] = ()):
    """A Session over the chosen export (built when `prepare`, else required), or None for torch; `streams` and
    `lengths` as `Session`'s (the defaults: one inference at a time, dynamic shapes only)."""
    from indexer.errors import ModelError
    from indexer.inference import exports as ex
    from indexer.inference.runtime import Session

    if choice.variant == TORCH:
        return None
    if exports is None:
        raise ModelError(f"{choice.variant} needs an exports directory ([models] exports_dir)")
    if prepare:
        path = ex.ensure(exports, checksum, choice.variant, kind, model_dir, calibration, say)
    else:
        path = ex.require(exports, checksum, choice.variant, kind, model_dir, command)
    return Session(path, choice.variant, threads, streams, lengths)


def gate_record(exports: Path | None, checksum: str) -> dict | None:
    """The gate record stored with a model's exports, if any."""
    return read_record(Path(exports) / checksum) if exports is not None else None



def choice_for(backend: str, precision: str, device: str, exports: Path | None, checksum: str,
               purpose: str = "build") -> Choice:
    """The Choice for a model section's settings on a resolved device ('cpu' or 'cuda'), for `purpose`."""
    if device == "cuda":
        return Choice(TORCH, "device cuda: the exports are CPU builds, torch runs on the GPU")
    if exports is None and backend == "auto":
        return Choice(TORCH, "no exports directory given")
    return resolve(backend, precision, gate_record(exports, checksum), machine_id(), purpose)


def store_texts(index_dir: Path | str, limit: int = 256) -> list[str]:
    """Calibration texts: the first chunks of the index's store (by id), or none when there is no store."""
    from indexer.store import DocumentStore

    from indexer.store import MissingStore
    from indexer.store.schema import is_url

    path = index_dir if is_url(index_dir) else Path(index_dir) / "store.sqlite"  # store.url, or the index's file
    try:
        store = DocumentStore(path, create=False)
    except MissingStore:
        return []
    try:
        ids = store.chunk_ids()[:limit]
        return [f"{title}. {text}" for title, text in store.chunk_texts(ids).values()]
    finally:
        store.close()
