"""Fusion rules on hand-made rankings: every expected score is worked out in the comments."""
from __future__ import annotations

import pytest

from indexer.errors import ConfigError
from searchd import fusion

DENSE = [(1, 10, 0.9), (2, 20, 0.5), (3, 30, 0.1)]  # (document, best chunk, score)
KEYWORD = [(2, 21, 12.0), (4, 40, 6.0), (1, 11, 0.0)]


def test_rrf_sums_weighted_reciprocal_ranks():
    # k = 1: doc 1 = 1/2 + 1/4 = .75; doc 2 = 1/3 + 1/2 = .8333; doc 3 = 1/4; doc 4 = 1/3
    got = fusion.rrf([DENSE, KEYWORD], [1.0, 1.0], k=1)
    assert [d for d, _, _ in got] == [2, 1, 4, 3]
    assert [s for _, _, s in got] == pytest.approx([1 / 3 + 1 / 2, 1 / 2 + 1 / 4, 1 / 3, 1 / 4])
    assert dict((d, c) for d, c, _ in got) == {2: 21, 1: 10, 4: 40, 3: 30}  # chunk of the larger part


def test_minmax_combsum_scales_each_ranking_to_unit_range():
    # dense: (s - .1) / .8 -> 1: 1, 2: .5, 3: 0; keyword: s / 12 -> 2: 1, 4: .5, 1: 0; absent = 0
    # weights 2:1 -> 1: 2, 2: 1 + 1 = 2, 3: 0, 4: .5; the tie 1-2 goes to the smaller id
    got = fusion.fuse([DENSE, KEYWORD], [2.0, 1.0], "minmax")
    assert [(d, round(s, 9)) for d, _, s in got] == [(1, 2.0), (2, 2.0), (4, 0.5), (3, 0.0)]


def test_zscore_combsum_gives_a_missing_document_the_rankings_lowest_z():
    # dense mean .5, sd sqrt(.32/3): z = +1.2247, 0, -1.2247; keyword mean 6, sd sqrt(72/3): +1.2247, 0, -1.2247
    z = 1.5 ** 0.5
    got = dict((d, s) for d, _, s in fusion.fuse([DENSE, KEYWORD], [1.0, 1.0], "zscore"))
    assert got[1] == pytest.approx(z - z)
    assert got[2] == pytest.approx(0 + z)
    assert got[3] == pytest.approx(-z + -z)  # absent from keyword: its minimum z
    assert got[4] == pytest.approx(-z + 0)


def test_constant_and_empty_rankings_do_not_divide_by_zero():
    flat = [(5, 50, 3.0), (6, 60, 3.0)]
    assert [d for d, _, _ in fusion.fuse([flat, []], [1.0, 1.0], "minmax")] == [5, 6]
    assert [s for _, _, s in fusion.fuse([flat, []], [1.0, 1.0], "zscore")] == [0.0, 0.0]


def test_unknown_rule_names_the_valid_ones():
    with pytest.raises(ConfigError, match="'minmax', 'rrf', 'zscore'"):
        fusion.fuse([DENSE], [1.0], "borda")


def test_document_scores_from_chunks_by_hand():
    """fusion-study's chunk-to-document rules on hand-made chunks of three documents."""
    import numpy as np

    from searchd.eval.fusion_study import _aggregate

    ids = np.array([1, 2, 3, 4, 5, 6])  # chunks 1-3 of document row 0, 4-5 of row 1, 6 of row 2
    scores = np.array([0.5, 0.4, 0.3, 0.6, 0.1, 0.45])
    rows = np.array([0, 0, 0, 1, 1, 2])
    first = np.array([True, False, False, True, False, True])
    # max: row 1 .6 (chunk 4), row 0 .5, row 2 .45
    assert _aggregate(ids, scores, rows, first, "max") == [(1, 4, 0.6), (0, 1, 0.5), (2, 6, 0.45)]
    # sum of the best 2: row 0 .9, row 1 .7, row 2 .45; sum3: row 0 1.2
    assert [(d, round(s, 9)) for d, _, s in _aggregate(ids, scores, rows, first, "sum2")] == [(0, 0.9), (1, 0.7), (2, 0.45)]
    assert round(_aggregate(ids, scores, rows, first, "sum3")[0][2], 9) == 1.2
    # first chunk x1.1: row 1 .66, row 0 .55, row 2 .495; a negative first chunk is divided instead
    assert [(d, round(s, 9)) for d, _, s in _aggregate(ids, scores, rows, first, "first")] == [(1, 0.66), (0, 0.55), (2, 0.495)]
    # -1.05 / 1.1 = -0.955 beats -1.0: the boost lifts a negative first chunk too (max alone ranks row 1 first)
    assert _aggregate(np.array([7, 8]), np.array([-1.05, -1.0]), np.array([0, 1]), np.array([True, False]), "first")[0][0] == 0
    assert _aggregate(np.array([7, 8]), np.array([-1.05, -1.0]), np.array([0, 1]), np.array([True, False]), "max")[0][0] == 1
