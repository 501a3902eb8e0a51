"""Projector and predictor MLPs.

BYOL (Grill et al., 2020, Sec. 3.3): "a multi-layer perceptron (MLP) consisting in a linear layer with
output size 4096 followed by batch normalization, rectified linear units (ReLU), and a final linear
layer with output dimension 256". The predictor uses the same architecture, so one block serves both.
"""

from __future__ import annotations

from torch import Tensor, nn


class MLPHead(nn.Sequential):
    """Linear -> BatchNorm1d -> ReLU -> Linear; the projector and predictor of BYOL."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        for name, value in (
            ("input_dim", input_dim),
            ("hidden_dim", hidden_dim),
            ("output_dim", output_dim),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        super().__init__(
            nn.Linear(input_dim, hidden_dim, bias=False),  # bias is redundant before BN
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim),
        )
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(start_dim=1))  # (B, output_dim)
