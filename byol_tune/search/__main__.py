"""``python -m byol_tune.search``: the product's main job (see ``--help``)."""

from __future__ import annotations

import sys

from byol_tune.cli import run_cli


def _main(argv: list[str] | None) -> int:
    """Imports the search (torch and Ray: seconds) inside ``run_cli``, so a Ctrl-C meanwhile is one line."""
    from byol_tune.search.cli import search_main

    return search_main(argv)


if __name__ == "__main__":
    sys.exit(run_cli(_main, None))
