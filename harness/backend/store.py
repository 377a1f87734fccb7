"""The mock invoicing backend's data and business rules, in memory and without I/O.

The store never reads a clock (callers pass ``now``) and never holds a card number: a payment
keeps only the brand and the masked PAN the processor derived. Identifiers, transaction ids and
authorisation codes come from one seeded generator, so one seed gives one history.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from harness.backend.processor import AuthorisationRequest, Decision, Processor

InvoiceStatus = Literal["unpaid", "paid", "partially_paid"]
PaymentMethod = Literal["tpe", "transfer", "cheque"]
PaymentStatus = Literal["pending", "authorised", "declined", "aborted", "captured", "reversed"]
TerminalResult = Literal["approved", "declined", "aborted"]
TERMINAL_RESULTS: tuple[TerminalResult, ...] = ("approved", "declined", "aborted")


class BackendError(Exception):
    """A request the backend refuses: a stable English ``code`` and a French ``message``."""

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.field = field


def invalid_field(name: str) -> BackendError:
    return BackendError("invalid_field", f"Champ « {name} » manquant ou invalide.", field=name)


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

    def __init__(self, merchant: Merchant, billing: BillingSettings, *, seed: int = 0) -> None:
        self.merchant = merchant
        self.billing = billing
        self.customers: dict[str, Customer] = {}
        self.invoices: dict[str, Invoice] = {}
        self.payments: dict[str, Payment] = {}
        self.terminals: dict[str, Terminal] = {}
        self._random = random.Random(seed)

    def __repr__(self) -> str:
        return (
            f"BackendStore(merchant={self.merchant!r}, billing={self.billing!r}, "
            f"customers={self.customers!r}, invoices={self.invoices!r}, "
            f"terminals={self.terminals!r})"
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

    # -- terminals --------------------------------------------------------------------------

    def associate_terminal(
        self, serial: str, model: str, firmware: str, now: datetime
    ) -> tuple[Terminal, bool]:
        """Associate a terminal with the merchant; returns it and whether it is new."""
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
        """A pending card payment ("Déclencher un paiement par carte via le terminal")."""
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
        amount = invoice.balance_due_cents if amount_cents is None else amount_cents
        _check_amount(amount, limit=invoice.balance_due_cents)
        for other in invoice.payments:
            if other.status == "authorised":
                # Money is held for this invoice: the terminal's word must come first.
                raise BackendError(
                    "payment_in_progress",
                    f"Un paiement de la facture {invoice.number} attend la confirmation du "
                    "terminal.",
                )
            if other.status == "pending":
                # Never authorised, so nothing was charged: the new attempt replaces it.
                other.status = "aborted"
                other.terminal_result = "aborted"
                other.updated_at = now
                self._record_attempt(invoice, other, now)
        payment = self._new_payment(invoice, amount, "tpe", now)
        payment.transaction_id = f"T{self._random.getrandbits(48):012x}"
        payment.terminal_serial = terminal_serial
        return payment

    def authorise(
        self, payment_id: str, request: AuthorisationRequest, processor: Processor, now: datetime
    ) -> tuple[Payment, Decision]:
        """Relay the terminal's authorisation request to the processor and record its answer."""
        payment = self.payment(payment_id)
        if payment.status != "pending":
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
        invoice = self.invoice(payment.invoice_number)
        if payment.amount_cents > invoice.balance_due_cents:
            raise BackendError(
                "invoice_already_paid", f"La facture {invoice.number} a déjà été réglée."
            )
        decision = processor.authorise(request, today=now.date())  # may raise CardDataError
        payment.entry_mode = request.entry_mode
        payment.brand = request.brand
        payment.masked_pan = decision.masked_pan
        payment.response_code = decision.response_code
        payment.updated_at = now
        if decision.approved:
            payment.status = "authorised"
            payment.authorisation_code = f"{self._random.randrange(1_000_000):06d}"
        else:
            payment.status = "declined"
            self._record_attempt(invoice, payment, now)
        return payment, decision

    def record_result(
        self, payment_id: str, transaction_id: str, result: TerminalResult, now: datetime
    ) -> Payment:
        """The terminal's final word. Only processor approval + terminal approval pays."""
        payment = self.payment(payment_id)
        if transaction_id != payment.transaction_id:
            raise BackendError(
                "transaction_mismatch",
                "La transaction ne correspond pas à ce paiement.",
                field="transaction_id",
            )
        if payment.terminal_result is not None:
            if payment.terminal_result == result:
                return payment
            raise _result_conflict(payment, result)
        invoice = self.invoice(payment.invoice_number)
        if payment.status == "pending":
            if result == "approved":
                raise BackendError(
                    "not_authorised",
                    "Le paiement n'a pas été autorisé par la banque : il ne peut être accepté.",
                )
            payment.status = "declined" if result == "declined" else "aborted"
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
            else:
                payment.status = "reversed"
                self._record_attempt(invoice, payment, now)
        else:  # pragma: no cover - captured/reversed/aborted always carry a terminal result
            raise _result_conflict(payment, result)
        payment.terminal_result = result
        payment.updated_at = now
        return payment

    # -- internals --------------------------------------------------------------------------

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
