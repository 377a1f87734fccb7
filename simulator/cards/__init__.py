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
from simulator.cards.cryptogram import CardCryptography, CryptogramError, IssuerMasterKeys

__all__ = [
    "Application",
    "CardCryptography",
    "CardError",
    "CardProfile",
    "CardRead",
    "Catalogue",
    "CatalogueError",
    "CryptogramError",
    "EntryMode",
    "IssuerMasterKeys",
    "PinVerification",
    "TransactionData",
    "VirtualCard",
    "luhn_valid",
]
