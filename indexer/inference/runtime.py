"""Sessions over an export: ONNX Runtime or OpenVINO on the CPU, numpy in and out."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from indexer.inference import Variant


def load_tokenizer(kind: str, model_dir: Path):
    """The Hugging Face tokenizer the model was trained with (a sentence-transformers dir keeps it with module 0)."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    modules = model_dir / "modules.json"
    if kind == "embedder" and modules.is_file():
        first = json.loads(modules.read_text(encoding="utf-8"))[0]
        model_dir = model_dir / first.get("path", "")
    return AutoTokenizer.from_pretrained(model_dir)


def tokenize(tokenizer, texts: list[str] | list[tuple[str, str]], max_length: int,
             names: Sequence[str]) -> dict[str, np.ndarray]:
    """Padded int64 inputs a session takes, truncated to max_length sub-tokens; (query, passage)
    tuples are encoded as pairs, the passage truncated first (a cross-encoder's input)."""
    if texts and isinstance(texts[0], tuple):
        enc = tokenizer([a for a, _ in texts], [b for _, b in texts], padding=True, truncation="longest_first",
                        max_length=max_length, return_tensors="np")
    else:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="np")
    return {n: np.ascontiguousarray(enc[n], dtype=np.int64) if n in enc else np.zeros_like(enc["input_ids"],
                                                                                               dtype=np.int64)
            for n in names}


class Session:
    """One compiled export; `run(feeds)` returns the graph's single output as float32."""

    def __init__(self, path: Path, variant: Variant, threads: int = 0):
        self.variant, self.path = variant, Path(path)
        if variant.backend == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads  # 0 = one per physical core
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._ort = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.input_names = tuple(i.name for i in self._ort.get_inputs())
        else:
            import openvino as ov

            config = {"INFERENCE_PRECISION_HINT": "bf16" if variant.precision == "bf16" else "f32",
                      "PERFORMANCE_HINT": "LATENCY"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            # without the hint OpenVINO runs bf16 on CPUs that have it: fp32 must mean fp32
            self._ov = ov.Core().compile_model(str(path), "CPU", config)
            self.input_names = tuple(i.get_any_name() for i in self._ov.inputs)
            self._local = threading.local()  # an infer request serves one thread at a time (searchd has several)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The output for a batch of tokenised inputs."""
        if self.variant.backend == "onnx":
            return np.asarray(self._ort.run(None, {n: feeds[n] for n in self.input_names})[0], dtype=np.float32)
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._ov.create_infer_request()
        result = request.infer({n: feeds[n] for n in self.input_names})
        return np.array(next(iter(result.values())), dtype=np.float32)  # a copy: the request reuses its buffer
