"""The cluster watch that ends a search whose Ray processes a process-group SIGTERM stopped too."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from byol_tune.search.interrupt import host_port, resume_line, watch_cluster


def listening() -> tuple[socket.socket, str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, f"127.0.0.1:{server.getsockname()[1]}"


def test_watch_calls_on_lost_once_the_gcs_stops_answering() -> None:
    server, address = listening()
    done, lost = threading.Event(), threading.Event()
    watch = threading.Thread(target=watch_cluster, args=(address, done, lost.set, 0.05))
    watch.start()
    assert not lost.wait(0.3)  # the GCS answers: nothing happens
    server.close()
    assert lost.wait(5)
    watch.join(5)
    assert not watch.is_alive()


def test_watch_ends_quietly_when_the_fit_is_done() -> None:
    server, address = listening()
    done, lost = threading.Event(), threading.Event()
    watch = threading.Thread(target=watch_cluster, args=(address, done, lost.set, 0.05))
    watch.start()
    done.set()
    watch.join(5)
    server.close()
    assert not watch.is_alive() and not lost.is_set()


def test_resume_line() -> None:
    assert resume_line(Path("/r/x")) == "continue with: python -m byol_tune.search --resume /r/x"


def test_host_port_reads_ray_addresses_ipv6_included() -> None:
    assert host_port("192.0.2.2:33047") == ("192.0.2.2", 33047)
    assert host_port("[::1]:6379") == ("::1", 6379)  # Ray's build_address brackets an IPv6 host
    assert host_port("head.example:6379") == ("head.example", 6379)
