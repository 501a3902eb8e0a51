"""The plain trainer: ``fit(config) -> FitResult`` on CPU or GPU, no Ray involved.

Writes into a fresh run folder (never reusing one): ``config.yaml`` (complete, reloadable),
TensorBoard logs, ``checkpoints/`` (best by the objective, and last), ``backbone.pt`` (a plain
state_dict of the online backbone) and ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from byol_tune import metrics
from byol_tune.config import BYOLConfig, make_config, save_config
from byol_tune.core.build import build_run, hparams, quiet_dependency_output
from byol_tune.errors import ByolTuneError, CheckpointError, ConfigError, reason
from byol_tune.io import atomic_write, atomic_write_text, fresh_dir

RUN_DIR_ENV = "BYOL_TUNE_RUN_DIR"  # lets DDP ranks launched by Lightning share rank 0's run folder


@dataclass
class FitResult:
    run_dir: Path
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    backbone_path: Path | None = None
    global_rank: int = 0  # under DDP every process returns one; rank 0 wrote the files


def _safe_load(path: str | Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` of ``path``, else one clear error line naming ``what``."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder, not a {what} file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what} file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        global_name = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if global_name:  # torch's advice, to load it unsafely, is not ours to give
            why = f"it holds a {global_name[1]}, which could run code when loaded; refused"
        elif isinstance(exc, KeyError | EOFError | pickle.UnpicklingError):  # bytes torch.save never wrote
            why = "not a file written by torch.save, or cut short"
        else:
            why = reason(exc)
        raise CheckpointError(f"{path}: not a loadable {what} ({why})") from None


def check_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint that loads with ``weights_only=True``, else one clear error line."""
    data = _safe_load(path, "checkpoint")
    if not isinstance(data, dict) or "state_dict" not in data:
        raise CheckpointError(f"{path}: not a Lightning checkpoint (no state_dict)")
    return data


def check_resume(path: str | Path, data: dict[str, Any], module: L.LightningModule, max_epochs: int) -> None:
    """The checkpoint fits the configured model and optimizer and leaves epochs to train; else one line
    (Lightning's own errors come as a size-mismatch traceback, a KeyError or an IndexError)."""
    ours = module.state_dict()
    saved = data["state_dict"]
    for key in sorted(set(ours) | set(saved)):
        if key not in saved or key not in ours:
            where = "the checkpoint" if key not in saved else "this config's model"
            raise CheckpointError(f"{path}: does not fit this config: {key} is missing from {where}")
        if tuple(saved[key].shape) != tuple(ours[key].shape):
            raise CheckpointError(
                f"{path}: does not fit this config: {key} is {tuple(saved[key].shape)} there, "
                f"{tuple(ours[key].shape)} here"
            )
    optimizer = data.get("hyper_parameters", {}).get("optimizer")
    if optimizer is not None and optimizer != module.hparams.get("optimizer", optimizer):
        raise CheckpointError(
            f"{path}: trained with optimizer {optimizer!r}, this config has {module.hparams['optimizer']!r}"
        )
    progress = data.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("total", {})
    done = progress.get("processed", data.get("epoch", -1) + 1)
    if isinstance(done, int) and done >= max_epochs:
        raise CheckpointError(
            f"{path}: already trained {done} epoch(s); set max_epochs above that to train on"
        )


def load_backbone_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Load an exported ``backbone.pt`` (a plain state_dict) safely."""
    state = _safe_load(path, "state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state_dict, got {type(state).__name__}")
    return state


class ObjectiveCheckpoint(ModelCheckpoint):
    """Keeps the best checkpoint by the objective, considered only at epochs that evaluated it."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.monitor in trainer.callback_metrics:
            super().on_train_epoch_end(trainer, pl_module)


def make_run_dir(config: BYOLConfig) -> Path:
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
        return Path(inherited)
    run_dir = fresh_dir(Path(config.output_dir), config.name)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def _resume_hint(run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return f"no epoch finished, nothing to resume in {run_dir}"
    config = shlex.quote(str(run_dir / "config.yaml"))
    return f"continue with: python -m byol_tune.train --config {config} --resume {shlex.quote(str(last))}"


def fit(
    config: BYOLConfig | dict[str, Any],
    resume_from: str | Path | None = None,
    progress_bar: bool = True,
    callbacks: list[L.Callback] | None = None,
) -> FitResult:
    """Train BYOL as configured and evaluate it; returns the final metrics and the files written."""
    if not isinstance(config, BYOLConfig):
        config = make_config(config)
    resume = check_checkpoint(resume_from) if resume_from is not None else None
    cores = os.cpu_count() or 1
    on_cpu = config.accelerator == "cpu" or (config.accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and config.devices > cores:  # a process per device: 64 on 2 cores made no progress in 90 s
        raise ConfigError(f"devices: {config.devices} CPU processes on a machine with {cores} cores")
    if config.sync_batchnorm and config.devices > 1 and not torch.cuda.is_available():
        raise ConfigError("sync_batchnorm: torch's SyncBatchNorm runs on GPUs only; set it false on CPU")
    L.seed_everything(config.seed, workers=True, verbose=False)
    parts = build_run(config)
    if resume_from is not None and resume is not None:
        check_resume(resume_from, resume, parts.module, config.max_epochs)
    ckpt = Path(resume_from) if resume_from is not None else None
    run_dir = make_run_dir(config)
    objective = metrics.KNN_TOP1 if parts.splits.info.num_classes else metrics.RANKME
    checkpoint = ObjectiveCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-{epoch}",
        monitor=objective,
        mode="max",
        save_on_train_epoch_end=True,
    )
    # a monitored ModelCheckpoint only refreshes last.ckpt when the metric improves: keep our own
    last = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="last",
        save_top_k=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    steps_per_epoch = max(1, len(parts.splits.train) // config.batch_size)  # type: ignore[arg-type]
    try:
        with quiet_dependency_output():  # Lightning's tips come from the Trainer's construction too
            trainer = L.Trainer(
                max_epochs=config.max_epochs,
                accelerator=config.accelerator,
                devices=config.devices,
                strategy=config.strategy,
                precision=config.precision,
                accumulate_grad_batches=config.accumulate_grad_batches,
                sync_batchnorm=config.sync_batchnorm,
                logger=logger,
                callbacks=[parts.knn, checkpoint, last, *(callbacks or [])],
                enable_progress_bar=progress_bar,
                enable_model_summary=False,
                log_every_n_steps=min(50, steps_per_epoch),
                num_sanity_val_steps=0,
                limit_val_batches=0,
            )
    except (MisconfigurationException, ValueError, ImportError) as exc:  # e.g. a GPU asked for on a CPU
        if run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()  # made above for this run, still empty: leave nothing behind
        raise ConfigError(
            f"accelerator {config.accelerator!r} / devices {config.devices} / strategy {config.strategy!r} / "
            f"precision {config.precision!r}: Lightning refused them: {reason(exc)}"
        ) from None
    if str(trainer.precision) != config.precision:
        # what ran, not what was asked: Lightning unifies "16" to "16-mixed", "bf16" to "bf16-mixed", and
        # runs "16-mixed" on a CPU as "bf16-mixed" (fp16 autocast is GPU-only), with its own warning
        config = config.model_copy(update={"precision": str(trainer.precision)})
    if trainer.is_global_zero:
        save_config(config, run_dir / "config.yaml")
    logger.log_hyperparams(hparams(config))
    on_interrupt = signal.getsignal(signal.SIGINT)
    try:
        with quiet_dependency_output():
            trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=ckpt)
    except ByolTuneError as exc:  # a user error mid-run (diverged, an unreadable file): where its files are
        raise type(exc)(f"{exc} (the run so far: {run_dir})") from None
    except SystemExit as exc:
        # Lightning ends a Ctrl-C'd fit with exit(1), Ctrl-C ignored or not depending on its teardown;
        # another exit (a callback's sys.exit(0)) is not ours
        if not (exc.code == 1 and trainer.interrupted):
            raise
        if on_interrupt is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGINT, on_interrupt)
        raise KeyboardInterrupt(_resume_hint(run_dir)) from None

    final = {k: v for k, v in parts.knn.history[-1].items() if k not in ("epoch", "step")}
    final[metrics.LOSS] = float(trainer.callback_metrics.get(f"{metrics.LOSS}_epoch", float("nan")))
    if config.linear_probe and parts.splits.info.num_classes:
        parts.module.eval()
        final.update(parts.knn.final_metrics(trainer, parts.module, linear=True))
    result = FitResult(
        run_dir=run_dir,
        metrics=final,
        history=parts.knn.history,
        best_checkpoint=Path(checkpoint.best_model_path) if checkpoint.best_model_path else None,
        last_checkpoint=Path(last.best_model_path) if last.best_model_path else None,
        global_rank=trainer.global_rank,
    )
    if trainer.is_global_zero:
        result.backbone_path = run_dir / "backbone.pt"
        backbone_state = {k: v.cpu() for k, v in parts.module.backbone.state_dict().items()}
        atomic_write(result.backbone_path, lambda tmp: torch.save(backbone_state, tmp))
        summary = {"metrics": final, "history": parts.knn.history}
        atomic_write_text(run_dir / "metrics.json", json.dumps(summary, indent=2))
    return result
