"""Bad input to ``python -m byol_tune.train``: one clear line, exit 2, no traceback, nothing overwritten."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from formats import write_image_folder
from tiny import TINY, run_module

from byol_tune.config import load_config, make_config, parse_overrides
from byol_tune.core.fit import check_checkpoint
from byol_tune.errors import CheckpointError, ConfigError, DataError, DivergedError, one_line, reraised


def run_train(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_module("byol_tune.train", "--no-progress", *args, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


CASES = {
    "unknown key": ("max_epoch: 3\n", ["unknown config key 'max_epoch'", "did you mean 'max_epochs'"]),
    "wrong type": ("batch_size: many\n", ["batch_size", "many"]),
    "out of range": ("tau_base: 1.5\n", ["tau_base", "1.5"]),
    "bad choice": ("optimizer: adam\n", ["optimizer", "adam"]),
    "not yaml": ("max_epochs: [1,\n", ["not valid YAML"]),
    "not a mapping": ("- 1\n- 2\n", ["expected a mapping"]),
    "duplicate key": ("max_epochs: 1\nmax_epochs: 2\n", ["not valid YAML: duplicate key 'max_epochs'"]),
    "unhashable key": ("[a]: 1\n", ["not valid YAML: while constructing a mapping"]),
    "unknown dataset": ("dataset: imagenet21k\n", ["dataset", "imagenet21k"]),
    "missing data_dir": ("dataset: cifar10\n", ["data_dir is required"]),
    "unknown backbone": ("backbone: resnet9000\n", ["backbone: unknown backbone; choose from mlp,", "9000"]),
    "bad precision": ("precision: bogus\n", ["precision", "'bf16-mixed'", "bogus"]),
    "infinite value": ("learning_rate: .inf\n", ["learning_rate: Input should be a finite number"]),
    "bad strategy": ("strategy: bogus\n", ["strategy: unknown strategy; choose from auto, ddp,", "bogus"]),
    "bad accelerator": ("accelerator: hpu\n", ["accelerator: unknown accelerator; choose from auto, gpu,"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_file(tmp_path: Path, case: str) -> None:
    text, fragments = CASES[case]
    config = write(tmp_path / "bad.yaml", text)
    proc = run_train("--config", str(config), cwd=tmp_path)
    assert_one_line_error(proc, str(config), *fragments)
    assert not (tmp_path / "runs").exists()


def test_accelerators_registered_by_a_plugin_are_accepted() -> None:
    from lightning.pytorch.accelerators import AcceleratorRegistry, CPUAccelerator

    registered = ", ".join(sorted(AcceleratorRegistry.available_accelerators()))
    with pytest.raises(ValueError, match=f"unknown accelerator; choose from auto, gpu, {registered} "):
        make_config({"accelerator": "hpu"})
    AcceleratorRegistry.register("hpu", CPUAccelerator, description="a stand-in for a plugin's accelerator")
    try:
        assert make_config({"accelerator": "hpu"}).accelerator == "hpu"
    finally:
        AcceleratorRegistry.pop("hpu")


def test_missing_config_file(tmp_path: Path) -> None:
    assert_one_line_error(run_train("--config", "nope.yaml", cwd=tmp_path), "nope.yaml", "no such config")


def test_bad_override(tmp_path: Path) -> None:
    assert_one_line_error(run_train("--set", "learning_rate", cwd=tmp_path), "expected key=value")
    assert_one_line_error(run_train("--set", "lr=0.1", cwd=tmp_path), "unknown config key 'lr'")


@pytest.mark.parametrize(
    ("dataset", "setup", "fragment"),
    [
        ("cifar10", "missing", "cifar"),
        ("cifar10", "empty", "cifar"),
        ("stl10", "empty", "stl10"),
        ("imagefolder", "empty", "data"),
        ("vectors", "missing", "vectors"),
    ],
)
def test_bad_data_dir(tmp_path: Path, dataset: str, setup: str, fragment: str) -> None:
    data = tmp_path / f"{fragment}-data"
    if setup == "empty":
        data.mkdir()
    proc = run_train(
        "--set",
        f"dataset={dataset}",
        "--set",
        f"data_dir={data}",
        "--set",
        "backbone=mlp" if dataset == "vectors" else "backbone=small_cnn",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, str(data))


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", per_class=4)
    broken = root / "train" / "class0" / "0.png"
    broken.write_bytes(b"not a png")
    proc = run_train(
        "--set",
        "dataset=imagefolder",
        "--set",
        f"data_dir={root}",
        "--set",
        "image_size=32",
        "--set",
        "batch_size=4",
        "--set",
        "max_epochs=1",
        "--set",
        f"output_dir={tmp_path / 'runs'}",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, str(broken))


def test_bad_checkpoint(tmp_path: Path) -> None:
    ckpt = write(tmp_path / "bad.ckpt", "garbage")
    assert_one_line_error(run_train("--resume", str(ckpt), cwd=tmp_path), str(ckpt), "not a loadable")
    missing = tmp_path / "missing.ckpt"
    assert_one_line_error(run_train("--resume", str(missing), cwd=tmp_path), "no such checkpoint")
    assert_one_line_error(
        run_train("--resume", str(tmp_path), cwd=tmp_path), "a folder, not a checkpoint file"
    )


def test_unloadable_checkpoints_say_why_in_our_words(tmp_path: Path) -> None:
    """Not torch's advice to load with weights_only=False: that would run whatever the file holds."""
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "extra": Fraction(1, 3)}, unsafe)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    cases = {
        write(tmp_path / "junk.ckpt", "garbage"): "not a file written by torch.save, or cut short",
        empty: "not a file written by torch.save, or cut short",
        unsafe: "it holds a fractions.Fraction, which could run code when loaded; refused",
    }
    for path, why in cases.items():
        with pytest.raises(CheckpointError) as info:
            check_checkpoint(path)
        assert str(info.value) == f"{path}: not a loadable checkpoint ({why})"


def test_error_keeps_existing_run_intact(tmp_path: Path) -> None:
    existing = tmp_path / "runs" / "byol"
    existing.mkdir(parents=True)
    (existing / "metrics.json").write_text("{}")
    config = write(tmp_path / "bad.yaml", f"output_dir: {tmp_path / 'runs'}\nbatch_size: 1\n")
    assert_one_line_error(run_train("--config", str(config), cwd=tmp_path), "batch_size")
    assert (existing / "metrics.json").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["byol"]


def test_overrides_are_yaml_typed() -> None:
    assert parse_overrides(["learning_rate=1e-3", "blur=false", "name=x"]) == {
        "learning_rate": 1e-3,
        "blur": False,
        "name": "x",
    }
    # text keys keep the text as typed: Lightning's precision 16, a run named 2024, a folder named 1e3
    assert parse_overrides(["precision=16", "name=2024", "data_dir=1e3", "data_dir2=1e3"]) == {
        "precision": "16",
        "name": "2024",
        "data_dir": "1e3",
        "data_dir2": 1000.0,  # unknown key: YAML-typed, refused later by the config
    }
    assert load_config(None, ["precision=16", "name=2024"]).precision == "16"
    cleared = parse_overrides(["data_dir=null", "precision= bf16-mixed ", "blur="])
    assert cleared == {"data_dir": None, "precision": "bf16-mixed", "blur": None}
    for key in ("name", "learning_rate"):  # an empty value where null is refused: said as such
        with pytest.raises(ConfigError, match=rf"^--set {key}=: empty value, and {key} cannot be null; give"):
            parse_overrides([f"{key}="])
    assert make_config({"strategy": "DDP"}).strategy == "ddp"  # Lightning reads it in lower case
    assert make_config({"precision": 16, "name": 2024}).name == "2024"  # from a YAML file


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_refused_trainer_options_leave_no_run_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # a CUDA accelerator on this CPU-only machine: Lightning refuses it once the data is built
    proc = run_train("--set", "accelerator=cuda", "--set", f"output_dir={runs}", cwd=tmp_path)
    assert_one_line_error(proc, "accelerator 'cuda'", "Lightning refused them")
    assert list(runs.iterdir()) == []


def test_flags_of_the_other_mode_are_refused(tmp_path: Path) -> None:
    assert_one_line_error(
        run_train("--max-epochs", "3", cwd=tmp_path), "--max-epochs: only with --from-search"
    )
    assert_one_line_error(run_train("--workers", "2", cwd=tmp_path), "--workers: only with --from-search")
    proc = run_train("--from-search", str(tmp_path), "--config", "x.yaml", cwd=tmp_path)
    assert_one_line_error(proc, "--config: not with --from-search")
    proc = run_train("--from-search", str(tmp_path), cwd=tmp_path)  # run_train adds --no-progress
    assert_one_line_error(proc, "--no-progress: not with --from-search")


def test_shipped_config_by_name_and_override() -> None:
    config = load_config("lightly_example", ["max_epochs=3"])
    assert config.learning_rate == 0.06 and config.max_epochs == 3 and config.backbone == "resnet18"
    with pytest.raises(
        ConfigError, match=r"no such config file, nor a shipped config \(byol_paper_imagenet, "
    ):
        load_config("not_a_shipped_config")
    with pytest.raises(
        ConfigError, match=r"^lightly_example\.yaml: no such config file; the shipped one is named"
    ):
        load_config("lightly_example.yaml")


def test_run_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("kept")
    for output_dir in ("afile", "afile/sub"):
        proc = run_train("--set", f"output_dir={output_dir}", cwd=tmp_path)
        assert_one_line_error(proc, f"{output_dir}: cannot create a run folder there (afile is a file)")
    assert (tmp_path / "afile").read_text() == "kept"
    with pytest.raises(ConfigError, match="name: a folder name inside output_dir, without '/'"):
        make_config({"name": "a/b"})


def test_config_refuses_a_knn_temperature_whose_votes_overflow() -> None:
    with pytest.raises(ConfigError, match=r"knn_temperature: .*greater than or equal to 0.0125"):
        make_config({"knn_temperature": 0.01})
    assert make_config({"knn_temperature": 0.0125}).knn_temperature == 0.0125
    for precision in ("transformer-engine", "transformer-engine-float16"):  # they cast the weights too
        with pytest.raises(ConfigError, match=r"precision: the target network's EMA steps are too small"):
            make_config({"precision": precision})


def test_one_folder_name_rule_for_train_s_name_and_search_s_name() -> None:
    from byol_tune.io import is_folder_name

    names = ("run", "a.b", "..x", "", ".", "..", "a/b", "/a", "a\\b")
    assert [is_folder_name(n) for n in names] == [True, True, True, False, False, False, False, False, False]


def test_unreadable_config_file_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from byol_tune.config import read_yaml_mapping

    path = tmp_path / "c.yaml"
    path.write_text("max_epochs: 1\n")

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    binary = tmp_path / "backbone.pt"
    binary.write_bytes(b"\xff\xfe\x00PK")
    with pytest.raises(ConfigError, match=r"backbone\.pt: not a YAML text file \(not UTF-8 text\)$"):
        read_yaml_mapping(binary)
    monkeypatch.setattr(Path, "read_text", denied)  # chmod 000 does not stop root
    with pytest.raises(ConfigError, match=r"c\.yaml: cannot read \(Permission denied\)$"):
        read_yaml_mapping(path)


def test_a_key_set_twice_and_a_data_dir_shapes_would_ignore_are_refused() -> None:
    from byol_tune.config import parse_overrides

    with pytest.raises(ConfigError, match=r"^--set max_epochs: given twice; give each key once$"):
        parse_overrides(["max_epochs=1", "seed=3", "max_epochs=2"])
    with pytest.raises(ConfigError, match=r"data_dir 'data/cifar10': not read by dataset 'shapes'"):
        make_config({"data_dir": "data/cifar10"})
    assert make_config({"dataset": "shapes", "data_dir": None}).data_dir is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_more_cpu_processes_than_cores_is_one_line(tmp_path: Path) -> None:
    import os

    devices = (os.cpu_count() or 1) + 1
    proc = run_train("--set", f"devices={devices}", "--set", f"output_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert_one_line_error(proc, f"devices: {devices} CPU processes on a machine with {devices - 1} cores")
    assert not (tmp_path / "runs").exists()


def test_booleans_and_numbers_are_not_mixed_up() -> None:
    """pydantic's lax mode would train ``max_epochs=yes`` for 1 epoch and read ``linear_probe: 1`` as true."""
    cases = {
        "max_epochs: expected a number, got true": {"max_epochs": True},
        "tau_base: expected a number, got false": {"tau_base": False},
        "linear_probe: expected true or false, got 1": {"linear_probe": 1},
    }
    for message, values in cases.items():
        with pytest.raises(ConfigError, match=f"^config: {message}$"):
            make_config(values)
    assert make_config(parse_overrides(["max_epochs=3", "linear_probe=false"])).max_epochs == 3


@pytest.mark.slow
def test_ctrl_c_exits_130_with_a_resume_line_that_works(tmp_path: Path) -> None:
    """Lightning turns Ctrl-C into exit(1); the CLI says interrupted, exits 130 and names the resume."""
    body = "".join(f"{k}: {v}\n" for k, v in {**TINY, "max_epochs": 500}.items())
    config = write(tmp_path / "long.yaml", body + f"output_dir: {tmp_path / 'runs'}\n")
    args = [sys.executable, "-m", "byol_tune.train", "--no-progress", "--config", str(config)]
    pipes = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    proc = subprocess.Popen(args, cwd=tmp_path, start_new_session=True, **pipes)  # type: ignore[call-overload]
    run_dir = tmp_path / "runs" / "byol"
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert proc.poll() is None, "training ended before the interrupt"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C signals the terminal's whole process group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    hint = "continue with: python -m byol_tune.train "
    assert stderr.splitlines()[-1] == f"interrupted: {hint}--config {run_dir / 'config.yaml'} --resume {last}"
    done = torch.load(last, weights_only=True)["epoch"] + 1
    command = shlex.split(stderr.splitlines()[-1].split(hint)[1])
    resumed = run_train(*command, "--set", f"max_epochs={done + 1}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"written to: {tmp_path / 'runs' / 'byol-1'}" in resumed.stdout


def test_reraised_rebuilds_the_user_error_a_traceback_text_ends_with() -> None:
    worker = (
        "Training failed due to worker errors:\n[Rank 0 Error Snippet]:\nTraceback (most recent call last):\n"
        "byol_tune.errors.DataError: Caught DataError in DataLoader worker process 0.\n"
        'Original Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
        "byol_tune.errors.DataError: image /d/0.png: unreadable image\n\n"
    )
    error = reraised(worker)
    assert type(error) is DataError and str(error) == "image /d/0.png: unreadable image"
    diverged = reraised("Traceback:\nbyol_tune.errors.DivergedError: learning_rate 1: diverged")
    assert type(diverged) is DivergedError and str(diverged) == "learning_rate 1: diverged"
    # a user error that led to another exception, a class that is not ours, no traceback at all: none
    chained = worker + "During handling of the above exception, another exception occurred:\nKeyError: 'x'\n"
    assert reraised(chained) is None
    assert reraised("byol_tune.errors.reason: not an error class") is None
    assert reraised("") is None


def test_a_bad_command_line_is_one_line_too(tmp_path: Path) -> None:
    proc = run_train("--bogus", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr
        == "error: unrecognized arguments: --bogus (python -m byol_tune.train --help lists the flags)\n"
    )


def test_one_line_of_an_error() -> None:
    """The CLI's error line and a search trial's error column come from this one function."""
    assert (
        one_line(DataError("Caught DataError in worker 0.\nbyol_tune.errors.DataError: bad image"))
        == "bad image"
    )
    assert one_line(RuntimeError("Traceback:\n  File x\nValueError: boom\n\n")) == "ValueError: boom"
    assert one_line(ConfigError("key: bad")) == "key: bad"
    assert one_line(KeyError()) == "KeyError"
