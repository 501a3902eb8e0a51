"""``python -m byol_tune.search``: the product's main job (see ``--help``)."""

from __future__ import annotations

import sys

from byol_tune.cli import run_cli
from byol_tune.search.cli import search_main

if __name__ == "__main__":
    sys.exit(run_cli(search_main, None))
