"""Metric names, defined once and imported by the callback, the trainer, Tune and reports."""

from __future__ import annotations

KNN_TOP1 = "knn_top1"
"""The search objective: weighted kNN top-1 accuracy (%) of backbone features on the val split."""
KNN_TOP5 = "knn_top5"
RANKME = "rankme"
"""Label-free objective: effective rank of val-split embeddings (Garrido et al., 2023)."""
LINEAR_TOP1 = "linear_top1"
LOSS = "loss"
TAU = "tau"
LR = "lr"

OBJECTIVES = (KNN_TOP1, RANKME)

KNN_MIN_TEMPERATURE = 0.0125
"""The smallest kNN temperature T computed: exp(1 / T) = 5.5e34, so even 6,000 votes of similarity 1 sum
below float32's largest value (3.4e38); below about 1/88, exp alone overflows and every vote is inf."""
