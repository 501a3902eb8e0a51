"""The BYOL loss: normalized mean squared error between online predictions and target projections.

Grill et al. (2020), Eq. 2: ``||q̄ - z̄'||² = 2 - 2 cos(q, z')``, symmetrised over the two view orders
(Eq. 4). We average the two orders instead of summing them, so the loss lies in [0, 4].
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def normalized_mse(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean over the batch of ``2 - 2 cos(prediction, target)``; gradients never reach ``target``."""
    prediction = F.normalize(prediction, dim=-1)  # (B, D)
    target = F.normalize(target.detach(), dim=-1)  # (B, D)
    return (2 - 2 * (prediction * target).sum(dim=-1)).mean()


def byol_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """Symmetric loss: online prediction of each view regresses the target projection of the other."""
    return 0.5 * (normalized_mse(p1, z2) + normalized_mse(p2, z1))


class NormalizedMSELoss(nn.Module):
    """Module form of :func:`normalized_mse`, usable as a ``criterion(prediction, target)``."""

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return normalized_mse(prediction, target)
