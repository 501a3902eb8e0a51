"""A Ray Train trial with 2 CPU workers (DDP over gloo): both ranks end with identical weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from tiny import TINY, DumpWeights, assert_ranks_identical

from byol_tune import metrics
from byol_tune.config import make_config
from byol_tune.search.ray_train import CHECKPOINT_NAME, Resources, init_ray, make_torch_trainer


@pytest.mark.slow
@pytest.mark.ddp
def test_ray_trial_with_two_workers_keeps_ranks_identical(tmp_path: Path) -> None:
    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules["tiny"])  # workers cannot import tests/
    saved_env = dict(os.environ)
    init_ray(None, num_cpus=2)
    try:
        config = make_config({**TINY, "linear_probe": False})
        trainer = make_torch_trainer(
            config,
            Resources(workers=2, cpus_per_worker=0.5),
            storage_path=str(tmp_path / "ray"),
            name="two_workers",
            worker_callbacks=[DumpWeights(tmp_path)],
        )
        result = trainer.fit()
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved_env)
    assert result.error is None
    assert_ranks_identical(tmp_path)
    # the reported checkpoint is rank 0's final module, and the last report carries the objective
    assert result.checkpoint is not None and metrics.KNN_TOP1 in result.metrics
    with result.checkpoint.as_directory() as folder:
        state = torch.load(Path(folder) / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)["state"]
    for key, value in rank0.items():
        assert torch.equal(state["state_dict"][key], value), key
