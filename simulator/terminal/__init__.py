"""The sans-IO terminal engine: states, screen, journal, receipts."""

from simulator.terminal.engine import (
    CONTACTLESS_CEILING,
    MerchantSetup,
    State,
    TerminalEngine,
    TerminalError,
    Timeouts,
    Transaction,
)
from simulator.terminal.profile import ProfileError, TerminalProfile, load_profiles
from simulator.terminal.screen import Screen, ScreenShot, format_amount

__all__ = [
    "CONTACTLESS_CEILING",
    "MerchantSetup",
    "ProfileError",
    "Screen",
    "ScreenShot",
    "State",
    "TerminalEngine",
    "TerminalError",
    "TerminalProfile",
    "Timeouts",
    "Transaction",
    "format_amount",
    "load_profiles",
]
