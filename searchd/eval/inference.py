"""Inference speed of every backend x precision: the embedder and the tagger, at 1 and 2 threads.

Each variant runs in its own child process (`python -m searchd.eval.inference`) per thread count, so
that its resident memory is its own and torch's thread setting does not leak into the next run; N
threads means N for everything the child runs, the tokenizer's Rust pool included (RAYON_NUM_THREADS;
one thread turns its parallelism off), as in an `indexer build` on N cores. The
texts are the same for every variant: 90-word passages of real sentences (nfcorpus when present,
else the sample corpus), about one 128-token chunk each. Tokens are encoder sub-tokens, counted
with the model's tokenizer, so embedder and tagger rates are in the same unit.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np

from indexer.inference import Variant, available_variants
from indexer.settings import Settings

THREADS = (1, 2)


PASSAGE_WORDS = 90  # about one 128-token chunk of biomedical English


def passages(settings: Settings, n: int, seed: int = 0) -> list[str]:
    """n chunk-sized passages of real sentences drawn (seeded) from a corpus, cut at PASSAGE_WORDS words."""
    from searchd.eval.bench import _sentences

    sentences = _sentences(settings, 5000)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words: list[str] = []
        while len(words) < PASSAGE_WORDS:
            words += rng.choice(sentences).split()
        out.append(" ".join(words[:PASSAGE_WORDS]))
    return out


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _embedder_run(settings: Settings, variant: Variant, threads: int, texts: list[str], queries: list[str]) -> dict:
    from indexer.embedder import load_embedder
    from indexer.pipeline import encode_texts

    _set_threads(threads)
    section = replace(settings.embedder, backend=variant.backend, precision=variant.precision, threads=threads,
                      device="cpu")
    model = load_embedder(settings.replace(embedder=section), True, lambda: passages(settings, 256, seed=1))
    tokenizer = model.model.tokenizer if model.session is None else model.tokenizer
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=section.max_length)["input_ids"])
    encode_texts(model, texts[:8], settings.index.build_batch)  # warm up
    started = time.perf_counter()
    encode_texts(model, texts, settings.index.build_batch)
    seconds = time.perf_counter() - started
    model = load_embedder(settings.replace(embedder=section), True, purpose="query")  # what searchd encodes with
    latency = []
    for q in queries:
        t = time.perf_counter()
        model.embed_queries([q])
        latency.append((time.perf_counter() - t) * 1000)
    return {"items_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds,
            "query_p50_ms": float(np.percentile(latency, 50)), "query_p99_ms": float(np.percentile(latency, 99))}


def _tagger_run(settings: Settings, variant: Variant, threads: int, texts: list[str]) -> dict:
    from indexer.ner import load_tagger

    _set_threads(threads)
    section = replace(settings.ner, backend=variant.backend, precision=variant.precision, threads=threads,
                      device="cpu")
    tagger = load_tagger(settings.replace(ner=section), True, lambda: passages(settings, 256, seed=1))
    if tagger is None:
        return {"error": "no tagger on the models search path"}
    tokens = sum(len(ids) for ids in tagger.tokenizer(texts, add_special_tokens=False)["input_ids"])
    words = sum(len(t.split()) for t in texts)
    tagger.tag(texts[:4])  # warm up
    started = time.perf_counter()
    tagger.tag(texts)
    seconds = time.perf_counter() - started
    return {"items_per_s": len(texts) / seconds, "tokens_per_s": tokens / seconds, "words_per_s": words / seconds}


def _rss_mb() -> float:
    from searchd.eval.bench import _rss_mb as rss

    return rss()


def child(settings: Settings, kind: str, variant: Variant, threads: int, n_texts: int, n_queries: int) -> dict[str, Any]:
    """One variant at one thread count, in this process; what the parent prints."""
    from searchd.eval.bench import _queries

    texts = passages(settings, n_texts)
    out = _embedder_run(settings, variant, threads, texts, _queries(settings, n_queries)) if kind == "embedder" \
        else _tagger_run(settings, variant, threads, texts)
    return {**out, "rss_mb": _rss_mb()}


def overrides_for(settings: Settings, sections=("data", "models", "index", "embedder", "ner")) -> list[str]:
    """`section.key=value` overrides that give a child process these sections of the settings."""
    import dataclasses

    from indexer.settings import _toml_value

    return [f"{name}.{f.name}={_toml_value(getattr(getattr(settings, name), f.name))}" for name in sections
            for f in dataclasses.fields(getattr(settings, name))]


def child_env(threads: int) -> dict[str, str]:
    """The environment of a child timed at `threads`: the tokenizer's pool that wide too."""
    return {**os.environ, "RAYON_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "true" if threads > 1 else "false"}


def measure(config_args: list[str], kind: str, variant: Variant, n_texts: int, n_queries: int) -> dict[str, Any]:
    """Run `child` in a fresh interpreter at each of THREADS; their JSON merged (or the first error printed)."""
    merged: dict[str, Any] = {"kind": kind, "variant": str(variant), "threads": {}, "rss_mb": 0.0}
    for threads in THREADS:
        cmd = [sys.executable, "-m", "searchd.eval.inference", kind, str(variant), str(threads), str(n_texts),
               str(n_queries), *config_args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads))
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return {"kind": kind, "variant": str(variant), "error": tail}
        result = json.loads(lines[-1])
        if "error" in result:  # the child ran but could not measure (no tagger on the path, ...)
            return {"kind": kind, "variant": str(variant), "error": f"{threads} thr: {result['error']}"}
        merged["rss_mb"] = max(merged["rss_mb"], result.pop("rss_mb"))
        merged["threads"][str(threads)] = result
    return merged


def table(config_args: list[str], n_texts: int = 96, n_queries: int = 50) -> tuple[list[tuple[str, ...]], list[dict]]:
    """Rows of the inference table for every installed variant, embedder then tagger; and the raw results."""
    results = [measure(config_args, kind, v, n_texts, n_queries) for kind in ("embedder", "tagger")
               for v in available_variants()]
    rows: list[tuple[str, ...]] = []
    base = {r["kind"]: r for r in results if r["variant"] == "torch-fp32" and "error" not in r}
    for r in results:
        if "error" in r:
            rows.append((f"{r['kind']} {r['variant']}", "failed", r["error"][:120], ""))
            continue
        parts = []
        for threads, m in r["threads"].items():
            unit = "chunks/s"
            ref = base.get(r["kind"], {}).get("threads", {}).get(threads)
            ratio = f" ({m['items_per_s'] / ref['items_per_s']:.2f}x torch)" if ref else ""
            parts.append(f"{threads} thr: {m['items_per_s']:.1f} {unit}, {m['tokens_per_s']:.0f} tok/s{ratio}")
        last = r["threads"][str(THREADS[-1])]
        query = f"query p50 {last['query_p50_ms']:.1f} / p99 {last['query_p99_ms']:.1f} ms, " \
            if r["kind"] == "embedder" else ""
        rows.append((f"{r['kind']} {r['variant']}", "; ".join(parts), f"{query}RSS {r['rss_mb']:.0f} MB", ""))
    return rows, results


def floors(results: list[dict]) -> list[tuple[str, ...]]:
    """The two inference floors, as ratios within this run: build encoding >= 3x torch; tagging >= encoding tokens/s."""
    ok = [r for r in results if "error" not in r]
    two = str(THREADS[-1])
    rate = lambda r, key: float(r["threads"][two][key])  # noqa: E731  (JSON keys are strings)
    emb = [r for r in ok if r["kind"] == "embedder"]
    tag = [r for r in ok if r["kind"] == "tagger"]
    torch_emb = next((r for r in emb if r["variant"] == "torch-fp32"), None)
    rows = []
    if emb and torch_emb:
        best = max(emb, key=lambda r: rate(r, "items_per_s"))
        ratio = rate(best, "items_per_s") / rate(torch_emb, "items_per_s")
        rows.append(("floor: build encoding >= 3x torch fp32", f"{best['variant']} {ratio:.2f}x",
                     "met" if ratio >= 3 else "NOT met", f"{THREADS[-1]} threads"))
    if emb and tag:
        best_e, best_t = max(emb, key=lambda r: rate(r, "tokens_per_s")), max(tag, key=lambda r: rate(r, "tokens_per_s"))
        ratio = rate(best_t, "tokens_per_s") / rate(best_e, "tokens_per_s")
        rows.append(("floor: tagging tok/s >= encoding tok/s",
                     f"{best_t['variant']} {rate(best_t, 'tokens_per_s'):.0f} vs {best_e['variant']} "
                     f"{rate(best_e, 'tokens_per_s'):.0f}", "met" if ratio >= 1 else "NOT met", f"ratio {ratio:.2f}"))
    return rows


def main(argv: list[str]) -> None:
    """Child entry point: KIND VARIANT THREADS N_TEXTS N_QUERIES [config args]; prints one JSON line."""
    import logging
    import warnings

    from indexer.settings import load_settings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    kind, variant, threads, n_texts, n_queries, *overrides = argv
    settings = load_settings(None, overrides)
    print(json.dumps(child(settings, kind, Variant.parse(variant), int(threads), int(n_texts), int(n_queries))))


if __name__ == "__main__":
    main(sys.argv[1:])
