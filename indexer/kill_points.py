"""Named points in the writers where the crash test kills the process (tests/test_crash.py).

With MEDLEX_KILL_AT=NAME or NAME:N in the environment, the N-th time (default the first) a
writer reaches `reached(NAME)` it sends itself SIGKILL: no cleanup, no finally blocks, exactly
what a power cut or the OOM killer leaves behind. Unset (always, outside that test) it is a
dictionary lookup.
"""
from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "MEDLEX_KILL_AT"
_passes: Counter = Counter()


def reached(point: str) -> None:
    """SIGKILL this process if MEDLEX_KILL_AT names `point` and this is its N-th pass."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _passes[point] += 1
    if _passes[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
