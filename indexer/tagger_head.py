"""The tagger after its encoder, at inference: first sub-tokens, BiLSTM, emission and CRF decoding.

torch on the CPU made this part cost as much as an int8 encoder: a packed BiLSTM runs about 3x
slower than an unpacked one, and each of pytorch-crf's per-step Viterbi ops wakes torch's
OpenMP threads, which fight an ONNX Runtime or OpenVINO session for the same cores (on shared
cores a batch took seconds instead of milliseconds). So the BiLSTM runs unpacked in both
directions (`bilstm`), `WordScorer` is one graph that the encoder's backend runs (exported as
kind "head", fp32), and the Viterbi search is numpy (`viterbi`). Outputs equal the packed torch
model's to float rounding (tests/test_ner.py).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mirror_index(word_mask: torch.Tensor) -> torch.Tensor:
    """(batch, words) position of each word mirrored within its sentence; padding maps to itself."""
    lengths = word_mask.sum(1, keepdim=True)
    t = torch.arange(word_mask.size(1), device=word_mask.device).unsqueeze(0)
    return torch.where(t < lengths, lengths - 1 - t, t)


def bilstm(lstm: nn.LSTM, words: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """A one-layer bidirectional LSTM over padded word vectors, each direction run unpacked.

    The forward direction meets padding only after a sentence's last word; the backward one reads
    each sentence mirrored within its length (`mirror_index`), so its padding comes last too. The
    real words get what packing gives (to float rounding, 1e-7), about 3x faster than packed on
    the CPU, and the graph exports to ONNX/OpenVINO (LSTM ops); padded positions hold junk the
    CRF mask ignores.
    """
    h0 = words.new_zeros(1, words.size(0), lstm.hidden_size)
    run = lambda x, suffix: torch.lstm(  # noqa: E731
        x, (h0, h0), [getattr(lstm, f"{n}_l0{suffix}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")],
        True, 1, 0.0, lstm.training, False, True)[0]
    index = mirror.unsqueeze(-1)
    forward = run(words, "")
    backward = run(words.gather(1, index.expand(-1, -1, words.size(-1))), "_reverse")
    return torch.cat([forward, backward.gather(1, index.expand(-1, -1, backward.size(-1)))], dim=-1)


class WordScorer(nn.Module):
    """The tagger after its encoder at inference (first sub-tokens, BiLSTM, emission): exported as one graph."""

    def __init__(self, lstm: nn.LSTM | None, emission: nn.Linear):
        super().__init__()
        self.lstm, self.emission = lstm, emission

    def forward(self, hidden: torch.Tensor, first: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
        words = hidden.gather(1, first.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))
        return self.emission(bilstm(self.lstm, words, mirror) if self.lstm is not None else words)


def viterbi(scores: np.ndarray, mask: np.ndarray, crf) -> list[list[int]]:
    """The CRF's best tag ids per sequence (pytorch-crf's Viterbi, same sums in the same order, in numpy)."""
    start, end, moves = (getattr(crf, n).detach().cpu().numpy() for n in
                         ("start_transitions", "end_transitions", "transitions"))
    batch, width, _ = scores.shape
    score = start + scores[:, 0]
    history = np.zeros((max(width - 1, 0), batch, len(start)), dtype=np.int64)
    for i in range(1, width):
        step = score[:, :, None] + moves + scores[:, i, None, :]  # (batch, previous tag, next tag)
        history[i - 1] = step.argmax(1)
        score = np.where(mask[:, i, None], step.max(1), score)
    score = score + end
    out = []
    for b, length in enumerate(mask.sum(1)):
        tags = [int(score[b].argmax())]
        for i in range(int(length) - 2, -1, -1):
            tags.append(int(history[i, b, tags[-1]]))
        out.append(tags[::-1])
    return out
