"""CRF marginals by forward-backward against brute force, span confidence, and the tagger's threshold."""
from __future__ import annotations

import itertools

import pytest
import torch

from indexer.ner_confidence import crf_marginals, span_confidence


def _brute_marginals(emissions, start, end, transitions, n):
    """P(tag_t = j) by enumerating every tag sequence of the first n words."""
    tags = emissions.size(-1)
    out = torch.zeros(n, tags, dtype=torch.float64)
    total = 0.0
    for seq in itertools.product(range(tags), repeat=n):
        score = start[seq[0]] + emissions[0, seq[0]] + end[seq[-1]]
        score = score + sum(transitions[a, b] + emissions[t + 1, b] for t, (a, b) in enumerate(zip(seq, seq[1:])))
        weight = float(torch.exp(score))
        total += weight
        for t, j in enumerate(seq):
            out[t, j] += weight
    return out / total


def test_marginals_match_enumeration_with_padding():
    torch.manual_seed(0)
    tags, length = 3, 4
    emissions = torch.randn(2, length, tags, dtype=torch.float64)
    start, end = torch.randn(tags, dtype=torch.float64), torch.randn(tags, dtype=torch.float64)
    transitions = torch.randn(tags, tags, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)  # the second sentence has 2 words
    got = crf_marginals(emissions, mask, start, end, transitions)
    for b, n in ((0, 4), (1, 2)):
        want = _brute_marginals(emissions[b], start, end, transitions, n)
        assert torch.allclose(got[b, :n], want, atol=1e-9)
        assert torch.allclose(got[b, :n].sum(-1), torch.ones(n, dtype=torch.float64))


def test_a_strong_transition_penalty_moves_the_marginal():
    # Emissions favour tag 1 at word 1 a little, but 0 -> 1 is almost forbidden and word 0 is surely 0.
    emissions = torch.tensor([[[5.0, -5.0], [0.0, 0.5]]])
    transitions = torch.tensor([[0.0, -20.0], [0.0, 0.0]])
    zero = torch.zeros(2)
    got = crf_marginals(emissions, torch.ones(1, 2, dtype=torch.bool), zero, zero, transitions)
    assert got[0, 1, 0] > 0.99  # without the CRF the softmax would give tag 1 0.62


def test_span_confidence_is_the_least_sure_word():
    assert span_confidence([0.99, 0.4, 0.8, 0.97], 1, 3) == 0.4
    assert span_confidence([0.99, 0.4, 0.8, 0.97], 2, 4) == 0.8
    assert span_confidence([0.9], 0, 0) == 0.0


def test_the_tagger_keeps_mentions_at_or_above_its_floor(tiny_bert):
    """Every word is B-Disease with marginal e/(e+1+3e^-10) = 0.731: a floor of 0.7 keeps them, 0.75 drops them."""
    from tests.test_ner import TAGS, tiny_tagger

    tagger = tiny_tagger(tiny_bert)
    with torch.no_grad():
        tagger.model.emission.weight.zero_()
        tagger.model.emission.bias.fill_(-10.0)
        tagger.model.emission.bias[TAGS.index("O")] = 0.0
        tagger.model.emission.bias[TAGS.index("B-Disease")] = 1.0
        for p in tagger.model.crf.parameters():
            p.zero_()
    text = "fever and cough"
    found = tagger.tag([text])[0]
    assert [m.text for m in found] == ["fever", "and", "cough"]
    assert all(m.confidence == pytest.approx(0.7311, abs=1e-3) for m in found)
    tagger.min_confidence = 0.7
    assert len(tagger.tag([text])[0]) == 3
    tagger.min_confidence = 0.75
    assert tagger.tag([text])[0] == []


def test_sweep_scores_each_threshold_from_one_pass():
    from indexer.documents import Document, Mention
    from indexer.train.ner import parse_thresholds, sweep
    from indexer.errors import ConfigError

    text = "He had fever and took aspirin."
    doc = Document("d", "", text, {"split": "x"}, [Mention(7, 12, "fever", "Disease")])
    found = [[Mention(7, 12, "fever", "Disease", confidence=0.95), Mention(22, 29, "aspirin", "Disease",
                                                                            confidence=0.6)]]
    table = sweep([doc], found, [0.0, 0.9], by="split")
    assert table["0"]["all"]["micro"]["precision"] == 0.5 and table["0.9"]["all"]["micro"]["precision"] == 1.0
    assert table["0.9"]["x"]["micro"]["recall"] == 1.0
    assert parse_thresholds("0.5, 0.8") == [0.5, 0.8]
    for bad in ("0.5,x", "1.5", ""):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            parse_thresholds(bad)
