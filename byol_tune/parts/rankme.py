"""RankMe (Garrido et al., ICML 2023): the effective rank of an embedding matrix.

``rankme = exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / ||sigma||_1 + eps`` over the singular values of
the ``(N, D)`` embeddings. It needs no labels and correlates with downstream accuracy, so it serves as
the search objective on unlabelled data.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def rankme(embeddings: Tensor, eps: float = 1e-7) -> float:
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"rankme needs a non-empty (N, D) matrix, got shape {tuple(embeddings.shape)}")
    sigma = torch.linalg.svdvals(embeddings.double())  # (min(N, D),)
    p = sigma / sigma.sum().clamp_min(eps) + eps
    return float(torch.exp(-(p * p.log()).sum()))
