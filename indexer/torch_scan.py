"""An exact inner-product scan of an index's vectors with torch: the GPU copy when faiss-gpu is absent.

faiss-gpu is not on PyPI for every CUDA and cannot be carried to every GPU machine, while torch
with CUDA usually is. A flat scan is one matrix-vector product and a top-k, which a GPU does in
well under a millisecond at 100,000 x 384, and being exact it answers filtered queries too (a
mask, not a FAISS id selector, which FAISS ignores on GPU indexes). `FaissIndex.to_gpu` makes
one; the CPU index stays the one of record.
"""
from __future__ import annotations

import numpy as np


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


class TorchScan:
    """Row vectors on a torch device; `search` returns the exact top k rows of one query, optionally masked."""

    def __init__(self, matrix: np.ndarray, device: str = "cuda"):
        import torch

        self.device = torch.device(device)
        self.vectors = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32)).to(self.device)

    @property
    def rows(self) -> int:
        return int(self.vectors.shape[0])

    def search(self, q: np.ndarray, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k best rows by inner product, best first, within a boolean row `mask`."""
        import torch

        query = torch.from_numpy(np.ascontiguousarray(q, dtype=np.float32).reshape(-1)).to(self.device)
        with torch.inference_mode():
            scores = self.vectors @ query
            n = self.rows
            if mask is not None:
                allowed = torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)).to(self.device)
                scores = scores.masked_fill(~allowed, float("-inf"))
                n = int(np.count_nonzero(mask))
            k = min(k, n)
            if k <= 0:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            top = torch.topk(scores, k)
        return top.values.cpu().numpy().astype(np.float32), top.indices.cpu().numpy().astype(np.int64)
