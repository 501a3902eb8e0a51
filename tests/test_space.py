"""Search-space YAML: every shipped file validates; every kind of mistake is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from byol_tune.errors import ConfigError
from byol_tune.search.space import load_space, space_names


@pytest.mark.parametrize("name", space_names())
def test_every_shipped_space_loads_and_validates(name: str) -> None:
    space = load_space(name)
    assert space.budget.get("num_samples", 1) >= 1
    tune_space = space.to_tune()
    assert len(tune_space) == len(space.params)
    # the low edge of every distribution is a valid config
    sample = {
        d.tune_name(k): (1 - d.args[0] if d.kind == "one_minus_loguniform" else d.args[0])
        for k, d in space.params.items()
    }
    space.make_config(sample)


def test_required_spaces_are_shipped() -> None:
    assert {"default", "cifar10", "imagenet_resnet50", "lightly_example"} <= set(space_names())
    assert load_space("lightly_example").params == {}


def test_default_space_searches_the_named_parameters() -> None:
    params = load_space("default").params
    assert {
        "tau_base",
        "learning_rate",
        "tau_schedule_steps",
        "projector_hidden_dim",
        "projector_out_dim",
        "predictor_hidden_dim",
        "weight_decay",
    } <= set(params)
    assert params["tau_base"].kind == "one_minus_loguniform"


def test_one_minus_loguniform_round_trip() -> None:
    space = load_space("default")
    values = space.config_values({"one_minus_tau_base": 0.004})
    assert values["tau_base"] == pytest.approx(0.996)
    assert "one_minus_tau_base" not in values


BAD = {
    "unknown key": ("space:\n  learning_rat: 0.1\n", "unknown config key 'learning_rat'"),
    "wrong type": ("space:\n  batch_size: {choice: [64, big]}\n", "batch_size"),
    "low > high": ("space:\n  learning_rate: {loguniform: [0.1, 0.01]}\n", "low 0.1 > high 0.01"),
    "empty choice": ("space:\n  batch_size: {choice: []}\n", "choice needs at least one value"),
    "unknown distribution": ("space:\n  learning_rate: {normal: [0, 1]}\n", "unknown distribution 'normal'"),
    "bad arity": ("space:\n  learning_rate: {uniform: [0.1]}\n", "needs [low, high]"),
    "log of zero": ("space:\n  weight_decay: {loguniform: [0, 0.1]}\n", "needs low > 0"),
    "bad tau": ("space:\n  tau_base: {one_minus_loguniform: [0.9, 1.2]}\n", "0 <= low < high < 1"),
    "invalid edge": ("space:\n  tau_base: {uniform: [0.9, 1.5]}\n", "tau_base"),
    "fixed invalid": ("space:\n  max_epochs: 0\n", "max_epochs"),
    "not yaml": ("space: [1,\n", "not valid YAML"),
    "no space": ("search: {num_samples: 2}\n", "space: expected a non-empty mapping"),
    "bad budget": ("search: {num_samples: 0}\nspace:\n  batch_size: 64\n", "num_samples"),
    "unknown budget": ("search: {samples: 3}\nspace:\n  batch_size: 64\n", "unknown key 'samples'"),
    "unknown top": ("spaces:\n  batch_size: 64\n", "unknown top-level key 'spaces'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_space_is_one_clear_error(tmp_path: Path, case: str) -> None:
    text, fragment = BAD[case]
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and fragment in message, message


def test_missing_space_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--space .*nope\.yaml: no such file$"):
        load_space(tmp_path / "nope.yaml")
    with pytest.raises(
        ConfigError, match=r"^--space default\.yaml: no such file; the shipped space is '--space default'$"
    ):
        load_space("default.yaml")
    with pytest.raises(
        ConfigError, match=r"^--space nope: no such file, nor a shipped space \(cifar10, default,"
    ):
        load_space("nope")
    with pytest.raises(ConfigError, match="a folder, not a YAML config file"):
        load_space(tmp_path)


def test_wheel_lists_every_package_and_ships_the_spaces() -> None:
    # pyproject lists the packages by hand (to ship search_spaces/ inside the wheel): a new folder of
    # modules must be added there, or a non-editable install would lack it
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {p.parent for p in (root / "byol_tune").rglob("*.py")}
    expected = {".".join(f.relative_to(root).parts) for f in folders}
    assert set(setuptools["packages"]) == expected | {"byol_tune.search_spaces", "byol_tune.configs"}
    assert setuptools["package-dir"]["byol_tune.search_spaces"] == "search_spaces"
    for package in ("byol_tune.search_spaces", "byol_tune.configs"):
        assert setuptools["package-data"][package] == ["*.yaml"]
