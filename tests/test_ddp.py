"""Two-process CPU DDP (gloo): both ranks end with identical online and target weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import assert_ranks_identical

from byol_tune import metrics


@pytest.mark.ddp
def test_two_process_ddp_keeps_ranks_identical(tmp_path: Path) -> None:
    script = Path(__file__).with_name("ddp_run.py")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    env.pop("BYOL_TUNE_RUN_DIR", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_ranks_identical(tmp_path)
    # seeded alike for one starting model, the ranks then draw their views from different random states
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.equal(rank0["rng"], rank1["rng"])
    # one run folder shared by both ranks, with rank 0's outputs
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["byol"]
    assert (runs[0] / "backbone.pt").is_file()
    # each process's FitResult says its rank (the CLI prints rank 0's only); rank 0 wrote the backbone
    assert (tmp_path / "result_rank0.txt").read_text() == str(runs[0] / "backbone.pt")
    assert (tmp_path / "result_rank1.txt").read_text() == "None"
    history = (tmp_path / "history2.txt").read_text()
    assert metrics.KNN_TOP1 in history
