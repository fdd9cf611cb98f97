"""Inference backends for the embedder and the tagger's encoder: torch, ONNX Runtime and OpenVINO.

A *variant* is a backend and a precision (`onnx-int8`). torch runs the model directory as it is;
the other backends run an export of it, made once per model and cached under
`models.exports_dir/<model checksum>/<variant>/` (exports.py), because model directories may be
read-only. Which variant `auto` means is decided by the quality gate (gate.py) from a record of
measured quality and speed, so nothing is re-measured at load time (select.py).

sentence-transformers' backend support and optimum would do the exports, but optimum-onnx 0.1
needs transformers < 4.58 and optimum-intel 2.2 transformers < 5.6, and medlex runs on
transformers 5; so exports use the libraries those wrap: torch.onnx, onnxruntime.quantization,
openvino and nncf.
"""
from __future__ import annotations

import functools
import importlib.util
import platform
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import ConfigError, choices

BACKENDS = ("torch", "onnx", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
# bf16 is a compile hint of OpenVINO on CPUs with AVX512_BF16/AMX; torch and ONNX Runtime run fp32 or int8 here
VALID = {"torch": ("fp32",), "onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
PACKAGES = {"torch": "torch", "onnx": "onnxruntime", "openvino": "openvino"}
KINDS = ("embedder", "encoder", "reranker", "head")  # a sentence-transformers pipeline, the tagger's bare
# transformer, a cross-encoder (its one logit per (query, passage) pair), or the tagger's BiLSTM + emission over
# word vectors (always fp32: it is small and runs where the encoder runs)


@dataclass(frozen=True, order=True)
class Variant:
    """A backend and a precision, e.g. onnx-int8."""

    backend: str
    precision: str

    def __str__(self) -> str:
        return f"{self.backend}-{self.precision}"

    @property
    def exact(self) -> bool:
        """fp32 exports compute what torch computes (cosine >= 0.9999); the others need the gate."""
        return self.precision == "fp32"

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """'onnx-int8' -> Variant('onnx', 'int8'), checked."""
        backend, _, precision = text.partition("-")
        return check(backend, precision)


TORCH = Variant("torch", "fp32")


def check(backend: str, precision: str) -> Variant:
    """A valid Variant, or a ConfigError naming the valid combinations."""
    if backend not in VALID or precision not in VALID[backend]:
        valid = [str(v) for v in all_variants()]
        raise ConfigError(f"backend {backend!r} with precision {precision!r} is not supported; valid: {choices(valid)}")
    return Variant(backend, precision)


def all_variants() -> list[Variant]:
    """Every supported backend x precision, torch first."""
    return [Variant(b, p) for b in BACKENDS for p in VALID[b]]


def installed(backend: str) -> bool:
    """True when the backend's runtime package can be imported."""
    return importlib.util.find_spec(PACKAGES[backend]) is not None


def available_variants() -> list[Variant]:
    """The supported variants whose runtime is installed, bf16 only where the CPU computes in it (`native_bf16`):
    elsewhere OpenVINO runs a bf16 hint in fp32, the fp32 variant under another name."""
    return [v for v in all_variants() if installed(v.backend) and (v.precision != "bf16" or native_bf16())]


@functools.lru_cache(maxsize=1)
def cpu_facts() -> tuple[str, frozenset[str]]:
    """The CPU's model name and its instruction-set flags, from /proc/cpuinfo (empty flags elsewhere)."""
    flags: frozenset[str] = frozenset()
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        found_name = False
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = frozenset(value.split())
            elif key.strip() == "model name" and not found_name:
                name, found_name = value.strip(), True
            if flags and found_name:
                break
    return name, flags


def native_bf16() -> bool:
    """Whether the CPU has bf16 arithmetic (AVX512_BF16 or AMX), without which a bf16 hint runs fp32."""
    _, flags = cpu_facts()
    return bool(flags & {"avx512_bf16", "amx_bf16"})
