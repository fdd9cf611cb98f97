"""How sure the tagger is of each word's tag: CRF marginals by forward-backward, or the softmax.

Viterbi gives the best tag sequence but not how much better it is than the next. The forward-backward
algorithm gives, for every word, the probability of each tag summed over all tag sequences the CRF
allows (its marginal). A mention's confidence is the smallest marginal of its words' decoded tags:
one unsure word makes an unsure span. Without a CRF the per-word softmax plays the same part.
"""
from __future__ import annotations

import torch

from indexer.tagger_head import viterbi


def crf_marginals(emissions: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
                  transitions: torch.Tensor) -> torch.Tensor:
    """P(tag at word t = j | sentence), (batch, words, tags), for a linear-chain CRF.

    `transitions[i, j]` scores tag i followed by tag j (pytorch-crf's layout); `mask` marks each
    sequence's words, which start at position 0 and are contiguous. Positions past a sequence's end
    hold no meaningful value.
    """
    batch, length, _ = emissions.shape
    mask = mask.bool()
    alpha = [start + emissions[:, 0]]
    for t in range(1, length):
        step = torch.logsumexp(alpha[-1].unsqueeze(2) + transitions.unsqueeze(0), dim=1) + emissions[:, t]
        alpha.append(torch.where(mask[:, t:t + 1], step, alpha[-1]))
    log_z = torch.logsumexp(alpha[-1] + end, dim=1)  # alpha carried past the end equals the last word's
    beta = [end.expand(batch, -1)] * length
    for t in range(length - 2, -1, -1):
        step = torch.logsumexp(transitions.unsqueeze(0) + (emissions[:, t + 1] + beta[t + 1]).unsqueeze(1), dim=2)
        beta[t] = torch.where(mask[:, t + 1:t + 2], step, end.expand(batch, -1))
    log_marginal = torch.stack(alpha, 1) + torch.stack(beta, 1) - log_z.view(batch, 1, 1)
    return log_marginal.exp()


@torch.inference_mode()
def decode_with_confidence(model, batch: dict[str, torch.Tensor]) -> tuple[list[list[int]], list[list[float]]]:
    """Best tag ids per word (as `model.decode`) and each chosen tag's marginal probability."""
    scores = model.emissions(batch)
    mask = batch["word_mask"]
    if model.crf is not None:
        crf = model.crf
        best = viterbi(scores.numpy(), mask.numpy(), crf)  # numpy, as model.decode
        probs = crf_marginals(scores, mask, crf.start_transitions, crf.end_transitions, crf.transitions)
    else:
        probs = scores.softmax(-1)
        best = [row[: int(mask[i].sum())].tolist() for i, row in enumerate(scores.argmax(-1))]
    chosen = [[float(probs[b, t, tag]) for t, tag in enumerate(ids)] for b, ids in enumerate(best)]
    return best, chosen


def span_confidence(word_probs: list[float], i: int, j: int) -> float:
    """A mention's confidence: the least sure of its words [i, j)."""
    return min(word_probs[i:j]) if j > i else 0.0
