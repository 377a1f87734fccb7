"""The mock invoicing backend's data and business rules, in memory and without I/O.

The store never reads a clock (callers pass ``now``) and never holds a card number: a payment
keeps only the brand and the masked PAN the processor derived, and its receipts are refused if
they carry anything that looks like a full PAN. Identifiers, transaction ids and authorisation
codes come from one seeded generator, so one seed gives one history.

The store also keeps the issuer's memory of each card (:class:`CardState`: online PIN tries,
PSD2 contactless counters) under the card's catalogue key, never its PAN. The processor decides
with it; the store records the new state at authorisation and moves the PSD2 counters only when
the payment is captured, so a reversed payment never counts.

Cards saved on a customer record ("prise d'empreinte", :class:`CardCapture`): the terminal
runs a zero-amount account verification; only the issuer's ``85`` followed by the terminal's
approval saves a :class:`SavedCard` (an opaque ``pm_…`` id, brand, last 4 digits, expiry, a
keyed fingerprint of the PAN and the issuer's catalogue key, never the PAN). A customer keeps
one saved card per fingerprint. A saved card then pays an invoice without any terminal
(:meth:`BackendStore.charge_saved_card`, a merchant-initiated payment).

The fingerprint key is the backend's secret, given to the store or, by default, derived from
its seed (:func:`default_fingerprint_key`): a simulator's test secret, deterministic so that
one seed gives one history, that a real backend would keep in a secrets store instead.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from harness.backend.processor import (
    CREDENTIAL_ON_FILE,
    SCA_SOFT_DECLINES,
    AuthorisationRequest,
    CaptureEffect,
    CardState,
    Decision,
    Processor,
    VerifiedCard,
)
from simulator.protocol.response_codes import ACCOUNT_VERIFIED

InvoiceStatus = Literal["unpaid", "paid", "partially_paid"]
PaymentMethod = Literal["tpe", "transfer", "cheque", "card_on_file"]
#: Card payments, which need the issuer's approval ("00") and an authorisation code.
CARD_METHODS: tuple[PaymentMethod, ...] = ("tpe", "card_on_file")
PaymentStatus = Literal["pending", "authorised", "declined", "aborted", "captured", "reversed"]
TerminalResult = Literal["approved", "declined", "aborted"]
TERMINAL_RESULTS: tuple[TerminalResult, ...] = ("approved", "declined", "aborted")
CaptureStatus = Literal["pending", "verified", "refused", "saved", "declined", "aborted"]
ReceiptCopy = Literal["merchant", "customer"]
RECEIPT_COPIES: tuple[ReceiptCopy, ...] = ("merchant", "customer")
RECEIPT_MAX_LINES = 40
RECEIPT_MAX_WIDTH = 48


#: How long an approval may wait for the terminal's confirmation before it lapses.
AUTHORISATION_HOLD = timedelta(minutes=10)
#: How long a payment waiting for a card holds its invoice against other terminals: within it
#: a second phone is told the invoice is being paid (``invoice_payment_in_progress``) instead
#: of stealing the payment; after it the payment is taken for abandoned and a new one replaces
#: it. (The terminal's own waits, card and PIN, are far shorter.)
PENDING_HOLD = timedelta(minutes=5)


class BackendError(Exception):
    """A request the backend refuses: a stable English ``code`` and a French ``message``."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


def invalid_field(name: str) -> BackendError:
    return BackendError("invalid_field", f"Champ « {name} » manquant ou invalide.", field=name)


#: A token of hexadecimal data with at least one letter (an AID such as A0000000031010, a
#: cryptogram): its digits are not a card number.
_HEX_TOKEN = re.compile(r"(?<![0-9A-Za-z])(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]+(?![0-9A-Za-z])")
#: Digits, possibly continued by groups of 3 or more after one space or hyphen (4242 4242 …).
_DIGIT_RUN = re.compile(r"[0-9]+(?:[ -][0-9]{3,})*")
PAN_LIKE_DIGITS = 12


def pan_like_spans(text: str) -> list[tuple[int, int]]:
    """Where ``text`` holds something that may be a full card number: 12 digits or more in a
    run, outside hexadecimal tokens such as an AID or a cryptogram. Groups joined by a single
    space or hyphen count as one run when every group after the first has 3 digits or more
    (``4242 4242 4242 4242``, ``3782-822463-10005``; not a phone number's pairs)."""
    hidden = _HEX_TOKEN.sub(lambda match: "x" * len(match.group()), text)
    return [
        match.span()
        for match in _DIGIT_RUN.finditer(hidden)
        if sum(c.isdigit() for c in match.group()) >= PAN_LIKE_DIGITS
    ]


def redact_pans(text: str) -> str:
    """``text`` with every PAN-like run masked but for its last 4 digits (for logs).

    Zero-padded numbers are left alone: no card number starts with 0, and EMV amounts (tags
    9F02, 9F03: 12 digits) do.
    """
    for start, end in reversed(pan_like_spans(text)):
        run = text[start:end]
        if run.startswith("0"):
            continue
        digits = sum(c.isdigit() for c in run)
        masked, seen = [], 0
        for c in run:
            if c.isdigit():
                seen += 1
                masked.append(c if seen > digits - 4 else "*")
            else:
                masked.append(c)
        text = text[:start] + "".join(masked) + text[end:]
    return text


@dataclass(frozen=True)
class Receipts:
    """The receipts the terminal printed (or offered) for a payment, line by line.

    Checked on construction: at most 40 lines of at most 48 characters per copy, and nothing
    that looks like a full PAN (``receipt_contains_pan``: the whole result is refused).
    """

    merchant: tuple[str, ...] | None = None
    customer: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for copy in RECEIPT_COPIES:
            lines = getattr(self, copy)
            if lines is None:
                continue
            if len(lines) > RECEIPT_MAX_LINES or not all(
                isinstance(line, str)
                and len(line) <= RECEIPT_MAX_WIDTH
                and "\n" not in line
                and "\r" not in line
                for line in lines
            ):
                raise BackendError(
                    "invalid_field",
                    f"Ticket {_COPY_NAMES[copy]} invalide : au plus {RECEIPT_MAX_LINES} lignes "
                    f"de {RECEIPT_MAX_WIDTH} caractères.",
                    field="receipts",
                )
            for number, line in enumerate(lines, start=1):
                if pan_like_spans(line):
                    raise BackendError(
                        "receipt_contains_pan",
                        f"Le ticket {_COPY_NAMES[copy]} contient un numéro de carte complet "
                        f"(ligne {number}) : un ticket ne doit montrer que le numéro masqué.",
                        field="receipts",
                    )

    @classmethod
    def from_json(cls, value: object) -> Receipts:
        """``{"merchant": [lines], "customer": [lines]}``; either copy may be missing, not both."""
        if (
            not isinstance(value, dict)
            or not value
            or not set(value) <= set(RECEIPT_COPIES)
            or not all(isinstance(lines, list) for lines in value.values())
        ):
            raise invalid_field("receipts")
        merchant, customer = (value.get(copy) for copy in RECEIPT_COPIES)
        return cls(
            merchant=None if merchant is None else tuple(merchant),
            customer=None if customer is None else tuple(customer),
        )

    def text(self, copy: ReceiptCopy) -> str | None:
        lines: tuple[str, ...] | None = getattr(self, copy)
        return None if lines is None else "\n".join(lines)


_COPY_NAMES: Mapping[ReceiptCopy, str] = {"merchant": "commerçant", "customer": "client"}


@dataclass(frozen=True)
class Merchant:
    id: str
    name: str
    city: str
    contract_number: str


@dataclass
class BillingSettings:
    """The Billing module's settings ("Activer le TPE comme moyen de paiement")."""

    tpe_enabled: bool


@dataclass(frozen=True)
class Customer:
    id: str
    name: str
    address: str
    postcode: str
    city: str
    email: str
    phone: str


@dataclass(frozen=True)
class InvoiceLine:
    label: str
    quantity: int
    unit_price_cents: int

    @property
    def total_cents(self) -> int:
        return self.quantity * self.unit_price_cents


@dataclass
class Payment:
    id: str
    invoice_number: str
    method: PaymentMethod
    amount_cents: int
    currency: str
    status: PaymentStatus
    created_at: datetime
    updated_at: datetime
    transaction_id: str | None = None
    terminal_serial: str | None = None
    entry_mode: str | None = None
    brand: str | None = None
    masked_pan: str | None = None
    response_code: str | None = None
    authorisation_code: str | None = None
    terminal_result: TerminalResult | None = None
    cvm: str | None = None
    card_ref: str | None = None  # the issuer's key for the card, never the PAN
    on_capture: CaptureEffect = "none"
    receipts: Receipts | None = None
    payment_method_id: str | None = None  # the saved card a card_on_file payment charged


@dataclass(frozen=True)
class SavedCard:
    """A card saved on a customer record (a "moyen de paiement"). Never the PAN: the issuer
    finds the card by ``card_ref``, its catalogue key."""

    id: str  # opaque: "pm_" + 24 hex digits
    customer_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str  # keyed hash of the PAN: the same card, the same fingerprint
    created_at: datetime
    card_ref: str
    capture_id: str  # the card capture that saved it


@dataclass
class CardCapture:
    """A card capture without charging ("prise d'empreinte via lecteur de cartes bancaires").

    ``pending`` → (zero-amount verification) ``verified`` (85) or ``refused`` → (the
    terminal's final word) ``saved`` (85 and approved), ``declined`` or ``aborted``. A pending
    capture may also be declined or aborted by the terminal before any verification.
    """

    id: str
    customer_id: str
    transaction_id: str
    terminal_serial: str
    status: CaptureStatus
    created_at: datetime
    updated_at: datetime
    currency: str = "EUR"
    entry_mode: str | None = None
    brand: str | None = None
    masked_pan: str | None = None
    cvm: str | None = None
    response_code: str | None = None
    card_ref: str | None = None
    verified_card: VerifiedCard | None = None  # what the issuer let us keep, on 85 only
    terminal_result: TerminalResult | None = None
    payment_method_id: str | None = None  # the saved card (new, or the duplicate kept)
    duplicate: bool = False


@dataclass(frozen=True)
class Attempt:
    """A payment try that did not pay the invoice, kept for the merchant's history."""

    payment_id: str
    at: datetime
    amount_cents: int
    outcome: PaymentStatus
    response_code: str | None


@dataclass
class Invoice:
    number: str
    customer_id: str
    issue_date: date
    due_date: date
    amount_cents: int
    balance_due_cents: int
    currency: str = "EUR"
    lines: list[InvoiceLine] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def status(self) -> InvoiceStatus:
        if self.balance_due_cents == 0:
            return "paid"
        if self.balance_due_cents < self.amount_cents:
            return "partially_paid"
        return "unpaid"


@dataclass
class Terminal:
    serial: str
    model: str
    firmware: str
    associated_at: datetime


class BackendStore:
    """One merchant's customers, invoices, payments and associated terminals."""

    def __init__(
        self,
        merchant: Merchant,
        billing: BillingSettings,
        *,
        seed: int = 0,
        fingerprint_key: bytes | None = None,
    ) -> None:
        self.merchant = merchant
        self.billing = billing
        self.customers: dict[str, Customer] = {}
        self.invoices: dict[str, Invoice] = {}
        self.payments: dict[str, Payment] = {}
        self.terminals: dict[str, Terminal] = {}
        #: terminals other merchant accounts hold (serial → merchant id): not ours to take
        self.terminals_elsewhere: dict[str, str] = {}
        self.card_states: dict[str, CardState] = {}  # the issuer's memory, by card key
        self.captures: dict[str, CardCapture] = {}
        self.payment_methods: dict[str, SavedCard] = {}  # saved cards, by id
        #: everything the store draws but transaction ids (see :meth:`_new_transaction_id`)
        self._random = random.Random(seed)
        if fingerprint_key is not None and not fingerprint_key:
            raise ValueError("fingerprint_key must not be empty")
        self._fingerprint_key = _SecretKey(fingerprint_key or default_fingerprint_key(seed))

    def __repr__(self) -> str:
        return (
            f"BackendStore(merchant={self.merchant!r}, billing={self.billing!r}, "
            f"customers={self.customers!r}, invoices={self.invoices!r}, "
            f"terminals={self.terminals!r}, card_states={self.card_states!r}, "
            f"captures={self.captures!r}, payment_methods={self.payment_methods!r})"
        )

    # -- data the harness creates directly ------------------------------------------------

    def add_customer(
        self,
        name: str,
        *,
        address: str = "",
        postcode: str = "",
        city: str = "",
        email: str = "",
        phone: str = "",
    ) -> Customer:
        customer = Customer(
            id=f"C-{len(self.customers) + 1:04d}",
            name=name,
            address=address,
            postcode=postcode,
            city=city,
            email=email,
            phone=phone,
        )
        self.customers[customer.id] = customer
        return customer

    def add_invoice(
        self,
        customer_id: str,
        amount_cents: int,
        *,
        issue_date: date,
        due_date: date,
        lines: list[InvoiceLine] | None = None,
    ) -> Invoice:
        """An unpaid invoice, numbered in sequence within its issue year (F-2026-0001…)."""
        if customer_id not in self.customers:
            raise BackendError("customer_not_found", f"Client {customer_id} introuvable.")
        _check_amount(amount_cents, limit=None)
        year = issue_date.year
        sequence = sum(1 for i in self.invoices.values() if i.issue_date.year == year) + 1
        invoice = Invoice(
            number=f"F-{year}-{sequence:04d}",
            customer_id=customer_id,
            issue_date=issue_date,
            due_date=due_date,
            amount_cents=amount_cents,
            balance_due_cents=amount_cents,
            lines=list(lines or []),
        )
        self.invoices[invoice.number] = invoice
        return invoice

    def record_offline_payment(
        self, invoice_number: str, amount_cents: int, method: PaymentMethod, at: datetime
    ) -> Payment:
        """A payment settled outside the terminal (transfer, cheque): captured at once."""
        invoice = self.invoice(invoice_number)
        _check_amount(amount_cents, limit=invoice.balance_due_cents)
        self._refuse_while_money_is_held(invoice)
        payment = self._new_payment(invoice, amount_cents, method, at)
        payment.status = "captured"
        invoice.balance_due_cents -= amount_cents
        return payment

    # -- look-ups ---------------------------------------------------------------------------

    def customer(self, customer_id: str) -> Customer:
        try:
            return self.customers[customer_id]
        except KeyError:
            raise BackendError("customer_not_found", f"Client {customer_id} introuvable.") from None

    def invoice(self, number: str) -> Invoice:
        try:
            return self.invoices[number]
        except KeyError:
            raise BackendError("invoice_not_found", f"Facture {number} introuvable.") from None

    def payment(self, payment_id: str) -> Payment:
        try:
            return self.payments[payment_id]
        except KeyError:
            raise BackendError("payment_not_found", f"Paiement {payment_id} introuvable.") from None

    def capture(self, capture_id: str) -> CardCapture:
        try:
            return self.captures[capture_id]
        except KeyError:
            raise BackendError(
                "capture_not_found", f"Prise d'empreinte {capture_id} introuvable."
            ) from None

    def payment_method(self, payment_method_id: str) -> SavedCard:
        try:
            return self.payment_methods[payment_method_id]
        except KeyError:
            raise BackendError(
                "payment_method_not_found",
                f"Moyen de paiement {payment_method_id} introuvable.",
            ) from None

    def customer_payment_methods(self, customer_id: str) -> list[SavedCard]:
        """The customer's saved cards, oldest first."""
        self.customer(customer_id)
        return [m for m in self.payment_methods.values() if m.customer_id == customer_id]

    # -- terminals --------------------------------------------------------------------------

    def _new_transaction_id(self) -> str:
        """``T`` + 12 random hex digits (48 bits from ``os.urandom``, not the seeded
        generator: unique across backends, since a fresh backend must not hand a terminal,
        whose journal outlives it, an id it already knows), never all decimal: a receipt's
        transaction line must not look like a card number to the PAN checks."""
        token = os.urandom(6).hex()
        if token.isdigit():
            token = "a" + token[1:]
        return f"T{token}"

    def check_terminal_available(self, serial: str) -> None:
        """Refuse a terminal another merchant account holds."""
        if serial in self.terminals_elsewhere:
            raise BackendError(
                "terminal_owned_elsewhere",
                f"Le terminal {serial} est déjà associé à un autre compte marchand : "
                "demandez à ce compte de le libérer avant de l'associer au vôtre.",
            )

    def associate_terminal(
        self, serial: str, model: str, firmware: str, now: datetime
    ) -> tuple[Terminal, bool]:
        """Associate a terminal with the merchant; returns it and whether it is new."""
        self.check_terminal_available(serial)
        known = self.terminals.get(serial)
        if known is not None:
            known.model, known.firmware = model, firmware
            return known, False
        terminal = Terminal(serial=serial, model=model, firmware=firmware, associated_at=now)
        self.terminals[serial] = terminal
        return terminal, True

    # -- the card payment flow ------------------------------------------------------------

    def start_tpe_payment(
        self, invoice_number: str, amount_cents: int | None, terminal_serial: str, now: datetime
    ) -> Payment:
        """A pending card payment ("Déclencher un paiement par carte via le terminal").

        It replaces a payment of the invoice still waiting for a card on the same terminal
        (the app restarted) or one older than :data:`PENDING_HOLD`; while another terminal's
        payment is live (waiting for a card, or approved and not yet confirmed) it is refused
        with ``invoice_payment_in_progress``: two phones, one payment.
        """
        if not self.billing.tpe_enabled:
            raise BackendError(
                "tpe_disabled",
                "Le paiement par TPE n'est pas activé dans le module Facturation.",
            )
        invoice = self.invoice(invoice_number)
        if invoice.status == "paid":
            raise BackendError(
                "invoice_already_paid", f"La facture {invoice.number} est déjà réglée."
            )
        if terminal_serial not in self.terminals:
            raise BackendError(
                "terminal_not_associated",
                f"Le terminal {terminal_serial} n'est pas associé à l'application.",
            )
        payment = self._open_card_payment(invoice, amount_cents, "tpe", terminal_serial, now)
        payment.terminal_serial = terminal_serial
        return payment

    def authorise(
        self, payment_id: str, request: AuthorisationRequest, processor: Processor, now: datetime
    ) -> tuple[Payment, Decision]:
        """Relay the terminal's authorisation request to the processor and record its answer.

        A payment is authorised once, except after an SCA soft decline (``1A``/``65``): the
        terminal then goes on with the same transaction, card inserted and PIN typed, as long
        as it has not reported a result and no newer payment replaced this one.
        """
        payment = self.payment(payment_id)
        invoice = self.invoice(payment.invoice_number)
        sca_retry = (
            payment.status == "declined"
            and payment.response_code in SCA_SOFT_DECLINES
            and payment.terminal_result is None
            and invoice.payments[-1] is payment
        )
        if payment.status != "pending" and not sca_retry:
            raise BackendError(
                "already_authorised",
                f"Le paiement {payment.id} a déjà reçu une réponse ({payment.status}).",
            )
        if request.transaction_id != payment.transaction_id:
            raise BackendError(
                "transaction_mismatch",
                "La transaction ne correspond pas à ce paiement.",
                field="transaction_id",
            )
        if (request.amount_cents, request.currency) != (payment.amount_cents, payment.currency):
            raise BackendError(
                "amount_mismatch",
                "Le montant ou la devise ne correspond pas au paiement demandé.",
            )
        if payment.amount_cents > invoice.balance_due_cents:
            raise BackendError(
                "invoice_already_paid", f"La facture {invoice.number} a déjà été réglée."
            )
        decision = processor.authorise(  # may raise CardDataError
            request, today=now.date(), card_states=self.card_states
        )
        self._remember(decision)
        payment.entry_mode = request.entry_mode
        payment.brand = request.brand
        payment.cvm = request.cvm
        payment.card_ref = decision.card_ref
        payment.on_capture = decision.on_capture
        payment.masked_pan = decision.masked_pan
        payment.response_code = decision.response_code
        payment.updated_at = now
        if decision.approved:
            payment.status = "authorised"
            payment.authorisation_code = self._new_authorisation_code()
        else:
            payment.status = "declined"
            self._record_attempt(invoice, payment, now)
        return payment, decision

    def record_result(
        self,
        payment_id: str,
        transaction_id: str,
        result: TerminalResult,
        now: datetime,
        *,
        receipts: Receipts | None = None,
        response_code: str | None = None,
    ) -> Payment:
        """The terminal's final word. Only processor approval + terminal approval pays.

        ``response_code`` is the terminal's own code for a decline it decided itself (a third
        wrong PIN, a PIN already blocked: ``75``): the failed attempt is recorded with it.

        ``receipts`` (already checked: no PAN) are kept with the payment. A repeated result may
        bring the receipts the first one lacked, but not different ones.
        """
        payment = self.payment(payment_id)
        if transaction_id != payment.transaction_id:
            raise BackendError(
                "transaction_mismatch",
                "La transaction ne correspond pas à ce paiement.",
                field="transaction_id",
            )
        if payment.terminal_result is not None:
            if payment.terminal_result != result:
                raise _result_conflict(payment, result)
            if receipts is not None and payment.receipts not in (None, receipts):
                raise BackendError(
                    "result_conflict",
                    f"Le paiement {payment.id} a déjà des tickets différents.",
                )
            if receipts is not None:
                payment.receipts = receipts
            return payment
        invoice = self.invoice(payment.invoice_number)
        if payment.status == "pending":
            if result == "approved":
                raise BackendError(
                    "not_authorised",
                    "Le paiement n'a pas été autorisé par la banque : il ne peut être accepté.",
                )
            payment.status = "declined" if result == "declined" else "aborted"
            if result == "declined" and response_code is not None:
                payment.response_code = response_code
            self._record_attempt(invoice, payment, now)
        elif payment.status == "declined":
            if result == "approved":
                raise _result_conflict(payment, result)
        elif payment.status == "authorised":
            if result == "approved" and payment.amount_cents > invoice.balance_due_cents:
                raise BackendError(
                    "invoice_already_paid", f"La facture {invoice.number} est déjà réglée."
                )
            if result == "approved":
                payment.status = "captured"
                invoice.balance_due_cents -= payment.amount_cents
                self._apply_capture(payment)
            else:
                payment.status = "reversed"
                self._record_attempt(invoice, payment, now)
        else:  # pragma: no cover - captured/reversed/aborted always carry a terminal result
            raise _result_conflict(payment, result)
        payment.terminal_result = result
        payment.updated_at = now
        if receipts is not None:
            payment.receipts = receipts
        return payment

    def receipts(self, payment_id: str) -> Receipts:
        payment = self.payment(payment_id)
        if payment.receipts is None:
            raise BackendError(
                "receipt_not_found", f"Aucun ticket n'est enregistré pour le paiement {payment.id}."
            )
        return payment.receipts

    # -- cards saved on the customer record ----------------------------------------------------

    def start_card_capture(
        self, customer_id: str, terminal_serial: str, now: datetime
    ) -> CardCapture:
        """A pending card capture ("Prise d'empreinte via lecteur de cartes bancaires")."""
        if not self.billing.tpe_enabled:
            raise BackendError(
                "tpe_disabled",
                "Le paiement par TPE n'est pas activé dans le module Facturation.",
            )
        customer = self.customer(customer_id)
        if terminal_serial not in self.terminals:
            raise BackendError(
                "terminal_not_associated",
                f"Le terminal {terminal_serial} n'est pas associé à l'application.",
            )
        capture = CardCapture(
            id=f"CAP-{len(self.captures) + 1:04d}",
            customer_id=customer.id,
            transaction_id=self._new_transaction_id(),
            terminal_serial=terminal_serial,
            status="pending",
            created_at=now,
            updated_at=now,
        )
        self.captures[capture.id] = capture
        return capture

    def verify_card(
        self, capture_id: str, request: AuthorisationRequest, processor: Processor, now: datetime
    ) -> tuple[CardCapture, Decision]:
        """Relay the terminal's zero-amount request to the processor's account verification
        and record its answer; once per capture."""
        capture = self.capture(capture_id)
        if capture.status != "pending":
            raise BackendError(
                "already_verified",
                f"La prise d'empreinte {capture.id} a déjà reçu une réponse ({capture.status}).",
            )
        if request.transaction_id != capture.transaction_id:
            raise BackendError(
                "transaction_mismatch",
                "La transaction ne correspond pas à cette prise d'empreinte.",
                field="transaction_id",
            )
        if request.amount_cents != 0:
            raise BackendError(
                "invalid_amount",
                "Une prise d'empreinte se fait sans montant : le montant doit être de 0 centime.",
                field="amount_cents",
            )
        if request.currency != capture.currency:
            raise invalid_field("currency")
        decision = processor.verify(  # may raise CardDataError
            request,
            today=now.date(),
            fingerprint_key=self._fingerprint_key.value,
            card_states=self.card_states,
        )
        self._remember(decision)
        capture.entry_mode = request.entry_mode
        capture.brand = request.brand
        capture.cvm = request.cvm
        capture.masked_pan = decision.masked_pan
        capture.response_code = decision.response_code
        capture.card_ref = decision.card_ref
        capture.updated_at = now
        if decision.response_code == ACCOUNT_VERIFIED and decision.verified_card is not None:
            capture.status = "verified"
            capture.verified_card = decision.verified_card
        else:
            capture.status = "refused"
        return capture, decision

    def record_capture_result(
        self, capture_id: str, transaction_id: str, result: TerminalResult, now: datetime
    ) -> CardCapture:
        """The terminal's final word. Only a verified card (85) the terminal approved is saved;
        if the customer already has it (same fingerprint), the card saved first is kept.
        Repeating the same result changes nothing; a different one is refused."""
        capture = self.capture(capture_id)
        if transaction_id != capture.transaction_id:
            raise BackendError(
                "transaction_mismatch",
                "La transaction ne correspond pas à cette prise d'empreinte.",
                field="transaction_id",
            )
        if capture.terminal_result is not None:
            if capture.terminal_result != result:
                raise _capture_result_conflict(capture, result)
            return capture
        if result == "approved":
            if capture.status == "pending":
                raise BackendError(
                    "not_verified",
                    "La carte n'a pas été vérifiée par la banque : elle ne peut être enregistrée.",
                )
            if capture.status != "verified":  # refused by the issuer
                raise _capture_result_conflict(capture, result)
            card = capture.verified_card
            # Both are set with the status "verified".
            assert card is not None
            assert capture.card_ref is not None
            saved = self._saved_card_with(capture.customer_id, card.fingerprint)
            if saved is None:
                saved = SavedCard(
                    id=f"pm_{self._random.getrandbits(96):024x}",
                    customer_id=capture.customer_id,
                    brand=card.brand,
                    last4=card.last4,
                    exp_month=card.exp_month,
                    exp_year=card.exp_year,
                    fingerprint=card.fingerprint,
                    created_at=now,
                    card_ref=capture.card_ref,
                    capture_id=capture.id,
                )
                self.payment_methods[saved.id] = saved
            else:
                capture.duplicate = True
            capture.payment_method_id = saved.id
            capture.status = "saved"
        else:
            capture.status = "declined" if result == "declined" else "aborted"
        capture.terminal_result = result
        capture.updated_at = now
        return capture

    def charge_saved_card(
        self,
        invoice_number: str,
        payment_method_id: str,
        processor: Processor,
        now: datetime,
        *,
        amount_cents: int | None = None,
    ) -> tuple[Payment, Decision]:
        """Pay with a saved card ("Payer avec la carte enregistrée"): the issuer decides at
        once, no terminal.

        Approved: the payment is captured with its authorisation code. Declined: the payment
        is declined and the attempt recorded; the invoice does not change. A terminal payment
        under way refuses it (``invoice_payment_in_progress``) unless it waited for a card
        longer than :data:`PENDING_HOLD`: then it is replaced.
        """
        invoice = self.invoice(invoice_number)
        method = self.payment_method(payment_method_id)
        if method.customer_id != invoice.customer_id:
            raise BackendError(
                "payment_method_not_for_customer",
                f"Ce moyen de paiement n'appartient pas au client de la facture {invoice.number}.",
                field="payment_method_id",
            )
        if invoice.status == "paid":
            raise BackendError(
                "invoice_already_paid", f"La facture {invoice.number} est déjà réglée."
            )
        payment = self._open_card_payment(invoice, amount_cents, "card_on_file", None, now)
        amount, transaction_id = payment.amount_cents, payment.transaction_id
        assert transaction_id is not None  # set by _open_card_payment
        payment.payment_method_id = method.id
        payment.entry_mode = CREDENTIAL_ON_FILE
        payment.cvm = "none"
        payment.brand = method.brand
        decision = processor.charge_on_file(
            method.card_ref,
            transaction_id=transaction_id,
            amount_cents=amount,
            currency=invoice.currency,
            brand=method.brand,
            today=now.date(),
            card_states=self.card_states,
        )
        self._remember(decision)
        payment.card_ref = decision.card_ref
        payment.on_capture = decision.on_capture
        payment.masked_pan = decision.masked_pan or None
        payment.response_code = decision.response_code
        if decision.approved:
            payment.authorisation_code = self._new_authorisation_code()
            payment.status = "captured"
            invoice.balance_due_cents -= amount
            self._apply_capture(payment)
        else:
            payment.status = "declined"
            self._record_attempt(invoice, payment, now)
        return payment, decision

    # -- scenario checks ----------------------------------------------------------------------

    def check_invariants(self, *, settled: bool = True) -> list[str]:
        """What is wrong with the store's data, one sentence per violation (empty: all fine).

        Meant to run after every scenario: money and invoice states must agree whatever the
        path taken. ``settled``: no flow is in progress, so an approval still waiting for the
        terminal's word is money held on an unpaid invoice (pass False in mid-flow checks).
        """
        problems: list[str] = []
        for invoice in self.invoices.values():
            captured = sum(p.amount_cents for p in invoice.payments if p.status == "captured")
            expected = invoice.amount_cents - captured
            if invoice.balance_due_cents != expected:
                problems.append(
                    f"invoice {invoice.number}: balance due {invoice.balance_due_cents} cents, "
                    f"but amount {invoice.amount_cents} - captured {captured} = {expected}"
                )
            if invoice.balance_due_cents < 0:
                problems.append(
                    f"invoice {invoice.number}: balance due is negative "
                    f"({invoice.balance_due_cents} cents)"
                )
            for payment in invoice.payments:
                if payment.status == "authorised" and invoice.status == "paid":
                    problems.append(
                        f"payment {payment.id}: still authorised (money held) on invoice "
                        f"{invoice.number}, which is paid"
                    )
                elif payment.status == "authorised" and settled:
                    problems.append(
                        f"payment {payment.id}: authorised (money held) but never confirmed "
                        f"by the terminal, invoice {invoice.number} {invoice.status}"
                    )
                if payment.method not in CARD_METHODS or payment.status != "captured":
                    continue
                if not payment.authorisation_code:
                    problems.append(
                        f"payment {payment.id}: captured card payment without an authorisation code"
                    )
                if payment.response_code != "00":
                    problems.append(
                        f"payment {payment.id}: captured card payment with response code "
                        f"{payment.response_code!r}, not '00'"
                    )
        for payment in self.payments.values():
            owner = self.invoices.get(payment.invoice_number)
            if owner is None or not any(p is payment for p in owner.payments):
                problems.append(
                    f"payment {payment.id}: not listed on invoice {payment.invoice_number}"
                )
            if payment.method == "card_on_file":
                method = self.payment_methods.get(payment.payment_method_id or "")
                if method is None:
                    problems.append(
                        f"payment {payment.id}: charges unknown saved card "
                        f"{payment.payment_method_id!r}"
                    )
                elif owner is not None and method.customer_id != owner.customer_id:
                    problems.append(
                        f"payment {payment.id}: charges saved card {method.id} of customer "
                        f"{method.customer_id}, not of the invoice's customer {owner.customer_id}"
                    )
        fingerprints: dict[tuple[str, str], str] = {}
        for method in self.payment_methods.values():
            if method.customer_id not in self.customers:
                problems.append(
                    f"saved card {method.id}: customer {method.customer_id} does not exist"
                )
            first = fingerprints.setdefault((method.customer_id, method.fingerprint), method.id)
            if first != method.id:
                problems.append(
                    f"saved card {method.id}: same card as {first} for customer "
                    f"{method.customer_id}"
                )
            capture = self.captures.get(method.capture_id)
            if capture is None or capture.response_code != ACCOUNT_VERIFIED:
                problems.append(
                    f"saved card {method.id}: not saved by a card capture the issuer verified"
                )
        for capture in self.captures.values():
            if capture.status == "saved" and capture.payment_method_id not in self.payment_methods:
                problems.append(
                    f"card capture {capture.id}: saved, but its card "
                    f"{capture.payment_method_id!r} is on no customer record"
                )
        return problems

    # -- internals --------------------------------------------------------------------------

    def _open_card_payment(
        self,
        invoice: Invoice,
        amount_cents: int | None,
        method: PaymentMethod,
        terminal_serial: str | None,
        now: datetime,
    ) -> Payment:
        """A new pending card payment of ``invoice`` with a transaction id, once the amount
        (default: the balance due) is checked, stale holds released, and no other terminal's
        live payment nor held money stands in the way; it replaces a payment still pending.

        ``terminal_serial``: the terminal that will take the card (None: no terminal), whose
        own live payment does not stand in the way."""
        amount = invoice.balance_due_cents if amount_cents is None else amount_cents
        _check_amount(amount, limit=invoice.balance_due_cents)
        self._release_stale_holds(invoice, now)
        self._refuse_while_paid_elsewhere(invoice, terminal_serial, now)
        self._refuse_while_money_is_held(invoice)
        self._abort_pending(invoice, now)
        payment = self._new_payment(invoice, amount, method, now)
        payment.transaction_id = self._new_transaction_id()
        return payment

    def _remember(self, decision: Decision) -> None:
        """Keep the card's new state the issuer decided (its memory, by card key)."""
        if decision.card_ref is not None and decision.card_state is not None:
            self.card_states[decision.card_ref] = decision.card_state

    def _new_authorisation_code(self) -> str:
        """Six digits from the seeded generator (one draw: seeded histories repeat)."""
        return f"{self._random.randrange(1_000_000):06d}"

    def _new_payment(
        self, invoice: Invoice, amount_cents: int, method: PaymentMethod, now: datetime
    ) -> Payment:
        payment = Payment(
            id=f"P-{len(self.payments) + 1:04d}",
            invoice_number=invoice.number,
            method=method,
            amount_cents=amount_cents,
            currency=invoice.currency,
            status="pending",
            created_at=now,
            updated_at=now,
        )
        self.payments[payment.id] = payment
        invoice.payments.append(payment)
        return payment

    def _abort_pending(self, invoice: Invoice, now: datetime) -> None:
        for other in invoice.payments:
            if other.status == "pending":
                # Never authorised, so nothing was charged: the new attempt replaces it.
                other.status = "aborted"
                other.terminal_result = "aborted"
                other.updated_at = now
                self._record_attempt(invoice, other, now)

    def _saved_card_with(self, customer_id: str, fingerprint: str) -> SavedCard | None:
        return next(
            (
                m
                for m in self.payment_methods.values()
                if m.customer_id == customer_id and m.fingerprint == fingerprint
            ),
            None,
        )

    def release_stale_holds(self, invoice_number: str, now: datetime) -> bool:
        """Let the invoice's unconfirmed approvals older than :data:`AUTHORISATION_HOLD`
        lapse (reversed); whether any did."""
        invoice = self.invoice(invoice_number)
        held = [p for p in invoice.payments if p.status == "authorised"]
        self._release_stale_holds(invoice, now)
        return any(p.status == "reversed" for p in held)

    def _release_stale_holds(self, invoice: Invoice, now: datetime) -> None:
        """An approval the terminal never confirmed (link lost, phone switched off) does not
        block the invoice for ever: after :data:`AUTHORISATION_HOLD` it is reversed, as an
        issuer lets an uncaptured authorisation lapse. A late confirmation is then refused."""
        for other in invoice.payments:
            if other.status == "authorised" and now - other.updated_at > AUTHORISATION_HOLD:
                other.status = "reversed"
                other.updated_at = now
                self._record_attempt(invoice, other, now)

    def payment_in_progress(self, invoice_number: str, now: datetime) -> bool:
        """Whether a card payment of the invoice is under way: waiting for a card for less
        than :data:`PENDING_HOLD`, or approved and waiting for the terminal's word for less
        than :data:`AUTHORISATION_HOLD`."""
        invoice = self.invoice(invoice_number)
        return any(_live(payment, now) for payment in invoice.payments)

    @staticmethod
    def _refuse_while_paid_elsewhere(
        invoice: Invoice, terminal_serial: str | None, now: datetime
    ) -> None:
        """Two phones, one invoice: another terminal's live payment keeps the invoice."""
        for other in invoice.payments:
            if _live(other, now) and other.terminal_serial != terminal_serial:
                raise BackendError(
                    "invoice_payment_in_progress",
                    f"La facture {invoice.number} est en cours de paiement sur un autre "
                    f"terminal ({other.terminal_serial}) : attendez la fin de ce paiement.",
                )

    @staticmethod
    def _refuse_while_money_is_held(invoice: Invoice) -> None:
        if any(other.status == "authorised" for other in invoice.payments):
            # Money is held for this invoice: the terminal's word must come first.
            raise BackendError(
                "payment_in_progress",
                f"Un paiement de la facture {invoice.number} attend la confirmation du terminal.",
            )

    def _apply_capture(self, payment: Payment) -> None:
        """Move the card's PSD2 counters for a captured payment (the issuer's clearing)."""
        if payment.card_ref is None:
            return
        state = self.card_states.get(payment.card_ref)
        if state is not None:
            self.card_states[payment.card_ref] = state.after_capture(
                payment.on_capture, payment.amount_cents
            )

    @staticmethod
    def _record_attempt(invoice: Invoice, payment: Payment, now: datetime) -> None:
        invoice.attempts.append(
            Attempt(
                payment_id=payment.id,
                at=now,
                amount_cents=payment.amount_cents,
                outcome=payment.status,
                response_code=payment.response_code,
            )
        )


class _SecretKey:
    """A key that ``repr`` (and so a dump of the store's attributes) does not show."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "_SecretKey(…)"


def default_fingerprint_key(seed: int) -> bytes:
    """The store's default card-fingerprint key: a **test secret** derived from its seed.

    Deterministic (one seed, one history) and different from one seed to another. A real
    backend would draw its key once and keep it in a secrets store; pass it as
    ``BackendStore(fingerprint_key=...)``.
    """
    return hashlib.sha256(f"tpe-sim card fingerprint key/{seed}".encode()).digest()


def _capture_result_conflict(capture: CardCapture, result: str) -> BackendError:
    return BackendError(
        "result_conflict",
        f"La prise d'empreinte {capture.id} a déjà une issue ({capture.status}) "
        f"incompatible avec « {result} ».",
    )


def _live(payment: Payment, now: datetime) -> bool:
    """A card payment under way: waiting for a card (:data:`PENDING_HOLD`), soft-declined
    and waiting for the card to be inserted with its PIN (as long), or approved and waiting
    for the terminal's confirmation (:data:`AUTHORISATION_HOLD`)."""
    if payment.status == "pending":
        return now - payment.created_at < PENDING_HOLD
    if payment.status == "declined":
        return (
            payment.response_code in SCA_SOFT_DECLINES
            and payment.terminal_result is None
            and now - payment.updated_at < PENDING_HOLD
        )
    if payment.status == "authorised":
        return now - payment.updated_at <= AUTHORISATION_HOLD
    return False


def _check_amount(amount_cents: object, *, limit: int | None) -> None:
    if (
        type(amount_cents) is not int
        or amount_cents <= 0
        or (limit is not None and amount_cents > limit)
    ):
        raise BackendError(
            "invalid_amount",
            "Le montant doit être un nombre entier de centimes, positif et au plus égal au "
            "solde dû.",
            field="amount_cents",
        )


def _result_conflict(payment: Payment, result: str) -> BackendError:
    return BackendError(
        "result_conflict",
        f"Le paiement {payment.id} a déjà une issue ({payment.status}) "
        f"incompatible avec « {result} ».",
    )
