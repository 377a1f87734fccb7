"""Virtual payment cards: their EMV data and the state a real chip keeps between uses.

Sans-IO: the terminal calls :meth:`VirtualCard.read` with the transaction data and gets the
records a kernel would have read (application, PAN, expiry) and the EMV data elements it
would send online. The card keeps its application transaction counter (ATC, tag ``9F36``),
which goes up by one at every transaction, as a chip's does.

A card personalised with its issuer's master keys (:class:`VirtualCard`'s ``issuer_keys``)
signs the data with an ARQC (``9F26``, with its issuer application data ``9F10``) and checks
the issuer's ARPC in its second GENERATE AC (:mod:`simulator.cards.cryptogram`).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from simulator.cards.cryptogram import RID_BRANDS as RID_BRANDS  # re-exported here
from simulator.cards.cryptogram import CardCryptography, IssuerMasterKeys


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


CVM_METHODS = ("offline_pin", "online_pin")
PIN_TRY_LIMIT = 3  # the issuer's PIN try limit; a right PIN resets the counter to it
CARD_STATUSES = ("active", "lost", "stolen")


@dataclass(frozen=True)
class Application:
    aid: str
    label: str
    priority: int = 1

    @property
    def brand(self) -> str:
        """The scheme that owns this application, from its RID; ``INCONNUE`` otherwise."""
        return RID_BRANDS.get(self.aid[:10], "INCONNUE")


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
    #: What the chip asks for when inserted: the PIN checked by the chip or by the issuer.
    cvm: str = "offline_pin"
    #: A phone wallet: the phone verified its holder (CDCVM), no ceiling, no PSD2 counters.
    wallet: bool = False
    status: str = "active"
    issuer_limit_cents: int | None = None
    issuer_balance_cents: int | None = None
    cents_rule: bool = False
    psd2_max_consecutive: int = 5
    psd2_max_cumulative_cents: int = 15000
    #: The chip's own last word after the issuer approved (2nd GENERATE AC): TC or AAC.
    second_ac: str = "approve"

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
        cvm = data.get("cvm", "offline_pin")
        if cvm not in CVM_METHODS:
            raise fail("cvm", f"must be one of {', '.join(CVM_METHODS)}")
        status = data.get("status", "active")
        if status not in CARD_STATUSES:
            raise fail("status", f"must be one of {', '.join(CARD_STATUSES)}")
        second_ac = data.get("second_ac", "approve")
        if second_ac not in ("approve", "decline"):
            raise fail("second_ac", "must be approve or decline")
        wallet = data.get("wallet", False)
        cents_rule = issuer.get("cents_rule", False)
        for name, flag in (("wallet", wallet), ("issuer.cents_rule", cents_rule)):
            if not isinstance(flag, bool):
                raise fail(name, "must be true or false")
        amounts: dict[str, int | None] = {}
        for name in ("limit_cents", "balance_cents"):
            value = issuer.get(name)
            if value is not None and (type(value) is not int or value < 0):
                raise fail(f"issuer.{name}", "must be a non-negative integer of cents")
            amounts[name] = value
        psd2 = data.get("psd2") or {}
        if not isinstance(psd2, dict):
            raise fail("psd2", "must be a mapping")
        psd2_limits = {"max_consecutive": 5, "max_cumulative_cents": 15000}
        for name in psd2_limits:
            value = psd2.get(name, psd2_limits[name])
            if type(value) is not int or value < 0:
                raise fail(f"psd2.{name}", "must be a non-negative integer")
            psd2_limits[name] = value
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
            cvm=cvm,
            wallet=wallet,
            status=status,
            issuer_limit_cents=amounts["limit_cents"],
            issuer_balance_cents=amounts["balance_cents"],
            cents_rule=cents_rule,
            psd2_max_consecutive=psd2_limits["max_consecutive"],
            psd2_max_cumulative_cents=psd2_limits["max_cumulative_cents"],
            second_ac=second_ac,
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


@dataclass(frozen=True)
class PinVerification:
    """The chip's answer to VERIFY (offline PIN)."""

    ok: bool
    tries_left: int

    @property
    def blocked(self) -> bool:
        return not self.ok and self.tries_left == 0


PAN_SEQUENCE = "00"


class VirtualCard:
    """One physical card, with the counters its chip keeps (ATC, PIN try counter).

    ``issuer_keys``: the master keys of the card's issuer, from which its ICC master keys are
    derived as at personalisation (only those are kept). A card without them computes no
    cryptogram, and an issuer that checks cryptograms declines it.
    """

    def __init__(self, profile: CardProfile, issuer_keys: IssuerMasterKeys | None = None) -> None:
        self.profile = profile
        self.atc = profile.atc
        self.pin_tries = profile.pin_tries
        self._crypto = (
            None
            if issuer_keys is None
            else CardCryptography(profile.brand, issuer_keys, profile.pan, PAN_SEQUENCE)
        )
        self._last_arqc: tuple[str, str] | None = None  # (ARQC, ATC) of the last first GEN AC

    def __repr__(self) -> str:
        return f"VirtualCard({self.profile.key!r}, {self.profile.brand}, ****{self.profile.last4})"

    @property
    def applications(self) -> tuple[Application, ...]:
        """The card's payment applications, highest priority first (the PPSE/PSE list)."""
        return self.profile.applications

    @property
    def pin_blocked(self) -> bool:
        return self.pin_tries == 0

    def verify_pin(self, pin: str) -> PinVerification:
        """VERIFY: compare an offline PIN; three wrong PINs in a row block it."""
        if self.pin_blocked:
            return PinVerification(ok=False, tries_left=0)
        if pin == self.profile.pin:
            self.pin_tries = PIN_TRY_LIMIT
            return PinVerification(ok=True, tries_left=self.pin_tries)
        self.pin_tries -= 1
        return PinVerification(ok=False, tries_left=self.pin_tries)

    def read(
        self, mode: EntryMode, txn: TransactionData, application: Application | None = None
    ) -> CardRead:
        """Run the card side of a transaction up to the first GENERATE AC (ARQC)."""
        if mode is EntryMode.CONTACTLESS and not self.profile.contactless:
            raise CardError("card does not support contactless")
        app = application or self.profile.applications[0]
        if app not in self.profile.applications:
            raise CardError(f"card has no application {app.aid}")
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
        if self._crypto is not None:
            emv["9F10"] = self._crypto.issuer_application_data
            emv["9F26"] = self._crypto.arqc(emv)
            self._last_arqc = (emv["9F26"], emv["9F36"])
        return CardRead(
            pan=self.profile.pan,
            expiry=self.profile.expiry,
            pan_sequence=PAN_SEQUENCE,
            brand=app.brand,
            application=app,
            entry_mode=mode,
            emv=emv,
        )

    def complete(self, issuer_approved: bool, arpc: str | None = None) -> bool:
        """The second GENERATE AC of a contact transaction: True for a TC (approved), False
        for an AAC. ``arpc`` is the issuer authentication data (tag 91, hex) relayed with the
        answer: the chip approves only if it authenticates the issuer's approval of its last
        ARQC. A card may decline although its issuer approved (``second_ac: decline``)."""
        if not issuer_approved or self.profile.second_ac != "approve":
            return False
        if self._crypto is None or self._last_arqc is None:
            return False  # no cryptogram was made: the issuer cannot be authenticated
        arqc, atc = self._last_arqc
        return self._crypto.issuer_approves(arpc, arqc, atc)
