"""Bumble lives here and only here (on the terminal's side)."""

from simulator.ble.payment_service import (
    COMMAND_CHARACTERISTIC_UUID,
    EVENT_CHARACTERISTIC_UUID,
    PAYMENT_SERVICE_UUID,
    PaymentService,
    PaymentServiceProxy,
)
from simulator.ble.storage import TerminalDataFolder, set_aside_if_unreadable
from simulator.ble.terminal import BleTerminal

__all__ = [
    "COMMAND_CHARACTERISTIC_UUID",
    "EVENT_CHARACTERISTIC_UUID",
    "PAYMENT_SERVICE_UUID",
    "BleTerminal",
    "PaymentService",
    "PaymentServiceProxy",
    "TerminalDataFolder",
    "set_aside_if_unreadable",
]
