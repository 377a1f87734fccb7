"""Virtual payment cards: their EMV data and the state a real chip keeps between uses.

Sans-IO: the terminal calls :meth:`VirtualCard.read` with the transaction data and gets the
records a kernel would have read (application, PAN, expiry) and the EMV data elements it
would send online. The card keeps its application transaction counter (ATC, tag ``9F36``),
which goes up by one at every transaction, as a chip's does.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EntryMode(StrEnum):
    """How the card reached the terminal (POS entry mode)."""

    CONTACTLESS = "contactless"
    CHIP = "chip"

    @property
    def receipt_label(self) -> str:
        return {"contactless": "SANS CONTACT", "chip": "PUCE"}[self.value]


class CardError(Exception):
    """The card cannot do what the terminal asked (e.g. a tap on a contact-only card)."""


class CatalogueError(ValueError):
    """A card definition that does not hold together; names the card and the field."""


@dataclass(frozen=True)
class Application:
    aid: str
    label: str
    priority: int = 1


@dataclass(frozen=True)
class CardProfile:
    """A card as the catalogue describes it. ``pan`` is secret: ``repr`` hides it."""

    key: str
    pan: str = field(repr=False)
    expiry_year: int
    expiry_month: int
    brand: str
    applications: tuple[Application, ...]
    holder: str = ""
    contactless: bool = True
    pin: str = field(default="", repr=False)
    pin_tries: int = 3
    atc: int = 0
    issuer_response_code: str = "00"

    @property
    def expiry(self) -> str:
        """YYMM, as in EMV tag 5F24 without the day."""
        return f"{self.expiry_year % 100:02d}{self.expiry_month:02d}"

    @property
    def last4(self) -> str:
        return self.pan[-4:]

    def expired_on(self, day: dt.date) -> bool:
        return (day.year, day.month) > (self.expiry_year, self.expiry_month)

    @classmethod
    def from_dict(cls, key: str, data: Any) -> CardProfile:
        """Build from a catalogue entry; :class:`CatalogueError` names the faulty field."""

        def fail(name: str, why: str) -> CatalogueError:
            return CatalogueError(f"card {key!r}: field {name!r} {why}")

        if not isinstance(data, dict):
            raise CatalogueError(f"card {key!r}: must be a mapping of fields")
        pan = data.get("pan")
        if not isinstance(pan, str) or not re.fullmatch(r"[0-9]{12,19}", pan):
            raise fail("pan", "must be a string of 12 to 19 digits")
        if not luhn_valid(pan):
            raise fail("pan", "fails the Luhn check")
        expiry = data.get("expiry")
        try:
            year, month = (int(part) for part in str(expiry).split("-"))
            dt.date(year, month, 1)
        except ValueError as exc:
            raise fail("expiry", f"must be YYYY-MM, got {expiry!r}") from exc
        brand = data.get("brand")
        if not isinstance(brand, str) or not brand:
            raise fail("brand", "is required")
        apps_data = data.get("applications")
        if not isinstance(apps_data, list) or not apps_data:
            raise fail("applications", "must list at least one application")
        apps = []
        for i, app in enumerate(apps_data):
            if not isinstance(app, dict) or not isinstance(app.get("aid"), str):
                raise fail(f"applications[{i}].aid", "is required")
            aid = app["aid"].upper()
            if len(aid) < 10 or len(aid) > 32 or any(c not in "0123456789ABCDEF" for c in aid):
                raise fail(f"applications[{i}].aid", "must be 5 to 16 bytes of hex")
            priority = app.get("priority", 1)
            if type(priority) is not int or priority < 1:
                raise fail(f"applications[{i}].priority", "must be a positive integer")
            apps.append(
                Application(aid=aid, label=str(app.get("label", brand.upper())), priority=priority)
            )
        contactless = data.get("contactless", True)
        if not isinstance(contactless, bool):
            raise fail("contactless", "must be true or false")
        issuer = data.get("issuer") or {}
        if not isinstance(issuer, dict):
            raise fail("issuer", "must be a mapping")
        code = str(issuer.get("response_code", "00"))
        if len(code) != 2:
            raise fail("issuer.response_code", "must be a 2-character ISO 8583 code")
        for name in ("pin_tries", "atc"):
            if name in data and (type(data[name]) is not int or data[name] < 0):
                raise fail(name, "must be a non-negative integer")
        pin = str(data.get("pin", ""))
        if pin and not re.fullmatch(r"[0-9]{4,12}", pin):
            raise fail("pin", "must be 4 to 12 digits")
        return cls(
            key=key,
            pan=pan,
            expiry_year=year,
            expiry_month=month,
            brand=brand.upper(),
            applications=tuple(sorted(apps, key=lambda a: a.priority)),
            holder=str(data.get("holder", "")),
            contactless=contactless,
            pin=pin,
            pin_tries=int(data.get("pin_tries", 3)),
            atc=int(data.get("atc", 0)),
            issuer_response_code=code,
        )


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check every card number passes."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class TransactionData:
    """What the terminal gives the card for one transaction (the PDOL/CDOL data)."""

    amount: int
    currency_code: str  # ISO 4217 numeric, 4 digits: "0978" for EUR
    country_code: str  # ISO 3166 numeric, 4 digits: "0250" for France
    date: dt.date
    unpredictable_number: str  # 8 hex digits (tag 9F37)
    transaction_type: str = "00"  # goods and services


@dataclass(frozen=True)
class CardRead:
    """What the kernel read from the card. ``pan`` must be sealed before it leaves."""

    pan: str = field(repr=False)
    expiry: str
    pan_sequence: str
    brand: str
    application: Application
    entry_mode: EntryMode
    emv: dict[str, str]


class VirtualCard:
    """One physical card, with the counters its chip keeps."""

    def __init__(self, profile: CardProfile) -> None:
        self.profile = profile
        self.atc = profile.atc
        self.pin_tries = profile.pin_tries

    def __repr__(self) -> str:
        return f"VirtualCard({self.profile.key!r}, {self.profile.brand}, ****{self.profile.last4})"

    def read(self, mode: EntryMode, txn: TransactionData) -> CardRead:
        """Run the card side of a transaction up to the first GENERATE AC (ARQC)."""
        if mode is EntryMode.CONTACTLESS and not self.profile.contactless:
            raise CardError("card does not support contactless")
        app = self.profile.applications[0]
        self.atc = (self.atc + 1) & 0xFFFF
        emv = {
            "4F": app.aid,
            "50": app.label.encode().hex().upper(),
            "5F2A": txn.currency_code,
            "5F34": "00",
            "82": "3900" if mode is EntryMode.CONTACTLESS else "3800",
            "95": "0000000000",
            "9A": txn.date.strftime("%y%m%d"),
            "9C": txn.transaction_type,
            "9F02": f"{txn.amount:012d}",
            "9F03": "000000000000",
            "9F1A": txn.country_code,
            "9F27": "80",  # cryptogram information data: ARQC, go online
            "9F36": f"{self.atc:04X}",
            "9F37": txn.unpredictable_number,
        }
        return CardRead(
            pan=self.profile.pan,
            expiry=self.profile.expiry,
            pan_sequence="00",
            brand=self.profile.brand,
            application=app,
            entry_mode=mode,
            emv=emv,
        )
