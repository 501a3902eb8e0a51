"""Reuse a search: train its best config again (longer) through Ray Train, evaluate, export.

``python -m byol_tune.train --from-search EXPERIMENT_DIR [--max-epochs N] [--workers N]`` calls
:func:`train_best`; from Python, ``train_best(experiment, max_epochs=50)``.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from byol_tune.config import BYOLConfig, make_config, save_config
from byol_tune.core.build import build_run
from byol_tune.core.data import absolute_data_dir, check_batch_size, load_splits
from byol_tune.errors import ConfigError, reraised
from byol_tune.io import atomic_write, atomic_write_text, fresh_dir
from byol_tune.search.ray_train import (
    CHECKPOINT_NAME,
    Resources,
    init_ray,
    make_torch_trainer,
)
from byol_tune.search.results import best_config


@dataclass
class FinalModel:
    folder: Path
    metrics: dict[str, float]
    state_dict_path: Path
    torchscript_path: Path


def train_best(
    experiment: str | Path,
    max_epochs: int | None = None,
    workers: int = 1,
    overrides: dict[str, Any] | None = None,
) -> FinalModel:
    """Train the experiment's best config through the same TorchTrainer path as its trials."""
    import ray

    config = best_config(experiment)
    values = config.model_dump()
    if max_epochs is not None:
        values["max_epochs"] = max_epochs
    overrides = overrides or {}
    if max_epochs is not None and "max_epochs" in overrides:
        raise ConfigError("--set max_epochs: give the epochs once, with --max-epochs")
    values.update(overrides)
    values["data_dir"] = absolute_data_dir(values.get("data_dir"), Path.cwd())  # workers run elsewhere
    config = make_config(values, where=f"--from-search {experiment}")
    if workers < 1:
        raise ConfigError(f"--workers: must be >= 1, got {workers}")
    cores = os.cpu_count() or 1
    if workers > cores and torch.cuda.device_count() < workers:  # CPU workers, as train's devices
        raise ConfigError(f"--workers {workers}: more DDP processes than this machine's {cores} CPU cores")
    # data moved or deleted since the search, or a batch too large: fails here, before any folder or Ray
    check_batch_size(load_splits(config), config.batch_size)
    folder = fresh_dir(Path(experiment).resolve(), "final")
    save_config(config, folder / "config.yaml")
    init_ray(None)
    try:
        cpus = Resources.share_cpus(ray.cluster_resources().get("CPU", 1.0), workers)
        gpus = ray.cluster_resources().get("GPU", 0.0)
        resources = Resources(
            workers=workers, cpus_per_worker=cpus, gpus_per_worker=1.0 if gpus >= workers else 0.0
        )
        trainer = make_torch_trainer(
            config, resources, storage_path=str(folder), name="train", log_dir=str(folder)
        )
        try:
            result = _fit_interruptibly(trainer)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(
                f"the final training in {folder} stopped before it finished; no model exported there"
            ) from None
        except ray.train.TrainingFailedError as exc:  # a worker's user error (an unreadable image): its line
            error = reraised(str(exc))
            if error is None:
                raise
            raise error from None
        if result.checkpoint is None:
            raise ConfigError(f"{folder}: training reported no checkpoint ({result.error})")
        with result.checkpoint.as_directory() as ckpt_dir:
            state = torch.load(Path(ckpt_dir) / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    finally:
        ray.shutdown()
    return export(config, state["state_dict"], folder)


def _fit_interruptibly(trainer: Any) -> Any:
    """``trainer.fit()`` in a helper thread. Ray Train registers its own Ctrl-C handler when it runs in
    the main thread, and that ends the process with exit code 1 and no word of what happened; from
    here a Ctrl-C stays a KeyboardInterrupt of the main thread, and the caller's ``ray.shutdown()``
    stops the run."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:  # handed to the main thread as it is
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="final-training", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)  # a short wait, so that a Ctrl-C is raised here promptly
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def export(config: BYOLConfig, state_dict: dict[str, torch.Tensor], folder: Path) -> FinalModel:
    """Evaluate (kNN, RankMe, linear probe) and export the backbone as a state_dict and TorchScript."""
    parts = build_run(config)
    module = parts.module
    module.load_state_dict(state_dict)
    module.eval()
    results = parts.knn.final_metrics(None, module, linear=True)
    backbone = module.backbone.cpu().eval()
    state_path, script_path = folder / "backbone.pt", folder / "backbone_torchscript.pt"
    backbone_state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    atomic_write(state_path, lambda tmp: torch.save(backbone_state, tmp))
    example = module.cpu().prepare(_example_input(parts.splits.val))
    with warnings.catch_warnings():  # torch 2.14 calls TorchScript deprecated; the export is documented
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        scripted = torch.jit.trace(backbone, example)
        atomic_write(script_path, lambda tmp: torch.jit.save(scripted, str(tmp)))
    # the shape of a plain run's metrics.json ({"metrics": ..., "history": ...}), without the history,
    # which stayed with the Train workers
    atomic_write_text(folder / "metrics.json", json.dumps({"metrics": results}, indent=2))
    return FinalModel(
        folder=folder, metrics=results, state_dict_path=state_path, torchscript_path=script_path
    )


def _example_input(dataset: Any) -> torch.Tensor:
    from byol_tune.core.data import eval_loader

    x, _ = next(iter(eval_loader(dataset, range(min(2, len(dataset))))))
    return x
