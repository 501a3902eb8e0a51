"""Linear probe on cached, frozen backbone features: the final model's standard evaluation.

Features are standardised with the train split's statistics, then a single linear layer is trained with
AdamW and a cosine schedule on full-batch-shuffled minibatches. Pure torch, no scikit-learn.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    val_x: Tensor,
    val_y: Tensor,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 512,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> float:
    """Val top-1 accuracy (%) of a linear classifier trained on ``train_x`` (also under ``no_grad``)."""
    if train_x.shape[0] == 0 or val_x.shape[0] == 0:
        raise ValueError("linear probe needs non-empty train and val features")
    generator = torch.Generator().manual_seed(seed)
    train_x, val_x = train_x.detach().float(), val_x.detach().float()
    mean = train_x.mean(dim=0, keepdim=True)  # (1, D)
    std = train_x.std(dim=0, keepdim=True).clamp_min(1e-6)
    train_x = (train_x.float() - mean) / std
    val_x = (val_x.float() - mean) / std
    classifier = nn.Linear(train_x.shape[1], num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier.reset_parameters()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(train_x.shape[0] / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(train_x.shape[0], generator=generator)
            for start in range(0, train_x.shape[0], batch_size):
                idx = order[start : start + batch_size]
                loss = loss_fn(classifier(train_x[idx]), train_y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
    with torch.no_grad():
        predicted = classifier(val_x).argmax(dim=1)
    return float((predicted == val_y).float().mean()) * 100
