"""Sessions over an export: ONNX Runtime or OpenVINO on the CPU, numpy in and out."""
from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np

from indexer.inference import Variant

T = TypeVar("T")
R = TypeVar("R")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
    """One compiled export; `run(feeds)` returns the graph's single output as float32.

    `streams` > 1 compiles it for throughput: OpenVINO runs that many inference streams over the threads
    (one thread each on two cores), ONNX Runtime gives each of that many concurrent runs its share of the
    threads; `map` then runs batches on that many Python threads at once, so one batch's tokenising or
    decoding overlaps another's inference. `streams` 0 lets OpenVINO choose (its THROUGHPUT hint) and means
    one for ONNX Runtime; 1 is the latency setup, one inference at a time on every thread (what one query
    wants).
    """

    def __init__(self, path: Path, variant: Variant, threads: int = 0, streams: int = 1, lengths: Sequence[int] = ()):
        self.variant, self.path = variant, Path(path)
        if streams < 0:
            raise ValueError(f"streams {streams}: 0 (the runtime chooses), 1 (latency) or more")
        if variant.backend == "onnx":
            import onnxruntime as ort

            self.streams = max(1, streams)
            options = ort.SessionOptions()
            # 0 = one per physical core; concurrent runs share the threads between them
            options.intra_op_num_threads = max(1, (threads or usable_cpus()) // self.streams) \
                if self.streams > 1 else threads
            options.inter_op_num_threads = 1
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._ort = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            self.input_names = tuple(i.name for i in self._ort.get_inputs())
        else:
            import openvino as ov

            config = {"INFERENCE_PRECISION_HINT": "bf16" if variant.precision == "bf16" else "f32"}
            if streams == 1:
                config["PERFORMANCE_HINT"] = "LATENCY"
            elif streams == 0:
                config["PERFORMANCE_HINT"] = "THROUGHPUT"
            else:
                config["NUM_STREAMS"] = streams
            if threads:
                config["INFERENCE_NUM_THREADS"] = threads
            # without the hint OpenVINO runs bf16 on CPUs that have it: fp32 must mean fp32
            core = ov.Core()
            self._ov = core.compile_model(str(path), "CPU", config)
            self.streams = max(1, int(self._ov.get_property("NUM_STREAMS")))
            self.input_names = tuple(i.get_any_name() for i in self._ov.inputs)
            self._static = {}  # sequence length -> the graph compiled for one sequence of exactly that length
            source = core.read_model(str(path)) if lengths else None
            for width in sorted(set(lengths)):
                model = source.clone()
                model.reshape({name: ov.PartialShape([1, width]) for name in self.input_names})
                self._static[width] = core.compile_model(model, "CPU", config)
            self._local = threading.local()  # an infer request serves one thread at a time (searchd has several)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The output for a batch of tokenised inputs. With `lengths` (OpenVINO), one sequence no longer than
        the longest of them runs padded (attention mask 0) on the static graph of the next length up:
        OpenVINO runs a fixed shape sooner than a dynamic one, and a length it has not seen before costs
        a dynamic graph extra time the first time (docs/inference.md, round 7)."""
        if self.variant.backend == "onnx":
            return np.asarray(self._ort.run(None, {n: feeds[n] for n in self.input_names})[0], dtype=np.float32)
        feeds = {n: feeds[n] for n in self.input_names}
        key, compiled = None, self._ov
        shape = feeds[self.input_names[0]].shape
        if self._static and len(shape) == 2 and shape[0] == 1:
            width = shape[1]
            key = next((w for w in self._static if w >= width), None)
            if key is not None:
                compiled = self._static[key]
                feeds = {n: np.pad(v, ((0, 0), (0, key - width))) for n, v in feeds.items()}
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(key)
        if request is None:
            request = requests[key] = compiled.create_infer_request()
        result = request.infer(feeds)
        return np.array(next(iter(result.values())), dtype=np.float32)  # a copy: the request reuses its buffer

    def map(self, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """[work(item) for item in items], `streams` at a time when there are several (work calls `run`;
        the runtimes release the GIL while they infer); results in the items' order."""
        items = list(items)
        if self.streams <= 1 or len(items) <= 1:
            return [work(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="medlex-infer")
        return list(self._pool.map(work, items))
