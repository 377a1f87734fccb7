"""The realistic lane: one payment over RootCanal, Google's virtual controller.

``python -m rootcanal`` (PyPI ``rootcanal``) is started on free ports by
:mod:`harness.rootcanal`;
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
import time
from dataclasses import dataclass

from bumble.device import Device
from bumble.hci import Address
from bumble.transport import open_transport
from bumble.transport.common import Transport

from bench.floor import floor_session
from bench.frames import FrameScript
from harness.fleet import Fleet, FleetConfig
from harness.rootcanal import RootCanal, RootCanalUnavailable, rootcanal_version, running_rootcanal

Unavailable = RootCanalUnavailable  # the bench's name for it


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
