"""Exports of a model for ONNX Runtime and OpenVINO, cached by the model's checksum.

`root/<checksum>/<variant>/` holds the artifact (model.onnx or model.xml + .bin) and export.json,
which records what it was made from. An export is current when export.json names the same
checksum, kind and export format and the artifact is there; anything else is stale. Indexer
commands call `ensure` (a missing or stale export is rebuilt, with a message); searchd calls
`require` (refuses with the command to run), so nothing is exported at query time.

Each export is written into a temporary folder beside its place and renamed, so an interrupted
export leaves nothing that looks current. int8 ONNX is ONNX Runtime's dynamic quantisation of
the MatMul weights, per channel (per tensor lost 0.04 cosine on MiniLM); int8 OpenVINO is NNCF's
static quantisation, calibrated on texts the caller gives (the store's first chunks).
"""
from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

from indexer.errors import ModelError
from indexer.inference import KINDS, Variant

META = "export.json"
FORMAT = 1  # bump when the export recipe changes: every cached export becomes stale
KIND_FORMATS = {"head": 2}  # a kind's own recipe version (head 2: takes hidden states and first sub-tokens)
ARTIFACTS = {"onnx": "model.onnx", "openvino": "model.xml"}
OPSET = 17
CALIBRATION_TEXTS = 256


def stored_variant(variant: Variant) -> Variant:
    """The export a variant runs: bf16 is a compile hint over the fp32 OpenVINO model."""
    return Variant(variant.backend, "fp32") if variant.precision == "bf16" else variant


def export_dir(root: Path, checksum: str, variant: Variant) -> Path:
    """Where the export of a model (by checksum) for a variant lives."""
    return Path(root) / checksum / str(stored_variant(variant))


def artifact(root: Path, checksum: str, variant: Variant) -> Path:
    """The file a session opens."""
    return export_dir(root, checksum, variant) / ARTIFACTS[variant.backend]


def staleness(root: Path, checksum: str, variant: Variant, kind: str) -> str | None:
    """None when the export is current, else why not ('missing', 'stale: ...')."""
    folder = export_dir(root, checksum, variant)
    meta_path = folder / META
    if not meta_path.is_file() or not (folder / ARTIFACTS[variant.backend]).is_file():
        return "missing"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return "stale: unreadable export.json"
    expected = {"checksum": checksum, "kind": kind, "format": KIND_FORMATS.get(kind, FORMAT),
                "variant": str(stored_variant(variant))}
    wrong = [k for k, v in expected.items() if meta.get(k) != v]
    return f"stale: {', '.join(f'{k} {meta.get(k)!r} is not {expected[k]!r}' for k in wrong)}" if wrong else None


def require(root: Path, checksum: str, variant: Variant, kind: str, model_dir: Path, command: str) -> Path:
    """The artifact of a current export, or a ModelError naming the command that makes it."""
    if variant.backend == "torch":
        raise ModelError("torch runs the model directory itself; there is no export to open")
    why = staleness(root, checksum, variant, kind)
    if why is not None:
        raise ModelError(f"the {variant} export of {str(model_dir)!r} is {why} (under {str(root)!r}); "
                         f"run `{command}` to make it")
    return artifact(root, checksum, variant)


def ensure(root: Path, checksum: str, variant: Variant, kind: str, model_dir: Path,
           calibration: Callable[[], Sequence[str]], say: Callable[[str], None] = print) -> Path:
    """The artifact of a current export, exporting (and saying so) when it is missing or stale."""
    if kind not in KINDS:
        raise ModelError(f"unknown export kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    why = staleness(root, checksum, variant, kind)
    if why is None:
        return artifact(root, checksum, variant)
    stored = stored_variant(variant)
    onnx = Variant("onnx", "fp32")  # every other export is made from the fp32 ONNX graph
    source = ensure(root, checksum, onnx, kind, model_dir, calibration, say) if stored != onnx else None
    say(f"exporting {model_dir} for {stored} ({why}) into {export_dir(root, checksum, stored)}")
    started = time.perf_counter()
    folder = export_dir(root, checksum, stored)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    extra = _write(stored, kind, model_dir, source, tmp / ARTIFACTS[stored.backend], calibration)
    meta = {"checksum": checksum, "kind": kind, "format": KIND_FORMATS.get(kind, FORMAT), "variant": str(stored), "model_dir": str(model_dir),
            "seconds": round(time.perf_counter() - started, 1), "versions": _versions(stored.backend), **extra}
    (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    say(f"exported {stored} in {meta['seconds']} s")
    return artifact(root, checksum, variant)


def _write(variant: Variant, kind: str, model_dir: Path, source: Path | None, out: Path,
           calibration: Callable[[], Sequence[str]]) -> dict:
    """Make one artifact: from torch (onnx fp32) or from the fp32 export `source`."""
    if variant == Variant("onnx", "fp32"):
        _export_onnx(kind, model_dir, out)
        return {}
    if variant == Variant("onnx", "int8"):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(source, out, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"])
        return {"quantization": "onnxruntime dynamic, MatMul weights per channel, int8"}
    import openvino as ov

    if variant.precision == "fp32":
        # compress_to_fp16 defaults to True: fp32 must stay fp32
        ov.save_model(ov.convert_model(source), out, compress_to_fp16=False)
        return {}
    texts = list(calibration())[:CALIBRATION_TEXTS]
    if not texts:
        raise ModelError("int8 OpenVINO export needs calibration texts: import documents first (`indexer import`)")
    ov.save_model(_nncf_int8(kind, model_dir, source, texts), out, compress_to_fp16=False)
    return {"quantization": "nncf static (transformer preset), int8", "calibration_texts": len(texts)}


def _nncf_int8(kind: str, model_dir: Path, source: Path, texts: list[str]):
    """NNCF post-training quantisation of the OpenVINO model on tokenised calibration batches."""
    import nncf
    import openvino as ov

    from indexer.inference.runtime import load_tokenizer, tokenize

    model = ov.Core().read_model(source)
    names = [i.get_any_name() for i in model.inputs]
    tokenizer = load_tokenizer(kind, model_dir)
    batches = [tokenize(tokenizer, texts[i:i + 8], 128, names) for i in range(0, len(texts), 8)]
    return nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(texts))


def _export_onnx(kind: str, model_dir: Path, out: Path) -> None:
    """torch.onnx (TorchScript exporter) over the model's forward, batch and sequence axes dynamic."""
    import torch

    from indexer.inference.runtime import load_tokenizer, tokenize

    module, names, output = _torch_module(kind, model_dir)
    if kind == "head":
        args = module.sample()
    else:
        texts = ["a first sample text", "and a second, somewhat longer one"]
        sample = tokenize(load_tokenizer(kind, model_dir), [(t, t) for t in texts] if kind == "reranker" else texts,
                          32, names)
        args = tuple(torch.from_numpy(sample[n]) for n in names)
    axes = {n: {0: "batch", 1: "words" if kind == "head" and n != "hidden" else "sequence"} for n in names}
    axes[output] = {0: "batch"} if kind in ("embedder", "reranker") else \
        {0: "batch", 1: "words" if kind == "head" else "sequence"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python conditions on shapes, which hold here
        torch.onnx.export(module, args, str(out), input_names=list(names), output_names=[output],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


def _torch_module(kind: str, model_dir: Path):
    """(module, input names, output name): the whole sentence-transformers pipeline, or a bare encoder."""
    import torch

    if kind == "embedder":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_dir), device="cpu")
        probe = model.tokenize(["probe"])
        names = tuple(n for n in ("input_ids", "attention_mask", "token_type_ids") if n in probe)

        class Pipeline(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, *inputs):
                return self.model(dict(zip(names, inputs)))["sentence_embedding"]

        return Pipeline().eval(), names, "sentence_embedding"
    if kind == "reranker":
        return _cross_encoder_module(model_dir)
    if kind == "head":
        return _head_module(model_dir), ("hidden", "first", "mirror"), "scores"
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(model_dir).eval()

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Encoder().eval(), ("input_ids", "attention_mask"), "last_hidden_state"


def _cross_encoder_module(model_dir: Path):
    """(module, input names, 'logits'): a sequence-classification model's one logit per pair."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    class CrossEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    return CrossEncoder().eval(), ("input_ids", "attention_mask", "token_type_ids"), "logits"

def _head_module(tagger_dir: Path):
    """The tagger's WordScorer (BiLSTM + emission from heads.pt), with a sample input for tracing."""
    import torch

    from indexer.ner import BertCrfTagger
    from indexer.tagger_head import WordScorer, mirror_index

    model = BertCrfTagger.load(tagger_dir).model.eval()
    width = model.encoder.config.hidden_size

    class Head(WordScorer):
        def sample(self):
            mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])  # unequal lengths: mirror must stay dynamic
            first = torch.tensor([[1, 2, 3, 5, 6, 7, 8], [1, 2, 4, 5, 0, 0, 0]])
            return torch.randn(2, 10, width), first, mirror_index(mask)

    return Head(model.lstm, model.emission).eval()


def _versions(backend: str) -> dict[str, str]:
    import importlib.metadata as md

    names = ["torch", "onnx", "onnxruntime"] + (["openvino", "nncf"] if backend == "openvino" else [])
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out

