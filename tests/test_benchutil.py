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


def test_count_flops_counts_forward_and_backward_matrix_products() -> None:
    """Linear(4, 3) on a batch of 2: the forward addmm is 2*4*3 multiply-adds, and the backward has two
    products of the same size (gradient of the input, of the weight): 3 x 24 x 2 FLOPs."""
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4, requires_grad=True)
    assert benchutil.count_flops(lambda: layer(x).sum().backward()) == 144
    with torch.no_grad():
        assert benchutil.count_flops(lambda: layer(x)) == 48


def test_bf16_peak_is_the_given_one_else_the_gpu_name_s(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    assert benchutil.bf16_peak_tflops(torch.device("cpu")) is None
    assert benchutil.bf16_peak_tflops(torch.device("cpu"), 10.0) == 10.0
    for name, peak in [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("Tesla T4", None),
    ]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert benchutil.bf16_peak_tflops(cuda) == peak, name
