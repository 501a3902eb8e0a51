"""Plain trainer entry point: ``python -m byol_tune.train --config FILE.yaml [--set key=value ...]``.

From Python: ``from byol_tune.train import fit; fit({"max_epochs": 5})``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from byol_tune import metrics
from byol_tune.cli import OneLineParser, add_set_flag, run_cli
from byol_tune.config import field_names, load_config
from byol_tune.errors import ConfigError

if TYPE_CHECKING:
    from byol_tune.core.fit import FitResult, fit

__all__ = ["FitResult", "fit", "main"]


def __getattr__(name: str) -> Any:
    """``fit`` and ``FitResult`` load on first use: torch and Lightning take seconds to import, and
    meanwhile ``--help`` or a bad flag should answer at once and a Ctrl-C exit as one line."""
    if name in ("fit", "FitResult"):
        from byol_tune.core import fit as fit_module

        return getattr(fit_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m byol_tune.train",
        description="Train BYOL with one config (default: the embedded shapes dataset).",
        epilog="Config keys: " + ", ".join(field_names()),
    )
    p.add_argument("--config", help="YAML file of config keys (default: built-in defaults)")
    add_set_flag(p, "max_epochs=5", "override one config key")
    p.add_argument("--resume", metavar="CKPT", help="continue from a Lightning checkpoint")
    p.add_argument(
        "--from-search",
        metavar="EXPERIMENT_DIR",
        help="train a search's best config through Ray Train, then evaluate and export it",
    )
    p.add_argument("--max-epochs", type=int, help="with --from-search: epochs for the final run")
    p.add_argument("--workers", type=int, help="with --from-search: Ray Train workers (DDP), default 1")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    _check_flags(args)
    if args.from_search:
        from byol_tune.config import parse_overrides
        from byol_tune.search.final import train_best

        workers = 1 if args.workers is None else args.workers
        final = train_best(args.from_search, args.max_epochs, workers, parse_overrides(args.overrides))
        print("metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in final.metrics.items()))
        print(f"backbone: {final.state_dict_path} (state_dict), {final.torchscript_path} (TorchScript)")
        return 0
    config = load_config(args.config, args.overrides)
    from byol_tune.core.fit import fit  # torch and Lightning (seconds), inside run_cli's Ctrl-C handling

    result = fit(config, resume_from=args.resume, progress_bar=not args.no_progress)
    if result.global_rank != 0:  # DDP's other processes: rank 0 reports, as it wrote the files
        return 0
    shown = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    print(f"metrics: {shown}")
    if metrics.KNN_TOP1 in result.metrics:
        print(f"{metrics.KNN_TOP1}: {result.metrics[metrics.KNN_TOP1]:.2f}%")
    print(f"written to: {result.run_dir}")
    return 0


def _check_flags(args: argparse.Namespace) -> None:
    """Flags of the other mode are refused, never silently ignored."""
    if args.from_search:
        for flag, value in (("--config", args.config), ("--resume", args.resume)):
            if value is not None:
                raise ConfigError(f"{flag}: not with --from-search, which trains the search's best config")
        if args.no_progress:
            raise ConfigError("--no-progress: not with --from-search, whose Ray Train run shows no bar")
        return
    for flag, value in (("--max-epochs", args.max_epochs), ("--workers", args.workers)):
        if value is not None:
            hint = " (set the epochs with --set max_epochs=N)" if flag == "--max-epochs" else ""
            raise ConfigError(f"{flag}: only with --from-search{hint}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
