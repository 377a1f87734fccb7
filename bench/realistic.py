"""The realistic lane: one payment over RootCanal, Google's virtual controller.

``python -m rootcanal`` (PyPI ``rootcanal``, the ``bench`` extra) is started on free ports;
every TCP connection to its HCI port gets its own controller, and its link layer models
advertising and connection events on the wall clock. A one-member :class:`harness.fleet.Fleet`
on the wall clock (``fast=False``) is built with devices on ``tcp-client`` transports to it:
the same terminal, phone, app and backend as a world, over a realistic radio. The floor's
session (:mod:`bench.floor`) is replayed over RootCanal too.

When RootCanal is missing or does not start here (its wheels from 1.11 on need glibc 2.38),
:class:`Unavailable` says why and the bench prints it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bumble.device import Device
from bumble.hci import Address
from bumble.transport import open_transport
from bumble.transport.common import Transport

from bench.floor import floor_session
from bench.frames import FrameScript
from harness.fleet import Fleet, FleetConfig

START_TIMEOUT = 15.0


class Unavailable(Exception):
    """RootCanal cannot run here; the message says why."""


@dataclass(frozen=True)
class RootCanal:
    process: subprocess.Popen[bytes]
    hci_port: int
    log: Path

    @property
    def transport(self) -> str:
        return f"tcp-client:127.0.0.1:{self.hci_port}"


def rootcanal_version() -> str | None:
    """The installed ``rootcanal`` distribution's version, if any."""
    if importlib.util.find_spec("rootcanal") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rootcanal")
    except PackageNotFoundError:
        return "unknown"


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def running_rootcanal() -> Iterator[RootCanal]:
    """Start RootCanal on free ports; stop it on exit. :class:`Unavailable` if it cannot."""
    if rootcanal_version() is None:
        raise Unavailable("PyPI package rootcanal is not installed (pip install -e '.[bench]')")
    hci, test, link, link_ble = free_ports(4)
    with tempfile.TemporaryDirectory(prefix="tpe-sim-rootcanal-") as tmp:
        log = Path(tmp) / "rootcanal.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rootcanal",
                    f"-hci_port={hci}",
                    f"-test_port={test}",
                    f"-link_port={link}",
                    f"-link_ble_port={link_ble}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # its own process group: `python -m rootcanal` runs the binary as a child,
                # which must be stopped with it
                start_new_session=True,
            )
        try:
            _wait_for_port(process, hci, log)
            yield RootCanal(process, hci, log)
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop RootCanal's process group: the wrapper and the binary it runs as a child."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        process.poll()  # reap the wrapper, or the group never looks empty
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            lines = log.read_text(errors="replace").strip().splitlines()
            why = next((line for line in lines if "not found" in line), None) or (
                lines[-1] if lines else f"exit status {process.returncode}"
            )
            raise Unavailable(f"rootcanal exited at start: {why.strip()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            # A probe connection gets a controller of its own, closed at once: harmless.
            return
        time.sleep(0.05)
    raise Unavailable(f"rootcanal did not listen on port {port} within {START_TIMEOUT:g} s")


class TransportDevices:
    """A device factory: each device on its own ``tcp-client`` transport to RootCanal."""

    def __init__(self, rootcanal: RootCanal) -> None:
        self.rootcanal = rootcanal
        self.transports: list[Transport] = []

    async def __call__(self, name: str, address: str) -> Device:
        transport = await open_transport(self.rootcanal.transport)
        self.transports.append(transport)
        return Device.with_hci(name, Address(address), transport.source, transport.sink)

    async def close(self) -> None:
        for transport in self.transports:
            await transport.close()
        self.transports.clear()


@dataclass(frozen=True)
class RealisticResult:
    rootcanal_version: str
    payment_wall: float  # Fleet() to close, one member
    pay_wall: float  # pay_all only: scan, pair, register, pay, tap, authorise, result
    floor_wall: float  # the floor's session over RootCanal
    teardown_errors: list[str]  # what failed while closing the fleet (a finding, not fatal)


def one_payment_over_rootcanal(script: FrameScript) -> RealisticResult:
    """Start RootCanal, pay once over it (and replay the floor); :class:`Unavailable` if
    RootCanal cannot run here."""
    version = rootcanal_version() or "?"
    with running_rootcanal() as rootcanal:
        devices = TransportDevices(rootcanal)
        started = time.perf_counter()
        fleet = Fleet(FleetConfig(size=1, fast=False), device_factory=devices)
        fleet.cleanups.append(devices.close)
        try:
            fleet.open()
            pay_started = time.perf_counter()
            outcomes = fleet.pay_all()
            pay_wall = time.perf_counter() - pay_started
        finally:
            fleet.close()
        payment_wall = time.perf_counter() - started
        teardown_errors = [repr(exc) for exc in fleet.teardown_errors]
        if [o.invoice.get("status") for o in outcomes] != ["paid"]:
            raise RuntimeError(f"the payment over RootCanal did not pay: {outcomes}")
        floor_wall = _floor_over(rootcanal, script)
    return RealisticResult(version, payment_wall, pay_wall, floor_wall, teardown_errors)


def _floor_over(rootcanal: RootCanal, script: FrameScript) -> float:
    async def session() -> None:
        devices = TransportDevices(rootcanal)
        try:
            await floor_session(script, devices)
        finally:
            await devices.close()

    started = time.perf_counter()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(session())
    finally:
        loop.close()
    return time.perf_counter() - started
