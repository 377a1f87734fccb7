"""The payment GATT service, server side and client side together.

One custom 128-bit service with two characteristics:

* **command** (phone -> terminal): write with response. Each write carries one frame of a
  command (see :mod:`simulator.protocol.framing`).
* **event** (terminal -> phone): notify. Each notification carries one frame of an event.

Write Without Response is not offered: Bumble drops such writes silently on a protected
characteristic, and the phone must learn of every refusal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bumble import att, gatt, gatt_client
from bumble.core import UUID
from bumble.device import Connection

PAYMENT_SERVICE_UUID = UUID("7e5a0001-8d1c-4b6e-9f2a-1d3c5b7e9a01")
COMMAND_CHARACTERISTIC_UUID = UUID("7e5a0002-8d1c-4b6e-9f2a-1d3c5b7e9a01")
EVENT_CHARACTERISTIC_UUID = UUID("7e5a0003-8d1c-4b6e-9f2a-1d3c5b7e9a01")

WriteHandler = Callable[[Connection, bytes], Awaitable[None]]


def _not_readable(_connection: Connection) -> bytes:
    """A read of the write-only command characteristic: refused at once with the ATT error
    a peer expects (a generic GATT browser such as ``bumble-gatt-dump`` reads everything;
    without this Bumble has no read function, logs a traceback and never answers)."""
    raise att.ATT_Error(att.ATT_READ_NOT_PERMITTED_ERROR)


class PaymentService(gatt.TemplateService):
    """Server side, hosted by the terminal."""

    UUID = PAYMENT_SERVICE_UUID

    def __init__(self, on_command_frame: WriteHandler) -> None:
        self.command_characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            COMMAND_CHARACTERISTIC_UUID,
            properties=gatt.Characteristic.Properties.WRITE,
            permissions=gatt.Characteristic.WRITE_REQUIRES_ENCRYPTION,
            value=gatt.CharacteristicValue(read=_not_readable, write=on_command_frame),
        )
        self.event_characteristic: gatt.Characteristic[bytes] = gatt.Characteristic(
            EVENT_CHARACTERISTIC_UUID,
            properties=gatt.Characteristic.Properties.NOTIFY,
            permissions=gatt.Characteristic.READ_REQUIRES_ENCRYPTION,
            value=b"",
        )
        super().__init__([self.command_characteristic, self.event_characteristic])


class PaymentServiceProxy(gatt_client.ProfileServiceProxy):
    """Client side, used by the phone."""

    SERVICE_CLASS = PaymentService

    def __init__(self, service_proxy: gatt_client.ServiceProxy) -> None:
        self.service_proxy = service_proxy
        self.command = service_proxy.get_required_characteristic_by_uuid(
            COMMAND_CHARACTERISTIC_UUID
        )
        self.event = service_proxy.get_required_characteristic_by_uuid(EVENT_CHARACTERISTIC_UUID)
