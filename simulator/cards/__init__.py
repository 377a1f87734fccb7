"""Virtual cards: EMV data, counters, and the catalogue they come from."""

from simulator.cards.card import (
    Application,
    CardError,
    CardProfile,
    CardRead,
    CatalogueError,
    EntryMode,
    PinVerification,
    TransactionData,
    VirtualCard,
    luhn_valid,
)
from simulator.cards.catalogue import Catalogue

__all__ = [
    "Application",
    "CardError",
    "CardProfile",
    "CardRead",
    "Catalogue",
    "CatalogueError",
    "EntryMode",
    "PinVerification",
    "TransactionData",
    "VirtualCard",
    "luhn_valid",
]
