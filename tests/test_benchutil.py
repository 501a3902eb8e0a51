"""The benchmarks' shared timing helpers keep the peer's and our loaders on equal terms."""

from __future__ import annotations

from pathlib import Path

import benchutil
import lightning as L
import pytest
import torch
from tiny import quiet_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader() -> DataLoader:
    data = TensorDataset(torch.randn(8, 2))
    return DataLoader(data, batch_size=2, num_workers=1, persistent_workers=True)


def test_lightning_stops_a_loaders_workers_after_fit_unless_kept() -> None:
    plain = _loader()
    quiet_trainer(max_steps=2).fit(_Tiny(), plain)
    assert plain._iterator is None  # Lightning shut the persistent workers down at the end of fit
    kept = _loader()
    quiet_trainer(max_steps=2).fit(_Tiny(), benchutil.KeepWorkers(kept))
    workers = kept._iterator._workers  # type: ignore[union-attr]
    assert workers and all(w.is_alive() for w in workers)  # alive for the next round's fresh iterator
    quiet_trainer(max_steps=2).fit(_Tiny(), benchutil.KeepWorkers(kept))
    assert kept._iterator._workers == workers  # type: ignore[union-attr]  # the same processes
    assert len(benchutil.KeepWorkers(kept)) == 4
    kept._iterator._shutdown_workers()  # type: ignore[union-attr]


def test_native_bf16_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    real = Path.read_text

    def read(path: Path, *args: object, **kwargs: object) -> str:
        return real(cpuinfo if str(path) == "/proc/cpuinfo" else path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read)
    cpuinfo.write_text("flags\t\t: fpu avx2 fma avx512f\n")
    assert benchutil.cpu_bf16_flags() == [] and not benchutil.native_bf16(torch.device("cpu"))
    cpuinfo.write_text("flags\t\t: fpu avx2 avx512_bf16 amx_tile amx_bf16\n")
    assert benchutil.cpu_bf16_flags() == ["amx_bf16", "avx512_bf16"]
    assert benchutil.native_bf16(torch.device("cpu"))
