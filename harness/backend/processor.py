"""The simulated card processor and issuer: an authorisation decision without I/O.

The processor holds the AES DUKPT base derivation keys, the issuers' EMV master keys and the
card catalogue (shared fixtures). It opens the card-data blob the terminal sealed (deriving
its key from the blob's key serial number), finds the card by PAN, checks the card's
cryptogram and answers with an ISO 8583 response code and, once the cryptogram is verified,
the issuer authentication data (tag 91: the ARPC) the chip checks. The PAN lives only inside
:meth:`Processor.authorise`; what leaves is the masked PAN, the card's catalogue key (the
issuer's name for it) and the decision.

What the issuer remembers between authorisations (the online PIN try counter, the PSD2
contactless counters) is a :class:`CardState` per card that the caller keeps (the store) and
passes in; the decision carries the state after this authorisation and what a capture of the
payment does to the counters (:attr:`Decision.on_capture`).

Decision rules, in this order (the first that applies answers):

1. unknown PAN → ``05``;
1b. card authentication (:data:`CRYPTOGRAM_FAILED`, ``05``, and no ARPC): the EMV data must
   hold the request's amount (``9F02``) and currency (``5F2A``), an ARQC (``9F26``) that the
   card's keys compute over that data (:mod:`simulator.cards.cryptogram`: a changed amount,
   date, unpredictable number… breaks it), and an ATC (``9F36``) above the last one the issuer
   saw for that card (:attr:`CardState.last_atc`; the same or a lower one is a replay). A
   verified ATC is remembered whatever the decision that follows;
2. card reported lost → ``41``, stolen → ``43``;
3. expired → ``54``;
4. cardholder verification: online PIN (``cvm="online_pin"``, the PIN sealed in the card
   data) with the issuer's try counter at 0 → ``75``; wrong PIN → the counter goes down by one
   and the answer is ``55``, or ``75`` when it reaches 0 (third wrong PIN in a row); right PIN →
   the counter is reset to 3. Offline PIN was checked by the card; the issuer only refuses it
   (``75``) when it knows the PIN is blocked;
5. the cents rule, for cards that follow it (Stripe's physical test card convention): the
   amount's cents choose the answer, other cents fall through to the rules below:

   ======  ======  ====================================================
   cents   code    meaning
   ======  ======  ====================================================
   .00     —       continue with the normal rules
   .01     05      call issuer (a terminal cannot call: do not honour)
   .05     05      generic decline
   .51     51      insufficient funds
   .54     54      expired card
   .55     55      incorrect PIN (the PIN try counter does not move)
   .57     57      not permitted to cardholder
   .61     61      exceeds amount limit
   .62     62      restricted card
   .65     65      exceeds frequency limit (Mastercard SCA soft decline)
   .75     75      PIN tries exceeded (the PIN try counter does not move)
   .91     91      issuer unavailable
   .96     96      system malfunction
   ======  ======  ====================================================

6. amount above the card's per-transaction limit → ``61``; above its available funds → ``51``;
7. PSD2 strong customer authentication (Regulation 2018/389 art. 11): a contactless payment
   without cardholder verification (not PIN, not a phone wallet's CDCVM) that would take the
   payments without SCA since the last one above the card's consecutive count or cumulative
   amount is soft-declined: ``65`` for Mastercard, ``1A`` for Visa, CB and other brands (the
   brand the terminal routed to, i.e. the cardholder's choice on a co-badged card). The counters
   move only when a payment is captured: a contactless payment without CVM counts, a payment
   verified by PIN (offline or online) resets them, CDCVM and chip-without-PIN leave them alone.
   The terminal then goes on with the same transaction, card inserted and PIN typed: the store
   accepts a second authorisation request for it;
8. otherwise the issuer's own answer for the card (``response_code``).

Two more ways to ask the issuer, both for cards saved on a customer record ("prise
d'empreinte"):

* :meth:`Processor.verify`, the **zero-amount account verification** the terminal runs to
  capture a card without charging it (``amount_cents`` = 0). Rules, in this order: unknown PAN
  → ``05``; card authentication as above (``05``); lost ``41`` / stolen ``43``; expired
  ``54``; PIN blocked at the issuer (try counter at 0, whatever the CVM) → ``75``; online
  PIN checked as for a payment (``55``/``75``, the counter moves); the issuer's own answer
  when it is not ``00``; otherwise ``85`` (no reason to decline). No cents rule, no limits,
  no PSD2 counters: nothing is charged. A verified card comes back with what may be saved of
  it (:class:`VerifiedCard`: the brand the terminal routed to, as a payment records it, the
  last 4 digits, the expiry in the issuer's records and a keyed fingerprint of the PAN), never
  the PAN.
* :meth:`Processor.charge_on_file`, a **merchant-initiated payment with a saved card**: the
  card is named by its catalogue key (``card_ref``), there is no card data, no terminal and no
  cardholder (entry mode ``credential_on_file``, CVM ``none``). The payment rules above apply
  but for the PIN (there is none) and PSD2 (a merchant-initiated transaction is outside SCA):
  status, expiry, cents rule, limits, the issuer's answer. An unknown ``card_ref`` → ``05``.

The card fingerprint is HMAC-SHA256 of the PAN under a key the caller (the backend) holds:
the same card gives the same fingerprint under one key, and without the key the fingerprint
cannot be matched against the few million PANs a known BIN and last 4 digits leave.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal, NamedTuple

from simulator.cards.cryptogram import RID_BRANDS, CardCryptography, IssuerMasterKeys
from simulator.protocol.carddata import (
    CardDataError,
    SensitiveCardData,
    associated_data,
    mask_pan,
    open_sealed,
)
from simulator.protocol.response_codes import ACCOUNT_VERIFIED, APPROVED, response_message

UNKNOWN_CARD = "05"
#: The card's cryptogram is missing or wrong, its EMV data was altered, or its ATC replayed:
#: do not honour (the issuer cannot tell a cloned or replayed card from a broken one).
CRYPTOGRAM_FAILED = "05"
#: ISO 4217 numeric codes of the currencies the issuer accepts (EMV tag 5F2A).
CURRENCY_CODES: Mapping[str, str] = {"EUR": "0978"}
LOST_CARD = "41"
STOLEN_CARD = "43"
EXPIRED_CARD = "54"
INCORRECT_PIN = "55"
PIN_TRIES_EXCEEDED = "75"
EXCEEDS_LIMIT = "61"
INSUFFICIENT_FUNDS = "51"
SCA_REQUIRED_MASTERCARD = "65"
SCA_REQUIRED_VISA = "1A"
#: How a payment with a saved card reaches the issuer: no card, no terminal, no cardholder.
CREDENTIAL_ON_FILE = "credential_on_file"
#: Soft declines: the same payment may be authorised again, this time with the PIN.
SCA_SOFT_DECLINES = (SCA_REQUIRED_VISA, SCA_REQUIRED_MASTERCARD)

#: The online PIN try counter after a right PIN.
PIN_TRY_LIMIT = 3
#: How the cardholder was verified, as the terminal reports it.
CVMS = ("none", "offline_pin", "online_pin", "cdcvm")
PIN_CVMS = ("offline_pin", "online_pin")
CARD_STATUSES: Mapping[str, str | None] = {"active": None, "lost": LOST_CARD, "stolen": STOLEN_CARD}
#: The cents rule: amount % 100 → response code (cents not listed: the normal rules decide).
CENTS_RULE: Mapping[int, str] = {
    1: "05",
    5: "05",
    51: "51",
    54: "54",
    55: "55",
    57: "57",
    61: "61",
    62: "62",
    65: "65",
    75: "75",
    91: "91",
    96: "96",
}

#: What capturing an approved payment does to the card's PSD2 contactless counters.
CaptureEffect = Literal["count", "reset", "none"]


#: How a card reaches a terminal (the request's ``entry_mode``).
ENTRY_MODES = ("contactless", "chip")


@dataclass(frozen=True)
class IssuerCard:
    """What the simulated issuer knows of a card (from ``fixtures/cards.yaml``).

    ``key`` is the catalogue key: the name the issuer's state is kept under, never the PAN.
    """

    key: str
    pan: str = field(repr=False)
    brand: str
    expiry: str  # YYYY-MM, last month of validity
    response_code: str
    status: str = "active"
    pin: str = field(default="", repr=False)
    pin_tries: int = PIN_TRY_LIMIT  # the issuer's counter before the first online PIN
    limit_cents: int | None = None  # per-transaction limit (61 above)
    balance_cents: int | None = None  # available funds (51 above)
    cents_rule: bool = False
    psd2_max_consecutive: int = 5
    psd2_max_cumulative_cents: int = 15000
    wallet: bool = False  # a phone wallet: the phone verifies the holder (CDCVM)
    #: the schemes of the card's applications (CB and the international brand when
    #: co-badged); a request routed to another brand is refused. Empty: not checked.
    brands: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in CARD_STATUSES:
            raise ValueError(
                f"card {self.key!r}: status must be one of {sorted(CARD_STATUSES)}, "
                f"got {self.status!r}"
            )
        if self.pin_tries < 0:
            raise ValueError(f"card {self.key!r}: pin_tries must not be negative")

    def expired_on(self, today: date) -> bool:
        year, month = (int(part) for part in self.expiry.split("-"))
        return (year, month) < (today.year, today.month)

    def initial_state(self) -> CardState:
        return CardState(pin_tries=self.pin_tries)


@dataclass(frozen=True)
class CardState:
    """What the issuer remembers of a card between authorisations."""

    pin_tries: int  # online PIN tries left; 0 = PIN blocked
    contactless_count: int = 0  # contactless payments without SCA since the last SCA
    contactless_cents: int = 0  # their cumulative amount
    last_atc: int | None = None  # the highest verified application transaction counter

    def after_capture(self, effect: CaptureEffect, amount_cents: int) -> CardState:
        """The state once a payment with this capture ``effect`` is captured."""
        if effect == "count":
            return replace(
                self,
                contactless_count=self.contactless_count + 1,
                contactless_cents=self.contactless_cents + amount_cents,
            )
        if effect == "reset":
            return replace(self, contactless_count=0, contactless_cents=0)
        return self


@dataclass(frozen=True)
class AuthorisationRequest:
    """The terminal's authorisation request, as the phone relays it."""

    transaction_id: str
    amount_cents: int
    currency: str
    entry_mode: str  # "contactless" | "chip"
    brand: str  # the brand the terminal routed to (the cardholder's choice if co-badged)
    card_data: object  # the sealed blob, opaque to everyone but the processor
    emv: Mapping[str, str] = field(default_factory=dict)
    cvm: str = "none"  # one of CVMS

    def __post_init__(self) -> None:
        if self.cvm not in CVMS:
            raise ValueError(f"cvm must be one of {CVMS}, got {self.cvm!r}")


@dataclass(frozen=True)
class VerifiedCard:
    """What may be kept of a card the issuer verified (code ``85``): never its PAN."""

    brand: str  # the brand the terminal routed to (CB for a co-badged French card by default)
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str  # card_fingerprint(key, PAN): the same card, the same fingerprint


def card_fingerprint(key: bytes, pan: str) -> str:
    """HMAC-SHA256 of the PAN under the backend's ``key``, in hex (64 characters).

    Keyed so that it cannot be turned back into the PAN by hashing every candidate number.
    """
    if not key:
        raise ValueError("a card fingerprint needs a non-empty key")
    return hmac.new(key, pan.encode("ascii"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Decision:
    response_code: str
    masked_pan: str  # "" when the issuer does not know the card_ref of a saved card
    card_ref: str | None = None  # the card's catalogue key; None for an unknown card
    card_state: CardState | None = None  # the issuer's memory of the card after this decision
    on_capture: CaptureEffect = "none"  # what capturing this payment does to the counters
    pin_tries_left: int | None = None  # after an online PIN check
    verified_card: VerifiedCard | None = None  # only for a verification answered 85
    #: issuer authentication data (EMV tag 91, hex): the ARPC, once the ARQC was verified
    arpc: str | None = None
    #: why card authentication failed (cryptogram, altered data, replayed ATC), for logs
    reason: str | None = None

    @property
    def approved(self) -> bool:
        return self.response_code == APPROVED

    @property
    def message(self) -> str:
        return response_message(self.response_code)


class _Authenticated(NamedTuple):
    """A request's card the issuer knows and authenticated."""

    data: SensitiveCardData
    card: IssuerCard
    masked_pan: str
    state: CardState  # with the ATC of this request


def _state_of(card: IssuerCard, card_states: Mapping[str, CardState] | None) -> CardState:
    """The issuer's memory of ``card``: its entry in ``card_states``, else a fresh card's."""
    return (card_states or {}).get(card.key) or card.initial_state()


class Processor:
    """Opens card data with the terminal's key and decides as the card's issuer would."""

    def __init__(
        self,
        bdks: Mapping[bytes, bytes],
        cards: Iterable[IssuerCard],
        issuer_keys: Mapping[str, IssuerMasterKeys],
    ) -> None:
        self._bdks = dict(bdks)  # BDK ID (4 bytes, the start of every KSN) -> AES DUKPT BDK
        self._issuer_keys = {brand.upper(): keys for brand, keys in issuer_keys.items()}
        self._crypto: dict[tuple[str, str], CardCryptography] = {}
        self._cards: dict[str, IssuerCard] = {}
        self._by_key: dict[str, IssuerCard] = {}
        for card in cards:
            if card.key in self._by_key:
                raise ValueError(f"two cards named {card.key!r}")
            if card.pan in self._cards:
                raise ValueError(
                    f"cards {self._cards[card.pan].key!r} and {card.key!r} have the same PAN"
                )
            if card.brand.upper() not in self._issuer_keys:
                raise ValueError(f"card {card.key!r}: no issuer master keys for {card.brand}")
            self._by_key[card.key] = card
            self._cards[card.pan] = card

    def __repr__(self) -> str:
        bdk_ids = sorted(bdk_id.hex().upper() for bdk_id in self._bdks)
        return f"Processor(bdks={bdk_ids!r}, cards={len(self._cards)})"

    def authorise(
        self,
        request: AuthorisationRequest,
        *,
        today: date,
        card_states: Mapping[str, CardState] | None = None,
    ) -> Decision:
        """Decide on ``request``; raises :class:`CardDataError` if the blob does not open.

        ``card_states`` is the issuer's memory, by card key; a card not in it starts from
        :meth:`IssuerCard.initial_state`. Nothing is changed in place: the decision carries the
        card's new state.
        """
        opened = self._open_and_authenticate(request, card_states)
        if isinstance(opened, Decision):
            return opened
        data, card, masked, state = opened
        code, state = self._decide(card, state, request, data.pin, today)
        if request.cvm in PIN_CVMS:
            effect: CaptureEffect = "reset"
        elif _counts_towards_sca(card, request):
            effect = "count"
        else:
            effect = "none"
        return Decision(
            response_code=code,
            masked_pan=masked,
            card_ref=card.key,
            card_state=state,
            on_capture=effect,
            pin_tries_left=state.pin_tries if request.cvm == "online_pin" else None,
            arpc=self._arpc(card, data, request, code),
        )

    def verify(
        self,
        request: AuthorisationRequest,
        *,
        today: date,
        fingerprint_key: bytes,
        card_states: Mapping[str, CardState] | None = None,
    ) -> Decision:
        """The zero-amount account verification of a card capture: ``85`` or the refusal.

        ``request.amount_cents`` must be 0 (:class:`ValueError` otherwise: the caller checks
        it first). Raises :class:`CardDataError` if the blob does not open. A card answered
        ``85`` comes back as :attr:`Decision.verified_card`, its fingerprint keyed with
        ``fingerprint_key``.
        """
        if request.amount_cents != 0:
            raise ValueError("an account verification is for a zero amount")
        opened = self._open_and_authenticate(request, card_states)
        if isinstance(opened, Decision):
            return opened
        data, card, masked, state = opened
        code, state = self._decide_verification(card, state, request, data.pin, today)
        verified = None
        if code == ACCOUNT_VERIFIED:
            year, month = (int(part) for part in card.expiry.split("-"))
            verified = VerifiedCard(
                brand=request.brand,
                last4=card.pan[-4:],
                exp_month=month,
                exp_year=year,
                fingerprint=card_fingerprint(fingerprint_key, card.pan),
            )
        return Decision(
            response_code=code,
            masked_pan=masked,
            card_ref=card.key,
            card_state=state,
            pin_tries_left=state.pin_tries if request.cvm == "online_pin" else None,
            verified_card=verified,
            arpc=self._arpc(card, data, request, code),
        )

    def charge_on_file(
        self,
        card_ref: str,
        *,
        transaction_id: str,
        amount_cents: int,
        currency: str,
        brand: str,
        today: date,
        card_states: Mapping[str, CardState] | None = None,
    ) -> Decision:
        """A merchant-initiated payment with a saved card, named by its catalogue key.

        The payment rules without PIN and without PSD2 (see the module's docstring). Capturing
        it moves no PSD2 counter (:attr:`Decision.on_capture` is ``"none"``).
        """
        card = self._by_key.get(card_ref)
        if card is None:
            return Decision(response_code=UNKNOWN_CARD, masked_pan="")
        request = AuthorisationRequest(
            transaction_id=transaction_id,
            amount_cents=amount_cents,
            currency=currency,
            entry_mode=CREDENTIAL_ON_FILE,
            brand=brand,
            card_data=None,
            cvm="none",
        )
        code, state = self._decide(card, _state_of(card, card_states), request, None, today)
        return Decision(
            response_code=code,
            masked_pan=mask_pan(card.pan),
            card_ref=card.key,
            card_state=state,
            on_capture="none",
        )

    def _open_and_authenticate(
        self, request: AuthorisationRequest, card_states: Mapping[str, CardState] | None
    ) -> _Authenticated | Decision:
        """Open the card data (:class:`CardDataError` if it does not), find the card and
        authenticate it: the card with its state after this ATC, or the decision refusing it
        (``05`` for a card the issuer does not know, the cryptogram failure otherwise)."""
        data = self._open(request)
        masked = mask_pan(data.pan)
        card = self._cards.get(data.pan)
        if card is None:
            return Decision(response_code=UNKNOWN_CARD, masked_pan=masked)
        failure, state = self._authenticate_card(card, data, request, _state_of(card, card_states))
        if failure is not None:
            return self._refuse_card(card, masked, state, failure)
        return _Authenticated(data, card, masked, state)

    def _cryptography(self, card: IssuerCard, pan_sequence: str) -> CardCryptography:
        """The card's ICC keys, derived from its issuer's master keys (kept per card)."""
        key = (card.key, pan_sequence)
        if key not in self._crypto:
            issuer_keys = self._issuer_keys[card.brand.upper()]
            self._crypto[key] = CardCryptography(card.brand, issuer_keys, card.pan, pan_sequence)
        return self._crypto[key]

    def _authenticate_card(
        self,
        card: IssuerCard,
        data: SensitiveCardData,
        request: AuthorisationRequest,
        state: CardState,
    ) -> tuple[str | None, CardState]:
        """Card authentication (rule 1b): ``(None, state with the new ATC)`` when the ARQC
        verifies over unaltered data with a fresh ATC, else ``(why, state unchanged)``."""
        emv = request.emv
        for name in ("entry_mode", "cvm", "brand"):  # what the terminal sealed, not the relay
            sealed = getattr(data, name)
            if sealed is not None and sealed != getattr(request, name):
                return f"{name} differs from what the terminal sealed", state
        if request.entry_mode not in ENTRY_MODES:
            return f"unknown entry mode {request.entry_mode[:20]!r}", state
        if card.brands and request.brand.upper() not in card.brands:
            return f"brand {request.brand[:20]!r} is not one of this card's applications", state
        aid = emv.get("4F", "")
        if card.brands and RID_BRANDS.get(aid[:10].upper()) != request.brand.upper():
            return "the brand does not match the selected application (4F)", state
        if emv.get("9F02") != f"{request.amount_cents:012d}":
            return "EMV amount (9F02) differs from the request's", state
        if emv.get("5F2A") != CURRENCY_CODES.get(request.currency):
            return "EMV currency (5F2A) differs from the request's", state
        if not emv.get("9F26"):
            return "no application cryptogram (9F26)", state
        if not re.fullmatch(r"[0-9A-Fa-f]{4}", emv.get("9F36", "")):
            return "no application transaction counter (9F36)", state
        if not self._cryptography(card, data.pan_sequence).verify_arqc(emv):
            return "the application cryptogram (9F26) does not verify", state
        atc = int(emv["9F36"], 16)
        if state.last_atc is not None and atc <= state.last_atc:
            return f"ATC {atc} is not above the last one seen ({state.last_atc}): replay", state
        return None, replace(state, last_atc=atc)

    @staticmethod
    def _refuse_card(card: IssuerCard, masked: str, state: CardState, why: str) -> Decision:
        return Decision(
            response_code=CRYPTOGRAM_FAILED,
            masked_pan=masked,
            card_ref=card.key,
            card_state=state,
            reason=why,
        )

    def _arpc(
        self, card: IssuerCard, data: SensitiveCardData, request: AuthorisationRequest, code: str
    ) -> str:
        """Tag 91 answering the (verified) ARQC of ``request`` with ``code``."""
        crypto = self._cryptography(card, data.pan_sequence)
        return crypto.issuer_authentication_data(request.emv["9F26"], request.emv["9F36"], code)

    def _open(self, request: AuthorisationRequest) -> SensitiveCardData:
        aad = associated_data(request.transaction_id, request.amount_cents, request.currency)
        return open_sealed(self._bdks, request.card_data, aad)

    @staticmethod
    def _decide(
        card: IssuerCard,
        state: CardState,
        request: AuthorisationRequest,
        pin: str | None,
        today: date,
    ) -> tuple[str, CardState]:
        status_code = CARD_STATUSES[card.status]
        if status_code is not None:
            return status_code, state
        if card.expired_on(today):
            return EXPIRED_CARD, state

        if request.cvm in PIN_CVMS and state.pin_tries == 0:
            return PIN_TRIES_EXCEEDED, state
        if request.cvm == "online_pin":
            pin_code, state = _check_online_pin(card, state, pin)
            if pin_code is not None:
                return pin_code, state

        amount = request.amount_cents
        if card.cents_rule and (code := CENTS_RULE.get(amount % 100)) is not None:
            return code, state
        if card.limit_cents is not None and amount > card.limit_cents:
            return EXCEEDS_LIMIT, state
        if card.balance_cents is not None and amount > card.balance_cents:
            return INSUFFICIENT_FUNDS, state

        if _counts_towards_sca(card, request) and (
            state.contactless_count + 1 > card.psd2_max_consecutive
            or state.contactless_cents + amount > card.psd2_max_cumulative_cents
        ):
            mastercard = request.brand.upper() == "MASTERCARD"
            return (SCA_REQUIRED_MASTERCARD if mastercard else SCA_REQUIRED_VISA), state
        return card.response_code, state

    @staticmethod
    def _decide_verification(
        card: IssuerCard,
        state: CardState,
        request: AuthorisationRequest,
        pin: str | None,
        today: date,
    ) -> tuple[str, CardState]:
        status_code = CARD_STATUSES[card.status]
        if status_code is not None:
            return status_code, state
        if card.expired_on(today):
            return EXPIRED_CARD, state
        if state.pin_tries == 0:  # a card whose PIN is blocked is not worth saving
            return PIN_TRIES_EXCEEDED, state
        if request.cvm == "online_pin":
            pin_code, state = _check_online_pin(card, state, pin)
            if pin_code is not None:
                return pin_code, state
        if card.response_code != APPROVED:
            return card.response_code, state
        return ACCOUNT_VERIFIED, state


def _check_online_pin(
    card: IssuerCard, state: CardState, pin: str | None
) -> tuple[str | None, CardState]:
    """The issuer's online PIN check: ``(None, reset state)`` when right, else the refusal
    (``55``, or ``75`` at the third wrong PIN) with the counter one lower."""
    if not pin:
        raise CardDataError("online PIN announced but card_data carries no PIN")
    if not card.pin or not hmac.compare_digest(pin.encode(), card.pin.encode()):
        state = replace(state, pin_tries=state.pin_tries - 1)
        return (PIN_TRIES_EXCEEDED if state.pin_tries == 0 else INCORRECT_PIN), state
    return None, replace(state, pin_tries=PIN_TRY_LIMIT)


def _counts_towards_sca(card: IssuerCard, request: AuthorisationRequest) -> bool:
    """A contactless payment without any cardholder verification (PSD2 art. 11 exemption)."""
    return request.entry_mode == "contactless" and request.cvm == "none" and not card.wallet
