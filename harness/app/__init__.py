"""The virtual mobile app: phone (BLE central), backend client, user flows."""

from harness.app.app import (
    BUTTON_PAY_BY_CARD,
    MENU_TERMINALS,
    AppTimeouts,
    AssociatedTerminal,
    InvoicingApp,
    PaymentOutcome,
)
from harness.app.backend_client import BackendClient, BackendError, BackendUnreachable
from harness.app.phone import FoundTerminal, PhoneError, TerminalLink, VirtualPhone

__all__ = [
    "BUTTON_PAY_BY_CARD",
    "MENU_TERMINALS",
    "AppTimeouts",
    "AssociatedTerminal",
    "BackendClient",
    "BackendError",
    "BackendUnreachable",
    "FoundTerminal",
    "InvoicingApp",
    "PaymentOutcome",
    "PhoneError",
    "TerminalLink",
    "VirtualPhone",
]
