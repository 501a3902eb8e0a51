"""Stopping a search: Ctrl-C and SIGTERM end it resumably, with the ``--resume`` line last."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

RAY_GONE_EXIT = 130  # as after Ctrl-C: the search stopped and can be resumed


def resume_line(experiment: Path) -> str:
    return f"continue with: python -m byol_tune.search --resume {experiment}"


def fit_noting_interrupt(tuner: Any, resume: str, own_cluster: bool) -> tuple[Any, bool]:
    """``tuner.fit()``, and whether a Ctrl-C or a SIGTERM stopped it. Tune takes the first SIGINT
    itself: it saves the experiment, returns normally, and puts back the handler it found, which is ours
    (a second Ctrl-C then raises KeyboardInterrupt, as Python's default would). Without an interrupt
    Tune's own handler is still in place when fit returns. A SIGTERM (``kill``, a batch scheduler's time
    limit) is turned into a SIGINT, so it too stops the search resumably; Ray's own SIGTERM handler
    would kill the driver with a stack dump and no resume hint. Later SIGTERMs are ignored: Tune is
    saving. A SIGTERM sent to the whole process group stops the processes of a cluster the search started
    (``own_cluster``) too: :func:`watch_cluster` then ends the driver with ``resume`` (the ``--resume``
    line) as its last line."""
    import ray

    gcs = ray.get_runtime_context().gcs_address if own_cluster else None
    done = threading.Event()
    terminated: list[bool] = []

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def as_ctrl_c(signum: int, frame: Any) -> None:
        if terminated:
            return
        terminated.append(True)
        if gcs:
            lost = (
                f"interrupted: the Ray cluster stopped too (a SIGTERM to the whole process group); {resume}"
            )
            watch = threading.Thread(target=watch_cluster, args=(gcs, done, lambda: _exit(lost)), daemon=True)
            watch.start()
        signal.raise_signal(signal.SIGINT)

    tune_catches = not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))
    previous = signal.signal(signal.SIGINT, raise_interrupt)
    previous_term = signal.signal(signal.SIGTERM, as_ctrl_c)
    try:
        grid = tuner.fit()
        return grid, tune_catches and signal.getsignal(signal.SIGINT) is raise_interrupt
    finally:
        done.set()
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)


def watch_cluster(
    gcs_address: str, done: threading.Event, on_lost: Callable[[], None], every: float = 0.1
) -> None:
    """Until ``done``: call ``on_lost`` once the cluster's GCS refuses connections at ``gcs_address``
    (``HOST:PORT``, ``[IPv6]:PORT``) twice in a row; a slow or failed connect of another kind is no
    proof that it is gone.

    After a SIGTERM to the whole process group (``timeout``, ``kill -- -PGID``, a batch scheduler) the
    GCS is gone and Tune can save nothing more. Ray's core worker would end the driver with exit 1 and
    no resume hint: after 60 s of retries, or at once when it notices its raylet is gone (a race this
    watch, checking every ``every`` s, usually wins). What Tune saved last is resumable."""
    host, port = host_port(gcs_address)
    refused = 0
    while not done.is_set():  # at once, then every ``every`` s: the core worker may end the driver first
        try:
            socket.create_connection((host, port), timeout=3.0).close()
            refused = 0
        except ConnectionRefusedError:
            refused += 1
            if refused == 2:
                if not done.is_set():
                    on_lost()
                return
        except OSError:
            refused = 0
        done.wait(every)


def host_port(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` (as Ray writes addresses) as a host and a port number."""
    host, _, port = address.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _exit(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(RAY_GONE_EXIT)  # the main thread is stuck in Ray's calls: no exception would reach it
