"""The virtual mobile app: phone (BLE central), backend client, user flows."""

from harness.app.app import (
    BUTTON_CARD_CAPTURE,
    BUTTON_PAY_BY_CARD,
    MENU_TERMINALS,
    AppTimeouts,
    AssociatedTerminal,
    CaptureOutcome,
    InvoicingApp,
    PaymentOutcome,
)
from harness.app.backend_client import BackendClient, BackendError, BackendUnreachable
from harness.app.phone import FoundTerminal, PhoneError, TerminalLink, VirtualPhone

__all__ = [
    "BUTTON_CARD_CAPTURE",
    "BUTTON_PAY_BY_CARD",
    "MENU_TERMINALS",
    "AppTimeouts",
    "AssociatedTerminal",
    "BackendClient",
    "BackendError",
    "BackendUnreachable",
    "CaptureOutcome",
    "FoundTerminal",
    "InvoicingApp",
    "PaymentOutcome",
    "PhoneError",
    "TerminalLink",
    "VirtualPhone",
]
