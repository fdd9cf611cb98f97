"""Cross-validated choice of a variant: hand-made per-query scores, expected choices worked out in comments."""
from __future__ import annotations

import numpy as np
import pytest

from searchd.eval.crossval import assign_folds, cross_validate

# A is best on q1 only; B is better on average (.375 vs .25), so tuning on all four picks B
SCORES = {"A": {"q1": 1.0, "q2": 0.0, "q3": 0.0, "q4": 0.0},
          "B": {"q1": 0.0, "q2": 0.5, "q3": 0.5, "q4": 0.5}}


def test_leave_one_out_scores_each_query_by_the_variant_best_without_it():
    cv = cross_validate(SCORES)
    # without q1: A 0, B .5 -> B, which scores 0 on q1
    # without q2 (or q3, q4): A (1 + 0 + 0) / 3 = B (0 + .5 + .5) / 3 -> the tie goes to A, 0 on the held-out query
    assert cv.chosen == {"q1": "B", "q2": "A", "q3": "A", "q4": "A"}
    assert cv.scores == {"q1": 0.0, "q2": 0.0, "q3": 0.0, "q4": 0.0}  # far below the tuned .375
    assert cv.counts() == [("A", 3), ("B", 1)]


def test_k_fold_picks_on_the_other_folds():
    rng = np.random.default_rng(0)
    scores = {v: {f"q{i}": float(rng.random()) for i in range(10)} for v in "ABC"}
    cv = cross_validate(scores, folds=2, seed=7)
    fold = assign_folds(list(scores["A"]), 2, seed=7)
    assert sorted(fold.values()) == [0] * 5 + [1] * 5
    assert cross_validate(scores, folds=2, seed=7) == cv  # seeded
    for q, v in cv.chosen.items():
        train = [p for p in fold if fold[p] != fold[q]]
        means = {u: np.mean([scores[u][p] for p in train]) for u in scores}
        assert v == max(means, key=means.get)  # the best variant on the other fold
        assert cv.scores[q] == scores[v][q]


def test_leave_one_out_is_one_query_per_fold():
    assert sorted(assign_folds(["b", "a", "c"], 0).items()) == [("a", 0), ("b", 1), ("c", 2)]


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="at least one variant"):
        cross_validate({})
    with pytest.raises(ValueError, match="'B' scores other queries"):
        cross_validate({"A": {"q1": 1.0}, "B": {"q2": 1.0}})
    with pytest.raises(ValueError, match="folds must be 0"):
        cross_validate(SCORES, folds=1)
    with pytest.raises(ValueError, match="folds must be 0"):
        cross_validate(SCORES, folds=5)
