"""FTS5 highlight markers become character spans of the unmarked text (indexer/store/reads.py)."""
import random

from indexer.store.reads import _marker_spans


def spans_by_characters(marked):
    """The plain per-character reading the marker scan replaced: the reference."""
    spans, plain, start = [], 0, None
    for ch in marked:
        if ch == "\x01":
            start = plain
        elif ch == "\x02":
            if start is not None:
                spans.append((start, plain))
            start = None
        else:
            plain += 1
    return spans


def test_marker_spans_match_the_character_reading():
    assert _marker_spans("a \x01knee\x02 and \x01hip\x02") == [(2, 6), (11, 14)]
    assert _marker_spans("no markers") == [] and _marker_spans("") == []
    rng = random.Random(7)
    for _ in range(5000):  # unbalanced and repeated markers included
        text = "".join(rng.choice("ab \x01\x02") for _ in range(rng.randint(0, 40)))
        assert _marker_spans(text) == spans_by_characters(text), repr(text)
