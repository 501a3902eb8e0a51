"""End-to-end search through the real CLI on tiny data (slow: starts a Ray cluster; run in CI)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from formats import write_cifar10, write_image_folder
from tiny import run_module

from byol_tune.config import load_config, make_config, save_config
from byol_tune.core.fit import fit, load_backbone_state
from byol_tune.errors import ConfigError
from byol_tune.search.ray_train import Resources
from byol_tune.search.tuner import SearchSettings

SPACE = """
search: {num_samples: 4, max_epochs: 4, grace_period: 1, reduction_factor: 2, max_concurrent: 1}
space:
  shapes_train_size: 256
  shapes_val_size: 64
  batch_size: 32
  knn_k: 20
  eval_every: 1
  linear_probe: false
  learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
  tau_base: {one_minus_loguniform: [0.9, 0.999]}
  projector_hidden_dim: {choice: [32, 64]}
  projector_out_dim: 32
  predictor_hidden_dim: 64
"""


def _search_args(space: Path, tmp_path: Path) -> list[str]:
    """The search CLI's arguments for the tiny space, into ``tmp_path/runs/tiny``."""
    return ["--space", str(space), "--storage-path", str(tmp_path / "runs"), "--name", "tiny"]


@pytest.mark.slow
def test_search_cli_end_to_end(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    # TPE models the results from the third trial on (the default, 10 random trials, never gets there)
    args = (*_search_args(space, tmp_path), "--tpe-startup-trials", "2")
    proc = run_module("byol_tune.search", *args, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Ray dashboard: http://127.0.0.1:" in proc.stdout and "ray get-auth-token" in proc.stdout
    assert "in the trial process" in proc.stdout  # one worker: no TorchTrainer, two processes fewer
    experiment = tmp_path / "runs" / "tiny"
    for name in (
        "best_config.yaml",
        "trials.csv",
        "summary.md",
        "plots/objective_per_trial.png",
        "plots/learning_curves.png",
        "plots/parallel_coordinates.png",
    ):
        assert (experiment / name).is_file(), name
    rows = list(csv.DictReader((experiment / "trials.csv").open()))
    assert len(rows) == 4
    assert all(row["status"] in ("completed", "stopped early") for row in rows)
    assert any(row["status"] == "stopped early" for row in rows), "ASHA stopped no trial"
    assert all(int(row["epochs_run"]) >= 1 for row in rows)
    assert sum(int(row["epochs_run"]) >= 2 for row in rows) >= 1
    trial_dirs = [d for d in experiment.iterdir() if d.name.startswith("train_driver_fn")]
    assert len(trial_dirs) == 4
    assert all(list(d.glob("tensorboard/events.out.tfevents.*")) for d in trial_dirs)
    # the best config is complete: the plain trainer loads and trains it
    config = load_config(
        experiment / "best_config.yaml", ["max_epochs=1", f"output_dir={tmp_path / 'again'}"]
    )
    assert config.shapes_train_size == 256
    assert "knn_top1" in fit(config, progress_bar=False).metrics
    # and the search's best config trains again through Ray Train, then exports
    proc = run_module(
        "byol_tune.train", "--from-search", str(experiment), "--max-epochs", "1", cwd=tmp_path, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "torch.jit.trace` is deprecated" not in proc.stderr  # the documented TorchScript export
    final = experiment / "final"
    scripted = torch.jit.load(str(final / "backbone_torchscript.pt"))
    assert scripted(torch.randn(2, 3, 32, 32)).shape == (2, 256)
    state = torch.load(final / "backbone.pt", weights_only=True)
    assert state.keys() == load_backbone_state(final / "backbone.pt").keys()
    assert "knn_top1" in json.loads((final / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
def test_search_through_torch_trainer(tmp_path: Path) -> None:
    """``--runner train``: each trial is a Ray Train TorchTrainer run, reported to Tune the same way."""
    space = tmp_path / "tiny.yaml"
    space.write_text(
        SPACE.replace("num_samples: 4", "num_samples: 2").replace("max_epochs: 4", "max_epochs: 2")
    )
    args = [*_search_args(space, tmp_path), "--runner", "train"]
    proc = run_module("byol_tune.search", *args, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Ray Train TorchTrainer" in proc.stdout
    rows = list(csv.DictReader((tmp_path / "runs" / "tiny" / "trials.csv").open()))
    assert len(rows) == 2 and all(int(row["epochs_run"]) >= 1 for row in rows)
    trial_dirs = [d for d in (tmp_path / "runs" / "tiny").iterdir() if d.name.startswith("train_driver_fn")]
    assert all((d / "train").is_dir() for d in trial_dirs)  # the TorchTrainer's run inside each trial


def test_workers_train_with_their_share_of_cores_rounded() -> None:
    # Ray gives a 1.9-CPU trial OMP_NUM_THREADS=1, which idles half of a 2-core machine
    threads = [Resources(cpus_per_worker=c).torch_threads() for c in (0.1, 0.9, 1.4, 1.9, 4.0)]
    assert threads == [1, 1, 1, 2, 4]


def test_tpe_starts_with_optunas_ten_random_trials() -> None:
    assert SearchSettings().tpe_startup_trials == 10  # a default search (10 trials) samples at random
    with pytest.raises(ConfigError, match="--tpe-startup-trials: must be >= 1, got 0"):
        SearchSettings(tpe_startup_trials=0)


def test_in_trial_runner_needs_one_worker(tmp_path: Path) -> None:
    args = ("--runner", "trial", "--workers-per-trial", "2", "--storage-path", str(tmp_path / "runs"))
    proc = run_module("byol_tune.search", *args, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        "--runner trial: trains one worker in the trial's process; got --workers-per-trial 2" in proc.stderr
    )


def test_search_bad_space_is_one_line(tmp_path: Path) -> None:
    space = tmp_path / "bad.yaml"
    space.write_text("space:\n  learning_rate: {loguniform: [0.1, 0.01]}\n")
    proc = run_module("byol_tune.search", "--space", str(space), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "low 0.1 > high 0.01" in proc.stderr and not (tmp_path / "runs").exists()


def test_resume_of_missing_experiment_is_one_line(tmp_path: Path) -> None:
    proc = run_module("byol_tune.search", "--resume", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2 and "no such experiment folder" in proc.stderr
    proc = run_module("byol_tune.train", "--from-search", str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2 and "no such experiment folder" in proc.stderr


@pytest.mark.slow
def test_from_search_unreadable_image_is_one_line_with_a_relative_data_dir(tmp_path: Path) -> None:
    """A relative data_dir is taken from where the command runs (the Ray workers run elsewhere); an image
    that breaks only in a worker's DataLoader comes back as the one line naming the file."""
    root = write_image_folder(tmp_path / "imgs", per_class=4)
    broken = root / "train" / "class0" / "0.png"
    broken.write_bytes(b"not a png")
    experiment = tmp_path / "exp"
    experiment.mkdir()
    values = {"dataset": "imagefolder", "data_dir": "imgs", "image_size": 32, "batch_size": 4}
    save_config(make_config({**values, "max_epochs": 1}), experiment / "best_config.yaml")
    proc = run_module("byol_tune.train", "--from-search", str(experiment), cwd=tmp_path, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"error: image {broken}: unreadable image"), proc.stderr[
        -3000:
    ]


@pytest.mark.slow
def test_search_where_every_trial_diverges_says_why_and_keeps_the_record(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(
        SPACE.replace("num_samples: 4, max_epochs: 4", "num_samples: 2, max_epochs: 1").replace(
            "{loguniform: [1.0e-4, 1.0e-2]}", "{loguniform: [1.0e+11, 1.0e+12]}"
        )
    )
    proc = run_module("byol_tune.search", *_search_args(space, tmp_path), cwd=tmp_path, timeout=600)
    experiment = tmp_path / "runs" / "tiny"
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.splitlines()[-1]
    assert last.startswith(f"error: {experiment}: no trial reported knn_top1; 2 of 2 trial(s) failed, the ")
    assert "training diverged by epoch 1" in last and last.endswith("; see trials.csv there")
    with (experiment / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["error", "error"]
    for row in rows:  # the message, not the class's traceback line
        assert row["error"].startswith("learning_rate ") and "training diverged by epoch 1" in row["error"]
    assert not (experiment / "best_config.yaml").exists()
    # Tune retries a failed trial once (max_failures=1): the retry repeated the divergence from the
    # trial's failed.txt instead of training again, so each trial logged one run to TensorBoard
    trials = sorted(experiment.glob("train_driver_fn_*"))
    assert len(trials) == 2
    for trial in trials:
        assert "training diverged by epoch 1" in (trial / "failed.txt").read_text()
        assert len(list((trial / "tensorboard").glob("events.out.tfevents.*"))) == 1, trial


def _finished_trials(experiment: Path, epochs: int) -> set[str]:
    done = set()
    for progress in experiment.glob("train_driver_fn_*/progress.csv"):
        rows = list(csv.DictReader(progress.open()))
        if rows and int(float(rows[-1].get("epoch") or 0)) >= epochs:
            done.add(progress.parent.name)
    return done


@pytest.mark.slow
def test_resume_after_kill_keeps_finished_trials(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(
        SPACE.replace("num_samples: 4", "num_samples: 3").replace("grace_period: 1", "grace_period: 4")
    )
    experiment = tmp_path / "runs" / "tiny"
    args = [sys.executable, "-m", "byol_tune.search", *_search_args(space, tmp_path)]
    proc = subprocess.Popen(
        args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while not _finished_trials(experiment, 4) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(2)
    finished = _finished_trials(experiment, 4)
    assert finished and proc.poll() is None, "no trial finished before the search ended"
    os.killpg(proc.pid, signal.SIGKILL)  # no chance to clean up: as if the machine went away
    proc.wait()
    before = {name: (experiment / name / "progress.csv").read_text() for name in finished}
    searched = space.read_text()
    space.write_text(searched.replace("knn_k: 20", "knn_k: 7"))  # edited after the search started
    resumed = run_module("byol_tune.search", "--resume", str(experiment), cwd=tmp_path, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    for name, text in before.items():  # finished trials were kept, not rerun
        assert (experiment / name / "progress.csv").read_text() == text
    rows = list(csv.DictReader((experiment / "trials.csv").open()))
    assert len(rows) == 3 and (experiment / "best_config.yaml").is_file()
    assert (experiment / "space.yaml").read_text() == searched  # the resume read this copy
    assert load_config(experiment / "best_config.yaml").knn_k == 20


def test_unreachable_address_is_one_line(tmp_path: Path) -> None:
    proc = run_module("byol_tune.search", "--address", "127.0.0.1:9", "--storage-path", ".", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: --address 127.0.0.1:9: no Ray head answers there")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.slow
def test_search_joins_a_token_auth_cluster_started_with_ray_start(tmp_path: Path) -> None:
    """``ray start --head`` with token auth, then ``--address HOST:PORT`` from the head's machine: the
    search finds the token itself (Ray caches its auth mode at import, before the search decides)."""
    from byol_tune.search.ray_train import free_port

    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE.replace("num_samples: 4, max_epochs: 4", "num_samples: 1, max_epochs: 1"))
    home = tmp_path / "home"  # the head writes its token to HOME/.ray/auth_token
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(home)}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray_cli, "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
    port, log = free_port(), tmp_path / "head.log"
    ports = ("--dashboard-port", "--dashboard-agent-listen-port", "--ray-client-server-port")
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--num-cpus", "2",
         "--port", str(port), *(a for flag in ports for a in (flag, str(free_port()))),
         "--disable-usage-stats"],
        env=env | {"RAY_AUTH_MODE": "token"}, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        args = (*_search_args(space, tmp_path), "--address", f"127.0.0.1:{port}")
        proc = subprocess.run(
            [sys.executable, "-m", "byol_tune.search", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=120)
        current = Path("/tmp/ray/ray_current_cluster")  # the stopped head leaves its address there
        if current.is_file() and current.read_text().strip().endswith(f":{port}"):
            current.unlink()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Unauthenticated" not in proc.stderr  # no GCS retries before connecting
    assert (tmp_path / "runs" / "tiny" / "best_config.yaml").is_file()


@pytest.mark.slow
def test_local_cluster_ignores_a_stale_address(tmp_path: Path) -> None:
    """With no --address the search starts its own cluster, even where RAY_ADDRESS (or a `ray start` head
    killed without `ray stop`, through /tmp/ray/ray_current_cluster) names one that is gone."""
    code = "\n".join(
        [
            "import ray",
            "from byol_tune.search.ray_train import init_ray",
            "init_ray(None, num_cpus=1)",
            "ray.shutdown()",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path, env=os.environ | {"RAY_ADDRESS": "127.0.0.1:9"}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_ctrl_c_stops_the_final_training_with_one_line(tmp_path: Path) -> None:
    """Ray Train's own Ctrl-C handler ended --from-search with exit code 1 and no word; it is exit 130
    and one line naming the unfinished folder."""
    experiment = tmp_path / "exp"
    experiment.mkdir()
    save_config(make_config({"max_epochs": 40, "linear_probe": False}), experiment / "best_config.yaml")
    args = [sys.executable, "-m", "byol_tune.train", "--from-search", str(experiment)]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while (
        not list(experiment.glob("final/tensorboard/*"))
        and time.monotonic() < deadline
        and proc.poll() is None
    ):
        time.sleep(1)  # a worker is training: epoch 1 of 40
    assert proc.poll() is None, "the final training ended before the interrupt"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.splitlines()[-1] == (
        f"interrupted: the final training in {experiment / 'final'} stopped before it finished; no model "
        "exported there"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGTERM, True)],
    ids=["SIGINT", "SIGTERM", "SIGTERM-to-the-group"],
)
def test_ctrl_c_stops_the_search_without_a_best_config(tmp_path: Path, signum: int, group: bool) -> None:
    """Tune takes the first Ctrl-C and returns as if finished; the search must not report a best. A
    SIGTERM (kill, a scheduler's time limit) does the same; sent to the whole process group (timeout,
    kill -- -PGID), it stops the local Ray cluster too, and the search still ends with the resume line."""
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE.replace("num_samples: 4, max_epochs: 4", "num_samples: 3, max_epochs: 40"))
    experiment = tmp_path / "runs" / "tiny"
    args = [sys.executable, "-m", "byol_tune.search", *_search_args(space, tmp_path), "--scheduler", "none"]
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,  # its own process group, as under timeout or a batch scheduler
    )
    deadline = time.monotonic() + 600
    while not _finished_trials(experiment, 2) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(1)  # the first trial is in its third epoch of 40: the search is far from done
    assert proc.poll() is None, "the search ended before the interrupt"
    signalled = time.monotonic()
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)  # SIGINT: what Ctrl-C sends to the driver
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    assert f"continue with: python -m byol_tune.search --resume {experiment}" in stderr.splitlines()[-1]
    assert not (experiment / "best_config.yaml").exists()
    if group:  # not Ray's 60 s of retries to reach its stopped GCS, and its dump
        assert time.monotonic() - signalled < 30
        # resumable as after a SIGKILL to the group: test_resume_after_kill_keeps_finished_trials


@pytest.mark.slow
def test_search_with_a_relative_data_dir(tmp_path: Path) -> None:
    """Trials run in Ray's folders: a relative data_dir (the shipped CIFAR configs use one) is taken from
    where the search started, and best_config.yaml keeps it whole."""
    write_cifar10(tmp_path / "data" / "c10", per_batch=16)
    space = tmp_path / "tiny.yaml"
    space.write_text(
        SPACE.replace("num_samples: 4, max_epochs: 4", "num_samples: 1, max_epochs: 1").replace(
            "shapes_train_size: 256\n  shapes_val_size: 64\n", "dataset: cifar10\n  data_dir: data/c10\n"
        )
    )
    proc = run_module("byol_tune.search", *_search_args(space, tmp_path), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    best = load_config(tmp_path / "runs" / "tiny" / "best_config.yaml")
    assert best.data_dir == str(tmp_path / "data" / "c10")


def test_search_refuses_a_batch_larger_than_the_data_before_ray(tmp_path: Path) -> None:
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE.replace("batch_size: 32", "batch_size: {choice: [32, 512]}"))
    proc = run_module("byol_tune.search", *_search_args(space, tmp_path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr == "error: batch_size 512 exceeds the training split's 256 samples\n"
    assert not (tmp_path / "runs").exists()  # refused before Ray started or any folder was made
