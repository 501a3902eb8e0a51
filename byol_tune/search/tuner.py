"""Ray Tune around Ray Train: one ``train_driver_fn`` per trial, Optuna TPE + ASHA over a search space."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from byol_tune import metrics
from byol_tune.config import BYOLConfig
from byol_tune.errors import ByolTuneError, ConfigError, DivergedError, reraised
from byol_tune.io import atomic_write_text
from byol_tune.search.ray_train import Resources, make_torch_trainer, train_in_trial
from byol_tune.search.space import SearchSpace

TRIAL_RUN_NAME = "train"  # the TorchTrainer run inside each trial's folder
MODE = "max"  # every objective in metrics.OBJECTIVES is better higher
TPE_STARTUP_TRIALS = 10  # random trials before TPE models the results (Optuna's default)
# A trial that failed with one of these (its config and seed decide them) writes it to FAILED_FILE in its
# folder, and a retry repeats it at once instead of training again; a DataError (a file since repaired,
# storage that hiccuped) is retried for real.
REPEATING_ERRORS = (DivergedError, ConfigError)
FAILED_FILE = "failed.txt"


@dataclass(frozen=True)
class SearchSettings:
    num_samples: int = 8
    max_epochs: int = 6
    max_concurrent: int = 1
    searcher: str = "tpe"  # tpe | random
    scheduler: str = "asha"  # asha | none
    grace_period: int = 2
    reduction_factor: int = 2
    objective: str = metrics.KNN_TOP1
    seed: int = 0
    tpe_startup_trials: int = TPE_STARTUP_TRIALS

    def __post_init__(self) -> None:
        if self.searcher not in ("tpe", "random"):
            raise ConfigError(f"--searcher: unknown {self.searcher!r}; choose from tpe, random")
        if self.scheduler not in ("asha", "none"):
            raise ConfigError(f"--scheduler: unknown {self.scheduler!r}; choose from asha, none")
        if self.objective not in metrics.OBJECTIVES:
            raise ConfigError(
                f"--objective: unknown {self.objective!r}; choose from {', '.join(metrics.OBJECTIVES)}"
            )
        for name in (
            "num_samples",
            "max_epochs",
            "max_concurrent",
            "grace_period",
            "reduction_factor",
            "tpe_startup_trials",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")

    @property
    def first_rung(self) -> int:
        """ASHA's first rung: the epoch every trial reaches before ASHA may stop it."""
        return min(self.grace_period, self.max_epochs)


def check_feasible(
    resources: Resources, max_concurrent: int, cluster: dict[str, float], holder: str = "the cluster"
) -> None:
    """Refuse up front what would never schedule (Train V2 would retry the worker start forever);
    ``holder`` names where ``cluster``'s counts come from in the message."""
    have_cpu, have_gpu = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    need_cpu, need_gpu = resources.cpus_per_trial(), resources.gpus_per_trial()
    if not need_gpu and resources.workers > have_cpu + 1e-9:  # train refuses devices > cores alike
        raise ConfigError(
            f"--workers-per-trial {resources.workers}: one trial's DDP processes would outnumber {holder}'s "
            f"{have_cpu:g} CPU, and its gradient syncs would wait on each other; use at most {int(have_cpu)}"
        )
    if need_cpu > have_cpu + 1e-9 or need_gpu > have_gpu + 1e-9:
        raise ConfigError(
            f"resources: one trial needs {need_cpu:g} CPU and {need_gpu:g} GPU ({resources.split()}) "
            f"but {holder} has {have_cpu:g} CPU and {have_gpu:g} GPU; lower --workers-per-trial, "
            "--cpus-per-worker or --gpus-per-worker"
        )
    fits = min(
        math.floor((have_cpu + 1e-9) / need_cpu),
        math.floor((have_gpu + 1e-9) / need_gpu) if need_gpu else max_concurrent,
    )
    if max_concurrent > fits:
        raise ConfigError(
            f"--max-concurrent {max_concurrent}: only {fits} trial(s) of {need_cpu:g} CPU / "
            f"{need_gpu:g} GPU ({resources.split()}) fit in {holder}'s {have_cpu:g} CPU / {have_gpu:g} GPU"
        )


def train_driver_fn(
    sample: dict[str, Any],
    space: SearchSpace,
    overrides: dict[str, Any],
    resources: Resources,
    objective: str,
    experiment: str,
) -> None:
    """Runs once per Tune trial: trains in this process (``resources.in_trial``), or builds the trial's
    TorchTrainer and forwards its reports to Tune."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_dir = Path(tune.get_context().get_trial_dir()).resolve()
    # in the experiment's own folder: Ray's trial folder is a staging copy that a reused trial process or a
    # --resume (a new Ray session) does not see again
    failed = Path(experiment) / trial_dir.name / FAILED_FILE
    if failed.is_file():  # retried (Tune's max_failures, or --resume): the same config and seed fail alike
        raise reraised(failed.read_text()) or ConfigError(f"{failed}: unreadable")
    try:
        config = space.make_config(sample, overrides)
        if resources.in_trial:
            # TensorBoard straight into the experiment: a reused trial process's folder is not synced there
            train_in_trial(config, str(Path(experiment) / trial_dir.name), resources)
            return
        trainer = make_torch_trainer(
            config,
            resources,
            storage_path=str(trial_dir),  # deterministic per trial, so a restored trial resumes its run
            name=TRIAL_RUN_NAME,
            log_dir=str(trial_dir),
            callbacks=[TuneReportCallback()],
            objective=objective,
        )
        trainer.fit()
    except Exception as exc:  # a Train worker's error arrives as its traceback's text
        error = exc if isinstance(exc, ByolTuneError) else reraised(str(exc))
        if isinstance(error, REPEATING_ERRORS):
            atomic_write_text(failed, f"byol_tune.errors.{type(error).__name__}: {error}")
        raise


def build_tuner(
    space: SearchSpace,
    settings: SearchSettings,
    resources: Resources,
    overrides: dict[str, Any],
    storage_path: Path,
    name: str,
    stop: Any = None,
) -> Any:
    """The Tuner of one search; ``stop`` (a Tune stopper) lets the search-quality study end it at a
    trial-epoch budget."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    param_space = space.to_tune()
    scheduler: Any = (
        ASHAScheduler(
            time_attr="epoch",
            # max_t above the last report: at max_t Tune kills the trial before Train shuts down cleanly
            max_t=settings.max_epochs + 1,
            grace_period=settings.first_rung,
            reduction_factor=settings.reduction_factor,
        )
        if settings.scheduler == "asha"
        else FIFOScheduler()
    )
    return tune.Tuner(
        make_trainable(space, overrides, resources, settings.objective, storage_path / name),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=settings.objective,
            mode=MODE,
            search_alg=make_searcher(settings, searched=bool(param_space)),
            scheduler=scheduler,
            num_samples=settings.num_samples,
            # in-trial runs reuse the trial's process (its imports); a TorchTrainer driver reused after
            # an ASHA stop breaks the next trial
            reuse_actors=resources.in_trial,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(storage_path),
            verbose=1,
            stop=stop,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )


def make_searcher(settings: SearchSettings, searched: bool) -> Any:
    """Optuna TPE (random for its start-up trials), or random sampling for ``--searcher random`` or a space
    with nothing to search; at most ``max_concurrent`` trials at a time."""
    import optuna
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" per search

    from byol_tune.search.searcher import RungOptunaSearch

    if settings.searcher != "tpe" or not searched:
        return BasicVariantGenerator(random_state=settings.seed, max_concurrent=settings.max_concurrent)
    kwargs: dict[str, Any] = {"sampler": tpe_sampler(settings), "metric": settings.objective, "mode": MODE}
    searcher = (
        # under ASHA, TPE compares trials at the first rung's epoch, which every trial reaches
        RungOptunaSearch(rung_epoch=settings.first_rung, **kwargs)
        if settings.scheduler == "asha"
        else OptunaSearch(**kwargs)
    )
    return ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent)


def tpe_sampler(settings: SearchSettings, **options: Any) -> Any:
    """Optuna's TPE as the search uses it (``benchmarks/search_surrogate.py`` replays it too, and tries
    other ``options``: TPESampler keywords).

    Optuna's default 10 random start-up trials: a search of up to 10 trials (the default's) samples at
    random. The search-quality study (benchmarks/RESULTS.md, section 6) found TPE after 3 start-up
    trials worse than random sampling at 24 trial-epochs and level with it at 48."""
    import optuna

    return optuna.samplers.TPESampler(
        seed=settings.seed, multivariate=True, n_startup_trials=settings.tpe_startup_trials, **options
    )


def make_trainable(
    space: SearchSpace, overrides: dict[str, Any], resources: Resources, objective: str, experiment: Path
) -> Any:
    """The Tune trainable: the driver with its constants bound. It reserves the whole trial's CPUs and
    GPUs when it trains in its own process, else a fraction of a CPU beside the TorchTrainer's workers."""
    from ray import tune

    bound = tune.with_parameters(
        train_driver_fn,
        space=space,
        overrides=overrides,
        resources=resources,
        objective=objective,
        experiment=str(experiment),
    )
    if resources.in_trial:
        return tune.with_resources(
            bound, {"cpu": resources.cpus_per_trial(), "gpu": resources.gpus_per_trial()}
        )
    return tune.with_resources(bound, {"cpu": resources.driver_cpus})


def trial_overrides(settings: SearchSettings, base: dict[str, Any]) -> dict[str, Any]:
    """Values every trial gets on top of the space: the budget and the data the user chose."""
    return {**base, "max_epochs": settings.max_epochs, "seed": settings.seed}


def sample_config(space: SearchSpace, overrides: dict[str, Any], where: str | None = None) -> BYOLConfig:
    """The config at the first choice/low edge of each distribution: validates the overrides early."""
    sample = {}
    for key, dist in space.params.items():
        value = dist.args[0]
        sample[dist.tune_name(key)] = 1 - value if dist.kind == "one_minus_loguniform" else value
    return space.make_config(sample, overrides, where)


def elapsed(start: float) -> float:
    return time.perf_counter() - start
