"""Two views of feature vectors (Edifice-style vector BYOL): feature dropout plus gaussian noise."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class VectorTwoViews(nn.Module):
    """Each view keeps every feature with probability ``1 - mask_p`` and adds N(0, noise_std^2)."""

    def __init__(self, noise_std: float = 0.1, mask_p: float = 0.2) -> None:
        super().__init__()
        if noise_std < 0:
            raise ValueError(f"vector_noise_std must be >= 0, got {noise_std}")
        if not 0 <= mask_p < 1:
            raise ValueError(f"vector_mask_p must lie in [0, 1), got {mask_p}")
        self.noise_std = noise_std
        self.mask_p = mask_p

    def view(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        keep = torch.rand(x.shape, device=x.device, generator=generator) >= self.mask_p  # (B, D)
        noise = torch.randn(x.shape, device=x.device, generator=generator) * self.noise_std
        return x.float() * keep + noise

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        return self.view(x, generator), self.view(x, generator)
