"""End-to-end runs of the plain trainer: embedded data, every dataset format, every shipped config."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from formats import write_cifar10, write_cifar100, write_image_folder, write_stl10, write_vectors
from tiny import TINY
from torch.utils.data import DataLoader, TensorDataset

from byol_tune import metrics
from byol_tune.config import load_config, make_config, shipped_configs
from byol_tune.core.build import build_run
from byol_tune.core.fit import fit, load_backbone_state
from byol_tune.errors import ConfigError, DivergedError
from byol_tune.parts.momentum import tau_at


def test_fit_on_embedded_data(tmp_path: Path) -> None:
    config = make_config({**TINY, "output_dir": str(tmp_path)})
    result = fit(config, progress_bar=False)
    run = result.run_dir
    for name in ("config.yaml", "metrics.json", "backbone.pt"):
        assert (run / name).is_file(), name
    assert result.last_checkpoint is not None and result.last_checkpoint.is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    # knn_top1 logged at every evaluation (epochs 1 and 2) and in the final metrics
    assert [h["epoch"] for h in result.history] == [1, 2]
    assert all(0.0 <= h[metrics.KNN_TOP1] <= 100.0 for h in result.history)
    assert {metrics.KNN_TOP1, metrics.KNN_TOP5, metrics.RANKME, metrics.LINEAR_TOP1} <= set(result.metrics)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["metrics"][metrics.KNN_TOP1] == result.metrics[metrics.KNN_TOP1]
    # the config written is complete and reloads to the same config
    assert load_config(run / "config.yaml") == config
    # the target moved, tau followed the per-step cosine to its last step
    ckpt = torch.load(result.last_checkpoint, weights_only=True)
    state = ckpt["state_dict"]
    steps = 2 * (256 // 32)
    assert ckpt["global_step"] == steps
    online = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    target = {
        k.removeprefix("backbone_momentum."): v
        for k, v in state.items()
        if k.startswith("backbone_momentum.")
    }
    moved = [not torch.equal(online[k], target[k]) for k in online if online[k].is_floating_point()]
    assert any(moved)
    assert load_backbone_state(run / "backbone.pt").keys() == online.keys()
    step, value = _last_scalar(run / "tensorboard", metrics.TAU)
    assert step > 0 and value == pytest.approx(tau_at(step, 0.996, steps), abs=1e-6)


def _last_scalar(folder: Path, tag: str) -> tuple[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    event = acc.Scalars(tag)[-1]
    return int(event.step), float(event.value)


def test_fit_keeps_lightning_s_own_torch_deprecation_and_tips_to_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import warnings

    from byol_tune.core.build import lightning_rank_zero_log

    name = lightning_rank_zero_log().name
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("INFO", logger=name):
        warnings.simplefilter("always")
        fit({**TINY, "max_epochs": 1, "output_dir": str(tmp_path), "linear_probe": False}, progress_bar=False)
    assert not [w for w in caught if "LeafSpec" in str(w.message)]
    lightning_says = [r.getMessage() for r in caplog.records if r.name == name]
    assert any("GPU available" in m for m in lightning_says)  # Lightning's other lines still come through
    assert not [m for m in lightning_says if "Tip:" in m]


def test_second_run_never_overwrites_first(tmp_path: Path) -> None:
    config = make_config({**TINY, "max_epochs": 1, "output_dir": str(tmp_path), "linear_probe": False})
    first = fit(config, progress_bar=False)
    before = (first.run_dir / "backbone.pt").read_bytes()
    second = fit(config, progress_bar=False)
    assert second.run_dir != first.run_dir and second.run_dir.name == "byol-1"
    assert (first.run_dir / "backbone.pt").read_bytes() == before


@pytest.mark.parametrize(("asked", "ran"), [("16-mixed", "bf16-mixed"), ("32", "32-true")])
def test_run_folder_records_the_precision_that_ran(tmp_path: Path, asked: str, ran: str) -> None:
    """Lightning runs fp16 autocast on a CPU as bf16 autocast, and unifies "32" to "32-true": config.yaml
    says what ran, so that a resume or a reader of the run is not told float16."""
    config = {**TINY, "max_epochs": 1, "output_dir": str(tmp_path), "precision": asked, "linear_probe": False}
    result = fit(config, progress_bar=False)
    assert load_config(result.run_dir / "config.yaml").precision == ran


def test_true_precision_trains_the_model_in_its_dtype(tmp_path: Path) -> None:
    """Lightning's *-true precisions cast the model only: the views augmented in the step (float32) and
    the evaluation's images follow the backbone's dtype."""
    config = {**TINY, "max_epochs": 1, "output_dir": str(tmp_path), "precision": "64-true"}
    result = fit(config, progress_bar=False)
    state = load_backbone_state(result.run_dir / "backbone.pt")
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float64}
    assert math.isfinite(result.metrics[metrics.LOSS]) and 0 <= result.metrics[metrics.KNN_TOP1] <= 100


@pytest.mark.parametrize("precision", ["bf16-true", "16-true"])
def test_half_true_precisions_are_refused_the_target_would_stay(tmp_path: Path, precision: str) -> None:
    """A bfloat16 or float16 target network cannot take EMA steps of (1 - tau) x a small gap: refused
    by the config, before any run folder, and by the module for a Trainer of one's own."""
    with pytest.raises(
        ConfigError, match=r"^config: precision: the target network's EMA steps are too small for half"
    ):
        fit({**TINY, "output_dir": str(tmp_path), "precision": precision}, progress_bar=False)
    assert not any(tmp_path.iterdir())
    model = build_run(make_config({**TINY, "linear_probe": False})).module
    trainer = L.Trainer(
        max_epochs=1, precision=precision, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    loader = DataLoader(TensorDataset(torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)), batch_size=4)
    with pytest.raises(ValueError, match=r"^precision: torch\.(bfloat16|float16): the target network's EMA"):
        trainer.fit(model, loader)


def test_diverged_training_is_one_clear_error(tmp_path: Path) -> None:
    """NaN features (here from an absurd learning rate) stop the run with a DivergedError naming the
    keys to change, not an SVD failure inside RankMe."""
    config = {**TINY, "max_epochs": 1, "output_dir": str(tmp_path), "learning_rate": 1e12}
    with pytest.raises(DivergedError) as info:
        fit(config, progress_bar=False)
    run = tmp_path / "byol"
    assert str(info.value) == (
        "learning_rate 1e+12 / precision 32-true: training diverged by epoch 1: the backbone's features are "
        f"NaN or infinite; lower learning_rate (the run so far: {run})"
    )
    assert (run / "config.yaml").is_file()  # what was written stays


def _dataset_case(name: str, root: Path) -> dict[str, Any]:
    if name == "cifar10":
        return {"dataset": "cifar10", "data_dir": str(write_cifar10(root))}
    if name == "cifar100":
        return {"dataset": "cifar100", "data_dir": str(write_cifar100(root))}
    if name == "stl10":
        return {"dataset": "stl10", "data_dir": str(write_stl10(root)), "image_size": None}
    if name == "imagefolder":
        return {"dataset": "imagefolder", "data_dir": str(write_image_folder(root)), "image_size": 32}
    path = write_vectors(root / "vectors.npz")
    return {"dataset": "vectors", "data_dir": str(path), "backbone": "mlp"}


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "stl10", "imagefolder", "vectors"])
def test_fit_reads_each_real_format(tmp_path: Path, dataset: str) -> None:
    values = {**TINY, **_dataset_case(dataset, tmp_path / "data"), "batch_size": 8, "max_epochs": 1}
    result = fit(make_config({**values, "output_dir": str(tmp_path / "runs")}), progress_bar=False)
    assert metrics.RANKME in result.metrics
    assert metrics.KNN_TOP1 in result.metrics


@pytest.mark.parametrize("name", sorted(shipped_configs()))
def test_every_shipped_config_trains(tmp_path: Path, name: str) -> None:
    config = load_config(name)
    values = config.model_dump()
    case = _dataset_case(config.dataset, tmp_path / "data") if config.dataset != "shapes" else {}
    # shrink only what makes the run long on a CPU; every other setting is the file's own
    values.update(case)
    values.update(
        max_epochs=1,
        batch_size=8,
        devices=1,
        num_workers=0,
        accumulate_grad_batches=1,
        shapes_train_size=64,
        shapes_val_size=32,
        output_dir=str(tmp_path / "runs"),
        linear_probe=False,
    )
    if config.dataset == "imagefolder":
        values["image_size"] = 32  # resnet50 at 224 px takes minutes per step on 2 CPU cores
    result = fit(make_config(values), progress_bar=False)
    assert metrics.RANKME in result.metrics


def test_layers_parts_and_core_import_no_ray_or_optuna() -> None:
    code = (
        "import sys, byol_tune.train, byol_tune.core.fit, byol_tune.parts.transforms;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'));"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_entry_points_load_torch_only_when_they_run() -> None:
    """The CLIs import torch, Lightning and Ray (seconds) inside run_cli: --help and a bad flag answer at
    once, and a Ctrl-C while they load is one 'interrupted' line, exit 130, not a traceback."""
    code = (
        "import sys, byol_tune.train, byol_tune.search.__main__;"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'ray'));"
        "assert not heavy, heavy;"
        "byol_tune.train.fit;"  # the documented API still works, loading on first use
        "assert 'torch' in sys.modules and byol_tune.train.FitResult.__name__ == 'FitResult'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_configs_are_complete_mappings() -> None:
    for name, path in shipped_configs().items():
        data = yaml.safe_load(path.read_text())
        assert isinstance(data, dict) and data, name
        make_config(data, where=name)


def test_resume_that_cannot_continue_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    from byol_tune.errors import CheckpointError

    first = fit({**TINY, "max_epochs": 1, "output_dir": str(tmp_path)}, progress_bar=False)
    assert first.last_checkpoint is not None
    cases = {
        "already trained 1 epoch(s); set max_epochs above that": {"max_epochs": 1},
        "projection_head.0.weight is (64, 256) there, (16, 256) here": {"projector_hidden_dim": 16},
        "trained with optimizer 'adamw', this config has 'sgd'": {"optimizer": "sgd"},
    }
    for message, change in cases.items():
        config = {**TINY, "max_epochs": 2, "output_dir": str(tmp_path), **change}
        with pytest.raises(CheckpointError, match=re.escape(message)):
            fit(config, resume_from=first.last_checkpoint, progress_bar=False)
    assert [p.name for p in tmp_path.iterdir()] == [first.run_dir.name]  # no run folder for a refusal
    resumed = fit({**TINY, "max_epochs": 2, "output_dir": str(tmp_path)}, first.last_checkpoint, False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]  # the first run's evaluation came along
    assert resumed.history[0] == first.history[0]
    saved = json.loads((resumed.run_dir / "metrics.json").read_text())
    assert [h["epoch"] for h in saved["history"]] == [1, 2]


def test_strategies_that_accumulate_gradients_themselves_are_refused_with_accumulation(
    tmp_path: Path,
) -> None:
    """DeepSpeed accumulates gradients itself and Lightning then steps the optimizer every batch: the
    EMA would move per micro-batch. The config refuses it before any run folder; the module refuses any
    such strategy (here a stand-in on the CPU) for a Trainer of one's own."""
    from lightning.pytorch.strategies import SingleDeviceStrategy

    with pytest.raises(
        ConfigError, match=r"^config: accumulate_grad_batches 2 with strategy 'deepspeed': the"
    ):
        fit({**TINY, "output_dir": str(tmp_path), "strategy": "deepspeed", "accumulate_grad_batches": 2})
    assert not any(tmp_path.iterdir())
    make_config({**TINY, "strategy": "deepspeed", "accumulate_grad_batches": 1})  # no accumulation: fine

    class Accumulating(SingleDeviceStrategy):
        @property
        def handles_gradient_accumulation(self) -> bool:
            return True

    def train(accumulate: int) -> None:
        model = build_run(make_config({**TINY, "linear_probe": False})).module
        trainer = L.Trainer(
            max_epochs=1,
            strategy=Accumulating(device=torch.device("cpu")),
            accumulate_grad_batches=accumulate,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
        )
        loader = DataLoader(TensorDataset(torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)), batch_size=4)
        trainer.fit(model, loader)

    with pytest.raises(
        ValueError, match=r"^accumulate_grad_batches 2 with Accumulating: the strategy accumulates"
    ):
        train(2)
    train(1)
