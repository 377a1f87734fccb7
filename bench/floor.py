"""The floor: what Bumble alone costs for a payment's worth of BLE traffic.

Two plain Bumble stacks (no terminal engine, no app, no backend) on a fresh ``LocalLink`` in a
fresh looptime loop, as a world builds them: power on, the peripheral advertises (a LocalLink
connection needs an advertiser), the central connects to its address (no scan), raises the
MTU to 517, pairs with LE Secure Connections and numeric comparison (both sides confirm at
once), discovers the one service, subscribes; then it replays the frames of a real payment
(:mod:`bench.frames`): each write with response, each notification waited for by the central;
then disconnects and powers off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import looptime
from bumble import gatt
from bumble.controller import Controller
from bumble.core import UUID
from bumble.device import Connection, Device, Peer
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.transport.common import AsyncPipeSink

from bench.frames import FrameScript

SERVICE_UUID = UUID("0b3e0001-5a1d-4c1e-9d7e-0b3e0b3e0b3e")
WRITE_UUID = UUID("0b3e0002-5a1d-4c1e-9d7e-0b3e0b3e0b3e")
NOTIFY_UUID = UUID("0b3e0003-5a1d-4c1e-9d7e-0b3e0b3e0b3e")
PERIPHERAL_ADDRESS = "C1:0F:00:00:00:01"
CENTRAL_ADDRESS = "C2:0F:00:00:00:01"
ADVERTISING_INTERVAL_MS = 250  # the terminal profile's

#: Builds a device (name, address) inside the running loop.
DeviceFactory = Callable[[str, str], Awaitable[Device]]


class _Confirm(PairingDelegate):
    """Numeric comparison, confirmed at once on both sides."""

    def __init__(self) -> None:
        super().__init__(io_capability=PairingDelegate.DISPLAY_OUTPUT_AND_YES_NO_INPUT)

    async def compare_numbers(self, number: int, digits: int) -> bool:
        return True

    async def confirm(self, auto: bool = False) -> bool:
        return True


def _pairing_config(_connection: Connection) -> PairingConfig:
    return PairingConfig(
        sc=True,
        mitm=True,
        bonding=True,
        delegate=_Confirm(),
        identity_address_type=PairingConfig.AddressType.RANDOM,
    )


def local_link_factory() -> DeviceFactory:
    """Devices on one new ``LocalLink`` (call inside the loop)."""
    link = LocalLink()  # type: ignore[no-untyped-call]

    async def make(name: str, address: str) -> Device:
        controller = Controller(name, link=link, public_address=address)
        return Device(
            name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller))
        )

    return make


async def floor_session(script: FrameScript, factory: DeviceFactory | None = None) -> None:
    """One session of the floor (see the module docstring)."""
    make = factory or local_link_factory()
    peripheral = await make("floor-peripheral", PERIPHERAL_ADDRESS)
    central = await make("floor-central", CENTRAL_ADDRESS)
    written = asyncio.Event()

    def on_write(_connection: Connection, _value: bytes) -> None:
        written.set()

    write_char: gatt.Characteristic[bytes] = gatt.Characteristic(
        WRITE_UUID,
        properties=gatt.Characteristic.Properties.WRITE,
        permissions=gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION,
        value=gatt.CharacteristicValue(write=on_write),
    )
    notify_char: gatt.Characteristic[bytes] = gatt.Characteristic(
        NOTIFY_UUID,
        properties=gatt.Characteristic.Properties.NOTIFY,
        permissions=gatt.Characteristic.READ_REQUIRES_ENCRYPTION,
        value=b"",
    )
    peripheral.add_service(gatt.Service(SERVICE_UUID, [write_char, notify_char]))
    peripheral.pairing_config_factory = _pairing_config
    central.pairing_config_factory = _pairing_config
    incoming: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
    peripheral.once(peripheral.EVENT_CONNECTION, incoming.set_result)

    await peripheral.power_on()
    await central.power_on()
    await peripheral.start_advertising(
        auto_restart=False,
        advertising_interval_min=ADVERTISING_INTERVAL_MS,
        advertising_interval_max=ADVERTISING_INTERVAL_MS,
    )
    connection = await central.connect(peripheral.random_address, timeout=30.0)
    peripheral_side = await incoming
    peer = Peer(connection)
    await peer.request_mtu(517)
    await connection.pair()
    await peer.discover_services([SERVICE_UUID])
    service = peer.get_services_by_uuid(SERVICE_UUID)[0]
    await service.discover_characteristics()
    command = service.get_characteristics_by_uuid(WRITE_UUID)[0]
    event = service.get_characteristics_by_uuid(NOTIFY_UUID)[0]
    notified = asyncio.Event()
    await peer.subscribe(event, lambda _value: notified.set())

    for op, size in script.steps:
        if op == "write":
            await peer.write_value(command, bytes(size), with_response=True)
        else:
            notified.clear()
            await peripheral.notify_subscriber(peripheral_side, notify_char, bytes(size))
            await asyncio.wait_for(notified.wait(), 30.0)

    await connection.disconnect()
    await central.power_off()
    await peripheral.power_off()


def run_floor_once(script: FrameScript) -> float:
    """Wall seconds of one floor session in a fresh looptime loop (as a world's)."""
    started = time.perf_counter()
    loop = looptime.new_event_loop(start=0.0)
    try:
        loop.run_until_complete(floor_session(script))
        _drain(loop)
    finally:
        loop.close()
    return time.perf_counter() - started


def _drain(loop: asyncio.AbstractEventLoop) -> None:
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
