"""Entity tagger: the Tagger protocol, a BERT(+BiLSTM)+CRF model and windowed tagging to character spans.

Text is cut into sentences and words (`\\w+` runs and single punctuation marks). The encoder sees
sub-tokens; the first sub-token of each word stands for the word, and the optional BiLSTM, the
emission layer and the CRF (or a per-word softmax) run over word-level sequences with BIO tags.
Sentences longer than a window are tagged in overlapping windows; each word takes the tag of the
window in which it sits furthest from an edge, where the model saw the most context.
"""
from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Protocol, Sequence

import torch
from torch import nn

from indexer.documents import Mention, sentence_spans
from indexer.errors import ModelError
from indexer.negation import NegationDetector
from indexer.ner_confidence import decode_with_confidence, span_confidence
from indexer.normalize import Normalizer
from indexer.tagger_head import bilstm, mirror_index, viterbi

Entity = Mention  # the tagger's output record: the store's Mention, filled by the model
Span = tuple[int, int]

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
TAGGER_FILE = "tagger.json"


class Tagger(Protocol):
    labels: tuple[str, ...]
    checksum: str  # identifies the model's weights and lexicon (recorded per tagged document)

    # predicts, never writes; `legal[i]` True: text i comes from a legal document (None: judge by its words)
    def tag(self, texts: Sequence[str], legal: Sequence[bool | None] | None = None) -> list[list[Entity]]: ...


# ---- words, tags, spans (pure functions) ------------------------------------------------------
def sentence_words(text: str) -> list[list[Span]]:
    """Word character spans of each sentence of a text; sentences without words are left out."""
    out = []
    for s, e in sentence_spans(text):
        words = [m.span() for m in _WORD.finditer(text, s, e)]
        if words:
            out.append(words)
    return out


def tags_from_mentions(words: Sequence[Span], mentions: Sequence[Mention]) -> list[str]:
    """BIO tags of words from mention spans; a word overlapping a mention belongs to it."""
    tags = ["O"] * len(words)
    starts = [w[0] for w in words]
    for m in sorted(mentions, key=lambda m: (m.start, -m.end)):
        lo = max(0, bisect.bisect_right(starts, m.start) - 1)
        inside = [i for i in range(lo, bisect.bisect_left(starts, m.end))
                  if words[i][0] < m.end and words[i][1] > m.start]
        if not inside or any(tags[i] != "O" for i in inside):
            continue  # nested or overlapping mentions: BIO keeps the first
        tags[inside[0]] = f"B-{m.label}"
        for i in inside[1:]:
            tags[i] = f"I-{m.label}"
    return tags


def spans_from_tags(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Word ranges [i, j) and labels of the entities in a BIO sequence; a stray I- starts an entity."""
    out: list[tuple[int, int, str]] = []
    start, label = None, None
    for i, tag in enumerate(list(tags) + ["O"]):
        kind, _, lab = tag.partition("-")
        if start is not None and (kind != "I" or lab != label):
            out.append((start, i, label))
            start, label = None, None
        if kind == "B" or (kind == "I" and start is None):
            start, label = i, lab
    return out


def windows(counts: Sequence[int], max_words: int, stride_words: int, budget: int) -> list[Span]:
    """Overlapping word windows [a, b) of at most max_words words and `budget` sub-tokens."""
    n, out, a = len(counts), [], 0
    while a < n:
        b, used = a, 0
        while b < n and b - a < max_words and (b == a or used + counts[b] <= budget):
            used += counts[b]
            b += 1
        out.append((a, b))
        if b >= n:
            break
        step = max(1, round((b - a) * stride_words / max_words))
        a = min(a + step, b - 1) if b - a > 1 else b
    return out


def merge_windows(n: int, spans: Sequence[Span], window_tags: Sequence[Sequence], empty="O") -> list:
    """One tag (or tag record) per word: from the window where the word is furthest from an edge."""
    best = [-1] * n
    tags = [empty] * n
    for (a, b), wt in zip(spans, window_tags):
        for i in range(a, b):
            centrality = min(i - a, b - 1 - i)
            if centrality > best[i]:
                best[i], tags[i] = centrality, wt[i - a]
    return tags


# ---- the model ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelConfig:
    tags: tuple[str, ...]  # BIO tag set; index = tag id
    use_lstm: bool = True
    use_crf: bool = True
    lstm_hidden: int = 256
    dropout: float = 0.1
    max_length: int = 256  # sub-tokens per sequence, special tokens included
    class_weight_o: float = 1.0  # softmax loss weight of the O tag


class CrfTaggerModel(nn.Module):
    """Encoder -> first sub-token per word -> [BiLSTM] -> dropout -> linear -> CRF or softmax."""

    def __init__(self, encoder: nn.Module, config: ModelConfig):
        super().__init__()
        from torchcrf import CRF

        self.config = config
        self.encoder = encoder
        width = encoder.config.hidden_size
        self.lstm = None
        if config.use_lstm:
            self.lstm = nn.LSTM(width, config.lstm_hidden, batch_first=True, bidirectional=True)
            width = 2 * config.lstm_hidden
        self.dropout = nn.Dropout(config.dropout)
        self.emission = nn.Linear(width, len(config.tags))
        self.crf = CRF(len(config.tags), batch_first=True) if config.use_crf else None
        self.head = None  # an exported WordScorer session, called like WordScorer (not a module: no state)

    def emissions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-word tag scores (batch, words, tags)."""
        hidden = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        if self.head is not None:  # first sub-tokens, BiLSTM and emission exported to the encoder's backend
            return self.head(hidden, batch["first"], mirror_index(batch["word_mask"]))
        words = hidden.gather(1, batch["first"].unsqueeze(-1).expand(-1, -1, hidden.size(-1)))
        if self.lstm is not None:
            words = bilstm(self.lstm, words, mirror_index(batch["word_mask"]))
        return self.emission(self.dropout(words))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean negative log-likelihood (CRF) or weighted cross-entropy (softmax) of the gold tags."""
        scores = self.emissions(batch)
        mask = batch["word_mask"]
        if self.crf is not None:
            return -self.crf(scores, batch["tags"], mask=mask, reduction="mean")
        weight = torch.ones(scores.size(-1), device=scores.device)
        weight[self.config.tags.index("O")] = self.config.class_weight_o
        return nn.functional.cross_entropy(scores[mask], batch["tags"][mask], weight=weight)

    @torch.inference_mode()
    def decode(self, batch: dict[str, torch.Tensor]) -> list[list[int]]:
        """Best tag ids per word: Viterbi with the CRF, else the per-word argmax."""
        scores = self.emissions(batch)
        mask = batch["word_mask"]
        if self.crf is not None:  # numpy: torch's per-step ops cost more than the search itself on busy cores
            return viterbi(scores.numpy(), mask.numpy(), self.crf)
        best = scores.argmax(-1)
        return [best[i, : int(mask[i].sum())].tolist() for i in range(best.size(0))]


def encode_words(tokenizer, batch_words: Sequence[Sequence[str]], max_length: int) -> dict[str, torch.Tensor]:
    """Sub-token ids for word lists, with the index of each word's first sub-token."""
    enc = tokenizer([list(w) for w in batch_words], is_split_into_words=True, truncation=True,
                    max_length=max_length, padding=True, return_tensors="pt")
    width = max(len(w) for w in batch_words)
    first = torch.zeros(len(batch_words), width, dtype=torch.long)  # 0 ([CLS]) for words with no sub-token
    mask = torch.zeros(len(batch_words), width, dtype=torch.bool)
    for b, words in enumerate(batch_words):
        mask[b, : len(words)] = True
        seen = set()
        for pos, wid in enumerate(enc.word_ids(b)):
            if wid is not None and wid not in seen:
                seen.add(wid)
                first[b, wid] = pos
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "first": first,
            "word_mask": mask}


def word_pieces(tokenizer, sentences: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Sub-token ids of every word of every sentence, from one tokenizer call (no special tokens)."""
    if not sentences:
        return []
    enc = tokenizer([list(w) for w in sentences], is_split_into_words=True, add_special_tokens=False)
    out = []
    for b, words in enumerate(sentences):
        pieces: list[list[int]] = [[] for _ in words]
        for token, wid in zip(enc["input_ids"][b], enc.word_ids(b)):
            if wid is not None:
                pieces[wid].append(token)
        out.append(pieces)
    return out


def encode_pieces(tokenizer, batch_pieces: Sequence[Sequence[Sequence[int]]], max_length: int) -> dict[str, torch.Tensor]:
    """`encode_words` from words already split into sub-token ids (`word_pieces`): the same tensors, truncated
    and padded the same way, without tokenising again."""
    limit = max_length - 2  # [CLS] and [SEP]
    width = max(len(w) for w in batch_pieces)
    rows, firsts = [], []
    for pieces in batch_pieces:
        flat: list[int] = []
        first = [0] * width  # 0 ([CLS]) for words with no sub-token, or cut off
        for w, ids in enumerate(pieces):
            if ids and len(flat) < limit:
                first[w] = 1 + len(flat)
            flat.extend(ids)
        rows.append([tokenizer.cls_token_id, *flat[:limit], tokenizer.sep_token_id])
        firsts.append(first)
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row)
        attention[b, :len(row)] = 1
        mask[b, :len(batch_pieces[b])] = True
    return {"input_ids": ids, "attention_mask": attention, "first": torch.tensor(firsts), "word_mask": mask}


def subtoken_counts(tokenizer, words: Sequence[str]) -> list[int]:
    """Number of sub-tokens of each word (at least 1, so a window always advances)."""
    if not words:
        return []
    ids = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    return [max(1, len(x)) for x in ids]


# ---- the tagger ----------------------------------------------------------------------------
class BertCrfTagger:
    """Tagger over a CrfTaggerModel; also saves and loads the model directory."""

    def __init__(self, model: CrfTaggerModel, tokenizer, normalizer: Normalizer | None = None,
                 negation: NegationDetector | None = None, batch_size: int = 16, window_words: int = 200,
                 window_stride: int = 150, device: str = "cpu", mention_filter=None, min_confidence: float = 0.0):
        self.checksum = "untrained"  # load() sets the directory checksum
        self.choice = None  # use_backend sets the encoder's backend and precision, and why
        self.model, self.tokenizer = model.to(device), tokenizer
        self.mention_filter = mention_filter  # e.g. LegalFilter: drops what legal text makes look medical
        self.min_confidence = min_confidence  # mentions whose least sure word's marginal is below are dropped
        self.normalizer = normalizer or Normalizer()
        self.negation = negation or NegationDetector.load()
        self.batch_size, self.window_words, self.window_stride = batch_size, window_words, window_stride
        self.device = device
        self.labels = tuple(sorted({t[2:] for t in model.config.tags if t != "O"}))

    def tag(self, texts: Sequence[str], legal: Sequence[bool | None] | None = None) -> list[list[Entity]]:
        """Entity mentions of each text, as character spans, normalised and with their negation state.

        `legal`: per text, True when its document is known to be legal (a court or a legal doc_type, see
        `indexer.legal_filter.is_legal_document`), so the legal rules apply to any passage of it; None leaves
        it to the filter to judge from the words."""
        units = []  # (text index, sentence words, window spans)
        jobs = []  # (unit index, window span, words' sub-token ids)
        budget = self.model.config.max_length - 2
        sentences = [(t, words) for t, text in enumerate(texts) for words in sentence_words(text)]
        pieces = word_pieces(self.tokenizer, [[texts[t][s:e] for s, e in words] for t, words in sentences])
        for (t, words), word_ids in zip(sentences, pieces):
            counts = [max(1, len(ids)) for ids in word_ids]  # at least 1, so a window always advances
            spans = windows(counts, self.window_words, self.window_stride, budget)
            units.append((t, words, spans))
            jobs.extend((len(units) - 1, span, word_ids[span[0]:span[1]], sum(counts[span[0]:span[1]]))
                        for span in spans)
        tag_lists = self._predict([j[2] for j in jobs], [j[3] for j in jobs])
        by_unit: dict[int, list[list[tuple[str, float]]]] = {}
        for (u, *_), tags in zip(jobs, tag_lists):
            by_unit.setdefault(u, []).append(tags)
        out: list[list[Entity]] = [[] for _ in texts]
        for u, (t, words, spans) in enumerate(units):
            tags, probs = zip(*merge_windows(len(words), spans, by_unit[u], ("O", 1.0)))
            sentence = (words[0][0], words[-1][1])
            for i, j, label in spans_from_tags(tags):
                confidence = span_confidence(probs, i, j)
                start, end = words[i][0], words[j - 1][1]
                state = self.negation.classify(texts[t], sentence, start, end)
                out[t].append(Mention(start, end, texts[t][start:end], label, label, negation=state,
                                      confidence=round(confidence, 4)))
        if self.mention_filter is not None:
            hints = list(legal) if legal is not None else [None] * len(texts)
            out = [self.mention_filter.filter(text, ms, legal=hint) for text, ms, hint in zip(texts, out, hints)]
        if self.min_confidence > 0:  # after the filter, so a repaired span is judged by its least sure word
            out = [[m for m in ms if m.confidence >= self.min_confidence] for ms in out]
        return [self.normalizer.normalize_document(text, ms) for text, ms in zip(texts, out)]

    def _predict(self, seqs: list[list[list[int]]], sizes: Sequence[int] | None = None) -> list[list[tuple[str, float]]]:
        """(tag, marginal probability) of each word of word sequences (each word as its sub-token ids,
        `word_pieces`), batched by length (`sizes`: sub-tokens, else words) so padding stays small."""
        self.model.eval()
        order = sorted(range(len(seqs)), key=lambda i: (sizes[i] if sizes is not None else 0, len(seqs[i])))
        result: list[list[tuple[str, float]]] = [[] for _ in seqs]

        def run(idx: list[int]) -> tuple[list[list[int]], list[list[float]]]:
            batch = encode_pieces(self.tokenizer, [seqs[i] for i in idx], self.model.config.max_length)
            with torch.inference_mode():  # grad mode is per thread: the pool's threads need it too
                return decode_with_confidence(self.model, {key: v.to(self.device) for key, v in batch.items()})

        batches = [order[k:k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        session = getattr(self.model.encoder, "session", None)  # an export's batches may run several at once
        for idx, (best, confidence) in zip(batches, session.map(run, batches) if session is not None
                                           else map(run, batches)):
            for i, ids, probs in zip(idx, best, confidence):
                result[i] = [(self.model.config.tags[x], p) for x, p in zip(ids, probs)]
        return result

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write encoder (save_pretrained layout), heads, tag set, config and lexicon to a directory."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.encoder.save_pretrained(path / "encoder")
        self.tokenizer.save_pretrained(path / "encoder")
        heads = {k: v for k, v in self.model.state_dict().items() if not k.startswith("encoder.")}
        torch.save(heads, path / "heads.pt")
        config = dict(self.model.config.__dict__, tags=list(self.model.config.tags))
        (path / TAGGER_FILE).write_text(json.dumps({"model": config, **(extra or {})}, indent=2), encoding="utf-8")
        self.normalizer.save(path / "lexicon.json")
        return path

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "BertCrfTagger":
        """Load a directory written by `save`; keyword arguments go to the constructor."""
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / TAGGER_FILE).is_file():
            raise ModelError(f"{str(path)!r} is not a tagger directory (no {TAGGER_FILE}); train one with "
                             f"`indexer train-ner` or point ner.model at one")
        meta = json.loads((path / TAGGER_FILE).read_text(encoding="utf-8"))
        config = ModelConfig(**dict(meta["model"], tags=tuple(meta["model"]["tags"])))
        model = CrfTaggerModel(AutoModel.from_pretrained(path / "encoder"), config)
        model.load_state_dict(torch.load(path / "heads.pt", map_location="cpu"), strict=False)
        tokenizer = AutoTokenizer.from_pretrained(path / "encoder")
        tagger = cls(model, tokenizer, Normalizer.load(path / "lexicon.json"), **kwargs)
        tagger.checksum = tagger_checksum(path)
        return tagger


def tagger_checksum(path: Path) -> str:
    """The checksum of every file of a tagger directory (heads.pt included), its card left out."""
    from indexer.embedder import model_checksum

    return model_checksum(path, suffixes=None, exclude=("medlex-model.json",))


def resolve_tagger_dir(settings) -> Path | None:
    """ner.model 'auto' -> the first tagger on the models search path, else None (gold mentions only); else that dir."""
    name = settings.ner.model
    if name == "auto":
        from indexer.registry import find

        found = find(settings, "tagger")
        return found.path if found is not None else None
    path = Path(name)
    if not (path / TAGGER_FILE).is_file():
        raise ModelError(f"ner.model {name!r} is not a tagger directory; use 'auto' or a dir from `indexer train-ner`")
    return path


class ExportedEncoder(nn.Module):
    """The tagger's transformer run by an ONNX Runtime or OpenVINO session: called and answering like the torch one."""

    def __init__(self, session, config):
        super().__init__()
        self.session, self.config = session, config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        feeds = {"input_ids": input_ids.cpu().numpy().astype("int64"),
                 "attention_mask": attention_mask.cpu().numpy().astype("int64")}
        return SimpleNamespace(last_hidden_state=torch.from_numpy(self.session.run(feeds)))


class ExportedHead:
    """The tagger's WordScorer run by an ONNX Runtime or OpenVINO session (fp32), called like it."""

    def __init__(self, session):
        self.session = session

    def __call__(self, hidden: torch.Tensor, first: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
        feeds = {"hidden": hidden.cpu().numpy().astype("float32", copy=False),
                 "first": first.cpu().numpy().astype("int64", copy=False),
                 "mirror": mirror.cpu().numpy().astype("int64", copy=False)}
        return torch.from_numpy(self.session.run(feeds))


def use_backend(tagger: BertCrfTagger, path: Path, settings, device: str, prepare: bool = True,
                calibration=None) -> BertCrfTagger:
    """Run the tagger's encoder on the configured backend and precision (ner.backend, ner.precision)."""
    from indexer.embedder import EXPORT_COMMAND, model_checksum
    from indexer.inference import Variant
    from indexer.inference.select import Choice, choice_for, open_variant, store_texts

    encoder_dir = Path(path) / "encoder"
    checksum = model_checksum(encoder_dir)
    exports = settings.models.exports_dir
    tagger.choice = choice_for(settings.ner.backend, settings.ner.precision, device, exports, checksum)
    session = open_variant("encoder", encoder_dir, checksum, tagger.choice, exports, settings.ner.threads, prepare,
                           calibration or (lambda: store_texts(settings.store.url or settings.index.dir)), EXPORT_COMMAND,
                           streams=settings.ner.streams)
    if session is not None:
        tagger.model.encoder = ExportedEncoder(session, tagger.model.encoder.config)
        # the BiLSTM + emission run fp32 on the same backend: in torch they cost as much as an int8 encoder
        # and their OpenMP threads fight the session's for the cores (docs/inference.md)
        head = Choice(Variant(tagger.choice.variant.backend, "fp32"), "the encoder's backend")
        tagger.model.head = ExportedHead(open_variant("head", Path(path), tagger.checksum.partition("+")[0], head,
                                                      exports, settings.ner.threads, prepare, list, EXPORT_COMMAND,
                                                      streams=session.streams))
    if not tagger.choice.variant.exact:  # int8/bf16 may tag differently: documents tagged in fp32 are tagged again
        tagger.checksum += f"+{tagger.choice.variant}"
    return tagger


def load_tagger(settings, prepare: bool = True, calibration=None) -> BertCrfTagger | None:
    """The configured tagger on the configured device and backend (with the legal stop list), or None when none is trained."""
    from indexer.legal_filter import LegalFilter
    from indexer.models import resolve_device

    path = resolve_tagger_dir(settings)
    if path is None:
        return None
    device = resolve_device(settings.ner.device)
    tagger = BertCrfTagger.load(path, negation=NegationDetector.load(scope_words=settings.ner.negation_scope_words),
                                batch_size=settings.ner.batch_size, window_words=settings.ner.window_words,
                                window_stride=settings.ner.window_stride, device=device,
                                mention_filter=LegalFilter.load(min_confidence=settings.ner.legal_min_confidence)
                                if settings.ner.legal_filter else None,
                                min_confidence=settings.ner.min_confidence)
    if tagger.mention_filter is not None:
        tagger.mention_filter.lexicon = tagger.normalizer  # forms the tagger knows are never taken for names
    use_backend(tagger, path, settings, device, prepare, calibration)
    if settings.ner.legal_filter:  # the filter changes what is found: documents tagged without it are tagged again
        # ("doc": legal documents get the legal rules by their court or doc_type, not only by their words)
        # "lex": known forms keep the general floor; then the stop list's own digest, so a relearned list re-tags
        tagger.checksum += f"+legal{settings.ner.legal_min_confidence:g}doc-lex-{tagger.mention_filter.digest()}"
    if settings.ner.min_confidence > 0:
        tagger.checksum += f"+conf{settings.ner.min_confidence:g}"
    return tagger
