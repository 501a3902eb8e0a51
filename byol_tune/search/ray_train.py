"""Ray Train around the core: one BYOL run as a ``TorchTrainer`` with N DDP workers.

Nothing here changes the LightningModule: the Lightning Trainer just gets Ray's DDP strategy,
environment plugin and a callback that reports every kNN evaluation with a checkpoint.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from byol_tune import metrics
from byol_tune.config import BYOLConfig, make_config
from byol_tune.core.build import RunParts, build_run, hparams, quiet_dependency_output
from byol_tune.core.knn_callback import KNNCallback
from byol_tune.errors import ConfigError, reason
from byol_tune.search.interrupt import host_port

CHECKPOINT_NAME = "checkpoint.ckpt"


@dataclass(frozen=True)
class Resources:
    """What one trial asks of the cluster. The driver needs a little CPU, never a whole core."""

    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    driver_cpus: float = 0.1
    in_trial: bool = False  # train in the Tune trial's own process instead of a TorchTrainer (1 worker)

    def __post_init__(self) -> None:
        if self.in_trial and self.workers != 1:
            raise ConfigError(
                f"--runner trial: trains one worker in the trial's process; got --workers-per-trial "
                f"{self.workers} (use --runner train for DDP over several workers)"
            )

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def cpus_per_trial(self) -> float:
        return self.driver_cpus + self.workers * self.cpus_per_worker

    def gpus_per_trial(self) -> float:
        return self.workers * self.gpus_per_worker

    def split(self) -> str:
        """How a trial's request adds up, for messages: '2 workers x 1 CPU / 0 GPU + 0.1 CPU for the
        trial driver'."""
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        return (
            f"{workers} x {self.cpus_per_worker:g} CPU / {self.gpus_per_worker:g} GPU + "
            f"{self.driver_cpus:g} CPU for the trial driver"
        )

    @staticmethod
    def share_cpus(cluster_cpus: float, workers: int, concurrent: int = 1, driver_cpus: float = 0.1) -> float:
        """CPUs per worker when ``concurrent`` trials of ``workers`` workers share ``cluster_cpus``, each
        trial's driver taking ``driver_cpus`` first: tenths, at least 0.1."""
        tenths = 10 * (cluster_cpus - concurrent * driver_cpus) / (concurrent * workers)
        return max(0.1, math.floor(tenths) / 10)

    def torch_threads(self) -> int:
        """Intra-op threads per worker: Ray sets OMP_NUM_THREADS to the whole CPUs only (1.9 CPU gives
        1 thread), which idles a core of a 2-core machine; round to the nearest instead."""
        return max(1, round(self.cpus_per_worker))


class ReportEvaluations(L.Callback):
    """After each kNN evaluation: save a checkpoint and report the metrics with it.

    ``report`` is ``ray.train.report`` on Train workers and ``ray.tune.report`` in a trial that trains
    in its own process; ``checkpoint_cls`` is the matching ``Checkpoint`` class.
    """

    def __init__(self, knn: KNNCallback, report: Callable[..., None], checkpoint_cls: Any) -> None:
        self.knn, self.report, self.checkpoint_cls = knn, report, checkpoint_cls
        self.reported = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.reported = len(self.knn.history)  # a restored run's evaluations went to Tune before it stopped

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if len(self.knn.history) == self.reported:
            return
        self.reported = len(self.knn.history)
        row = {k: float(v) for k, v in self.knn.history[-1].items()}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / CHECKPOINT_NAME
            trainer.save_checkpoint(path)  # collective under DDP; rank 0 writes the file
            checkpoint = self.checkpoint_cls.from_directory(tmp) if trainer.is_global_zero else None
            self.report(row, checkpoint=checkpoint)


def lightning_trainer(
    config: BYOLConfig, parts: RunParts, callbacks: list[L.Callback], logger: Any, **kwargs: Any
) -> L.Trainer:
    """The Lightning Trainer of a Ray run (Train worker or in-trial): Ray reports, no own checkpoints."""
    with quiet_dependency_output():  # Lightning's tips come from the Trainer's construction too
        return L.Trainer(
            max_epochs=config.max_epochs,
            precision=config.precision,
            accumulate_grad_batches=config.accumulate_grad_batches,
            sync_batchnorm=config.sync_batchnorm,
            callbacks=[parts.knn, *callbacks],
            logger=logger,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            log_every_n_steps=min(50, max(1, len(parts.splits.train) // config.batch_size)),  # type: ignore[arg-type]
            **kwargs,
        )


def restore_path(checkpoint: Any) -> str | None:
    """A local copy of a reported checkpoint's file, to resume from (None: start fresh)."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        local = Path(tempfile.mkdtemp()) / CHECKPOINT_NAME
        local.write_bytes((Path(folder) / CHECKPOINT_NAME).read_bytes())
    return str(local)


def tensorboard(log_dir: str | None, config: BYOLConfig) -> Any:
    if not log_dir:
        return False
    logger = TensorBoardLogger(save_dir=log_dir, name="tensorboard", version="")
    logger.log_hyperparams(hparams(config))
    return logger


def train_fn_per_worker(train_loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker: the same build as the plain trainer, with Ray's DDP plumbing.

    ``train_loop_config``: ``config`` (a config dict), optional ``log_dir`` (TensorBoard, rank 0),
    ``use_gpu``, ``threads`` (torch intra-op threads, :meth:`Resources.torch_threads`) and ``callbacks``
    (extra Lightning callbacks, pickled to every worker).
    """
    import ray.train
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment, prepare_trainer

    config = make_config(train_loop_config["config"])
    torch.set_num_threads(train_loop_config.get("threads", torch.get_num_threads()))
    L.seed_everything(config.seed, workers=True, verbose=False)
    parts = build_run(config)
    rank0 = ray.train.get_context().get_world_rank() == 0
    report = ReportEvaluations(parts.knn, ray.train.report, ray.train.Checkpoint)
    trainer = lightning_trainer(
        config,
        parts,
        [report, *train_loop_config.get("callbacks", [])],
        tensorboard(train_loop_config.get("log_dir") if rank0 else None, config),
        accelerator="gpu" if train_loop_config.get("use_gpu") else "cpu",
        devices="auto",
        strategy=RayDDPStrategy(),
        plugins=[RayLightningEnvironment()],
    )
    trainer = prepare_trainer(trainer)
    ckpt_path = restore_path(ray.train.get_checkpoint())  # resuming: from the last reported evaluation
    with quiet_dependency_output():
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=ckpt_path)


def train_in_trial(config: BYOLConfig, log_dir: str, resources: Resources) -> None:
    """One worker's run inside the Tune trial's own process: no Train controller and no worker actor,
    which saves two Python processes (each importing torch, Lightning and Ray) per trial.
    """
    from ray import tune

    torch.set_num_threads(resources.torch_threads())
    L.seed_everything(config.seed, workers=True, verbose=False)
    parts = build_run(config)
    report = ReportEvaluations(parts.knn, tune.report, tune.Checkpoint)
    trainer = lightning_trainer(
        config,
        parts,
        [report],
        tensorboard(log_dir, config),
        accelerator="gpu" if resources.use_gpu else "cpu",
        devices=1,
    )
    with quiet_dependency_output():
        trainer.fit(parts.module, datamodule=parts.datamodule, ckpt_path=restore_path(tune.get_checkpoint()))


def make_torch_trainer(
    config: BYOLConfig,
    resources: Resources,
    storage_path: str,
    name: str,
    log_dir: str | None = None,
    callbacks: list[Any] | None = None,
    objective: str = metrics.KNN_TOP1,
    worker_callbacks: list[L.Callback] | None = None,
) -> Any:
    """A ``TorchTrainer`` that trains ``config`` with ``resources``; re-running it with the same
    ``storage_path``/``name`` resumes from its latest checkpoint.

    ``callbacks`` are Ray Train run callbacks (on the driver); ``worker_callbacks`` are Lightning
    callbacks added to every worker's Trainer.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    per_worker: dict[str, float] = {"CPU": resources.cpus_per_worker}
    if resources.use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker
    return TorchTrainer(
        train_fn_per_worker,
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        train_loop_config={
            "config": config.model_dump(),
            "log_dir": log_dir,
            "use_gpu": resources.use_gpu,
            "threads": resources.torch_threads(),
            "callbacks": worker_callbacks or [],
        },
        scaling_config=ScalingConfig(
            num_workers=resources.workers, use_gpu=resources.use_gpu, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            callbacks=callbacks or [],
            # fail instead of retrying forever (Train V2's default): Tune decides what to retry
            failure_config=FailureConfig(max_failures=0, controller_failure_limit=0),  # type: ignore[call-arg]
            checkpoint_config=CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute=objective, checkpoint_score_order="max"
            ),
        ),
    )


def free_port() -> int:
    """A free local TCP port, for the dashboard of a cluster we start."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Ray settings for our trials. Measured on 2 CPU cores (Ray 2.60, Train V2): the controller's 2 s
# health-check poll costs 6-8 s per trial; the preemption watcher and Train metrics add actors we do not
# use; without a start-up timeout an unschedulable worker group is retried forever.
TRIAL_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60",
    "RAY_DEDUP_LOGS": "1",
}


def ensure_env(dashboard_port: int) -> None:
    """Set :data:`TRIAL_ENV` before ``ray.init`` starts a local cluster, so every Ray process inherits it.

    Train's placement-group cleaner needs the dashboard's State API, without which a trial stopped by
    ASHA keeps its workers' CPUs reserved and the next trial never starts: point it at our dashboard.
    """
    os.environ.setdefault("RAY_API_SERVER_ADDRESS", f"http://127.0.0.1:{dashboard_port}")
    for key, value in TRIAL_ENV.items():
        os.environ.setdefault(key, value)


def init_ray(address: str | None, dashboard_port: int | None = None, **kwargs: Any) -> Any:
    """Start a local cluster with its dashboard (``address`` None), or join a running one.

    A running cluster's processes were started without our environment, so it travels to the trials
    as the job's ``runtime_env``; its own dashboard serves the State API.
    """
    import ray

    if address is not None:
        _check_reachable(address)
        _opt_into_token_auth()
        env = {k: os.environ.get(k, v) for k, v in TRIAL_ENV.items()}
        try:
            return ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False, **kwargs)
        except (ConnectionError, ValueError, ray.exceptions.RayError) as exc:  # ValueError: bad format
            raise ConfigError(
                f"--address {address}: cannot join the Ray cluster ({reason(exc)[:200]}); "
                "with token auth set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the output of "
                "`ray get-auth-token` on the head"
            ) from None
    port = dashboard_port or free_port()
    ensure_env(port)
    # "local": a new cluster even when RAY_ADDRESS or /tmp/ray/ray_current_cluster names another one
    # (a `ray start` head killed without `ray stop` leaves that file, and ray.init() waits on it forever)
    return ray.init(
        address="local",
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=port,
        log_to_driver=False,
        **kwargs,
    )


def _opt_into_token_auth() -> None:
    """Ray 2.60 clusters use token auth by default, and a driver joining one must opt in when this
    machine has the token. Ray caches ``RAY_AUTH_MODE`` when it is imported, which the search's modules
    have done by now: set the variable and refresh that cache, as ``ray.init`` itself does when it
    finds a local cluster with ``address="auto"``. Setting the variable alone left the driver
    unauthenticated (20 s of GCS warnings, then no connection)."""
    if "RAY_AUTH_MODE" in os.environ or not _token_available():
        return  # the user chose, or there is no token to offer
    from ray._raylet import Config  # type: ignore[attr-defined]  # compiled; what ray.init calls

    os.environ["RAY_AUTH_MODE"] = "token"
    Config.initialize("")


def _token_available() -> bool:
    """Whether this machine has a Ray auth token (env var, token path, or ``~/.ray/auth_token``)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or str(Path.home() / ".ray" / "auth_token")
    return Path(path).is_file()


def _check_reachable(address: str) -> None:
    """Fail in seconds, with one line, when ``HOST:PORT`` does not answer (Ray itself retries for minutes)."""
    import socket

    _, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", ray:// client addresses: left to Ray
    try:
        socket.create_connection(host_port(address), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: no Ray head answers there ({exc})") from None
