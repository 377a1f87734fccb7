"""RootCanal on free ports: it starts, devices reach it, it stops with its child; a failed
start says why."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.rootcanal import RootCanalUnavailable, free_ports, running_rootcanal, start_rootcanal


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.realistic
def test_rootcanal_listens_on_free_ports_and_stops_with_its_binary(tmp_path: Path) -> None:
    with running_rootcanal(log_dir=tmp_path) as rootcanal:
        assert rootcanal.transport == f"tcp-client:127.0.0.1:{rootcanal.hci_port}"
        ports = {rootcanal.hci_port, rootcanal.test_port, rootcanal.link_port}
        assert len(ports | {rootcanal.link_ble_port}) == 4
        with socket.create_connection(("127.0.0.1", rootcanal.hci_port), 2.0):
            pass  # a controller of our own, closed at once
        pgid = rootcanal.process.pid
        assert group_alive(pgid)
    # the wrapper and the binary it ran are gone, and the port is free again
    assert not group_alive(pgid)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", rootcanal.hci_port))


def test_a_rootcanal_that_exits_at_start_is_reported_with_its_reason(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(
        '#!/bin/sh\necho "$0: No module named rootcanal" >&2\nexit 1\n', encoding="utf-8"
    )
    fake.chmod(0o755)
    with pytest.raises(RootCanalUnavailable, match="No module named rootcanal") as info:
        start_rootcanal(log_dir=tmp_path, python=str(fake))
    assert "pip install" in str(info.value)


def test_a_missing_interpreter_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RootCanalUnavailable, match="no Python interpreter"):
        start_rootcanal(python=str(tmp_path / "nowhere" / "python"))


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.mark.realistic
def test_rootcanal_goes_when_the_process_that_started_it_is_killed() -> None:
    """SIGKILL (or a closed SSH session) gives no chance to clean up: Linux's parent-death
    signal stops RootCanal anyway, and its port is free again."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from harness.rootcanal import start_rootcanal\n"
            "r = start_rootcanal()\n"
            "print(r.hci_port, r.process.pid, flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        port, pid = map(int, owner.stdout.readline().split())
        rootcanal = os.pidfd_open(pid)  # readable once that process has exited
    finally:
        owner.kill()
        owner.wait()
    try:
        exited, _, _ = select.select([rootcanal], [], [], 10.0)
    finally:
        os.close(rootcanal)
    assert exited, "RootCanal outlived the process that started it"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # and its port is free again
