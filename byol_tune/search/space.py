"""Search spaces: YAML files in ``search_spaces/`` validated against the config schema.

A file holds ``space:``, a mapping of config keys to a fixed value or a one-key distribution, and an
optional ``search:`` block of budget defaults (``num_samples``, ``max_epochs``, ``grace_period``,
``reduction_factor``, ``max_concurrent``) that CLI flags override::

    search: {num_samples: 12, max_epochs: 8, grace_period: 2}
    space:
      learning_rate: {loguniform: [5.0e-4, 1.0e-2]}
      tau_base: {one_minus_loguniform: [0.9, 0.999]}   # log-uniform on 1 - tau
      projector_hidden_dim: {choice: [256, 512, 1024]}
      batch_size: 64                                     # fixed

``one_minus_loguniform`` is the natural form for momentum: 0.99 and 0.999 are as far apart as 0.9 and
0.99. Tune and Optuna see it as the parameter ``one_minus_<key>``; every other searched parameter keeps
its config key as its name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byol_tune.config import (
    BYOLConfig,
    field_names,
    field_types,
    make_config,
    number_or_value,
    read_yaml_mapping,
)
from byol_tune.errors import ConfigError

# in an installed wheel the copy packaged as byol_tune/search_spaces, else a checkout's (editable installs)
SPACES_DIR = next(
    (d for d in (Path(__file__).resolve().parents[i] / "search_spaces" for i in (1, 2)) if d.is_dir()),
    Path(__file__).resolve().parents[2] / "search_spaces",
)
KINDS = ("uniform", "loguniform", "int", "logint", "choice", "one_minus_loguniform")
CONTINUOUS = ("uniform", "loguniform", "one_minus_loguniform")
BUDGET_KEYS = {
    "num_samples": int,
    "max_epochs": int,
    "grace_period": int,
    "reduction_factor": int,
    "max_concurrent": int,
}
ONE_MINUS = "one_minus_"
SEARCH_SETS = {
    "max_epochs": "search: max_epochs or --max-epochs",
    "seed": "--seed",
}  # per trial, not per space


@dataclass(frozen=True)
class Distribution:
    kind: str
    args: tuple[Any, ...]

    def tune_name(self, key: str) -> str:
        return ONE_MINUS + key if self.kind == "one_minus_loguniform" else key

    def endpoints(self) -> list[Any]:
        """Values of the config key at the edges of the distribution (for validation)."""
        return list(self.args)


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    fixed: dict[str, Any]
    params: dict[str, Distribution]
    budget: dict[str, int] = field(default_factory=dict)

    def to_tune(self) -> dict[str, Any]:
        """The Tune ``param_space`` (Ray is imported only here, at the edge)."""
        from ray import tune

        space: dict[str, Any] = {}
        for key, dist in self.params.items():
            a = dist.args
            if dist.kind == "uniform":
                space[key] = tune.uniform(a[0], a[1])
            elif dist.kind == "loguniform":
                space[key] = tune.loguniform(a[0], a[1])
            elif dist.kind == "int":
                space[key] = tune.randint(a[0], a[1] + 1)  # inclusive upper bound
            elif dist.kind == "logint":
                space[key] = tune.lograndint(a[0], a[1] + 1)
            elif dist.kind == "choice":
                space[key] = tune.choice(list(a))
            else:  # one_minus_loguniform over tau in [low, high]
                space[dist.tune_name(key)] = tune.loguniform(1 - a[1], 1 - a[0])
        return space

    def config_values(
        self, sample: dict[str, Any], overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Config values of one trial: fixed values, the sample (transforms undone), then overrides."""
        values = dict(self.fixed)
        for key, value in sample.items():
            if key.startswith(ONE_MINUS) and key.removeprefix(ONE_MINUS) in self.params:
                values[key.removeprefix(ONE_MINUS)] = 1 - value
            else:
                values[key] = value
        values.update(overrides or {})
        return values

    def make_config(
        self, sample: dict[str, Any], overrides: dict[str, Any] | None = None, where: str | None = None
    ) -> BYOLConfig:
        """``where`` names the source in errors (default: this space's file)."""
        return make_config(self.config_values(sample, overrides), where=where or str(self.path))


def _distribution(where: str, key: str, spec: dict[str, Any]) -> Distribution:
    if len(spec) != 1:
        raise ConfigError(f"{where}: {key}: a distribution is one of {', '.join(KINDS)}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind not in KINDS:
        raise ConfigError(f"{where}: {key}: unknown distribution {kind!r}; choose from {', '.join(KINDS)}")
    if not isinstance(args, list):
        raise ConfigError(f"{where}: {key}: {kind} needs a list, got {args!r}")
    if kind == "choice":
        if not args:
            raise ConfigError(f"{where}: {key}: choice needs at least one value")
        return Distribution(kind, tuple(args))
    args = [number_or_value(v) for v in args]  # YAML 1.1 reads 1e-4 as text
    if len(args) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in args):
        raise ConfigError(f"{where}: {key}: {kind} needs [low, high] numbers, got {args!r}")
    low, high = args
    if kind in ("int", "logint") and not all(isinstance(v, int) for v in args):
        raise ConfigError(f"{where}: {key}: {kind} needs integer bounds, got {args!r}")
    if low > high:
        raise ConfigError(f"{where}: {key}: low {low} > high {high}")
    if kind in ("loguniform", "logint") and low <= 0:
        raise ConfigError(f"{where}: {key}: {kind} needs low > 0, got {low}")
    if kind == "one_minus_loguniform" and not 0 <= low < high < 1:
        raise ConfigError(f"{where}: {key}: one_minus_loguniform needs 0 <= low < high < 1, got {args!r}")
    if kind in ("uniform", "loguniform") and math.isclose(low, high):
        raise ConfigError(f"{where}: {key}: low equals high ({low}); write a fixed value instead")
    return Distribution(kind, (low, high))


def _holds_int(key: str) -> bool:
    return int in field_types(key)


def _budget(where: str, data: Any) -> dict[str, int]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: search: expected a mapping, got {type(data).__name__}")
    budget = {}
    for key, value in data.items():
        if key not in BUDGET_KEYS:
            raise ConfigError(f"{where}: search: unknown key {key!r}; choose from {', '.join(BUDGET_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: search: {key}: expected an integer >= 1, got {value!r}")
        budget[key] = value
    return budget


def resolve_space_path(name: str | Path) -> Path:
    """A path, or the name of a file in ``search_spaces/`` (``default``, ``cifar10``...)."""
    path = Path(name)
    if path.exists():
        return path
    if path.suffix:
        shipped = f"; the shipped space is '--space {path.stem}'" if path.stem in space_names() else ""
        raise ConfigError(f"--space {name}: no such file{shipped}")
    if not (SPACES_DIR / f"{name}.yaml").is_file():
        raise ConfigError(f"--space {name}: no such file, nor a shipped space ({', '.join(space_names())})")
    return SPACES_DIR / f"{name}.yaml"


def load_space(name: str | Path, resumed: bool = False) -> SearchSpace:
    """Read and validate a search space; every problem is one :class:`ConfigError` line. ``resumed``: a
    search started before :data:`SEARCH_SETS` keys were refused runs on with them (the search
    overrides them per trial, as it did then)."""
    path = resolve_space_path(name)
    data = read_yaml_mapping(path)
    where = str(path)
    unknown = set(data) - {"space", "search", "description"}
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key {sorted(unknown)[0]!r}; use space, search")
    entries = data.get("space")
    if not isinstance(entries, dict) or not entries:
        raise ConfigError(f"{where}: space: expected a non-empty mapping of config keys")
    fixed: dict[str, Any] = {}
    params: dict[str, Distribution] = {}
    for key, spec in entries.items():
        if key not in field_names():
            make_config({key: None}, where=where)  # raises the unknown-key error with a hint
        if key in SEARCH_SETS and not resumed:
            raise ConfigError(f"{where}: space: {key}: set by the search; use {SEARCH_SETS[key]}")
        if isinstance(spec, dict):
            params[key] = _distribution(where, key, spec)
            if params[key].kind in CONTINUOUS and _holds_int(key):
                raise ConfigError(
                    f"{where}: {key}: an integer key; sample it with int, logint or choice, "
                    f"not {params[key].kind}"
                )
        else:
            fixed[key] = spec
    space = SearchSpace(path=path, fixed=fixed, params=params, budget=_budget(where, data.get("search")))
    _check_values(space)
    return space


def _check_values(space: SearchSpace) -> None:
    """Every fixed value and every distribution edge must be a valid config value."""
    make_config(space.fixed, where=str(space.path))
    for key, dist in space.params.items():
        for value in dist.endpoints():
            make_config({**space.fixed, key: value}, where=f"{space.path}: {key} ({dist.kind})")


def space_names() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
