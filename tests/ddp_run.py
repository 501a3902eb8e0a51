"""Run by tests/test_ddp.py: a 2-process CPU DDP fit (gloo) whose ranks dump their final weights.

Lightning's DDP launcher starts rank 1 by re-running this script with the same arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tiny import TINY, DumpWeights

from byol_tune.core.fit import fit

if __name__ == "__main__":
    out = Path(sys.argv[1])
    result = fit(
        {
            **TINY,
            "accelerator": "cpu",
            "devices": 2,
            "strategy": "ddp",
            "output_dir": str(out / "runs"),
            "linear_probe": False,
        },
        progress_bar=False,
        callbacks=[DumpWeights(out)],
    )
    (out / f"history{result.history and len(result.history)}.txt").write_text(repr(result.history))
    (out / f"result_rank{result.global_rank}.txt").write_text(str(result.backbone_path))
