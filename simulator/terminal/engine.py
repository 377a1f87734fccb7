"""The terminal's brain, without I/O: commands and card actions in, events and screens out.

States::

    IDLE ──PaymentRequest──▶ WAITING_FOR_CARD ──card read──▶ AUTHORISING
      ▲                        │ timeout / abort                │ AuthorisationResponse
      │                        ▼                                ▼
      └──── result shown ── ABORTED          APPROVED / DECLINED ── result shown ──▶ IDLE

Time is passed in (``now``, loop seconds; ``calendar``, the wall date of the scenario): the
engine never reads a clock. It tells its driver when it next needs waking through
:attr:`TerminalEngine.next_deadline`; the driver calls :meth:`TerminalEngine.on_timer` then.
Everything the terminal sends is queued as protocol events; the driver drains them with
:meth:`TerminalEngine.drain_events`.

Security: payment commands are refused unless the driver says the link is protected by a
MITM-authenticated bond (a numeric comparison or passkey pairing). Bumble does not enforce
this itself; see ``docs/protocol.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from simulator.cards import CardError, EntryMode, TransactionData, VirtualCard
from simulator.protocol import ProtocolError
from simulator.protocol.carddata import SensitiveCardData, associated_data, mask_pan, seal
from simulator.protocol.messages import (
    AbortRequest,
    AuthorisationRequest,
    AuthorisationResponse,
    Command,
    CommandAccepted,
    DiagnosisRequest,
    DiagnosisResponse,
    DisplayUpdate,
    Error,
    Event,
    PaymentRequest,
    PaymentResponse,
    TransactionStatusRequest,
    TransactionStatusResponse,
)
from simulator.protocol.response_codes import RESPONSE_MESSAGES, response_message
from simulator.terminal.profile import TerminalProfile
from simulator.terminal.screen import SCREEN_WIDTH, Screen, format_amount

CONTACTLESS_CEILING = 5000  # cents: 50 EUR per contactless transaction in France since 2020
MAX_AMOUNT = 99_999_999  # 12-digit EMV amount, but no sane invoice is near this
CURRENCIES = {"EUR": "0978"}
COUNTRY_FRANCE = "0250"


class State(StrEnum):
    IDLE = "idle"
    WAITING_FOR_CARD = "waiting_for_card"
    AUTHORISING = "authorising"
    APPROVED = "approved"
    DECLINED = "declined"
    ABORTED = "aborted"


FINAL_STATES = (State.APPROVED, State.DECLINED, State.ABORTED)


@dataclass(frozen=True)
class Timeouts:
    """Seconds the terminal waits before it gives up or moves on."""

    card_presentation: float = 60.0
    authorisation: float = 30.0
    result_display: float = 3.0
    pairing_code_display: float = 30.0


@dataclass(frozen=True)
class MerchantSetup:
    """What the terminal's configuration knows of its merchant (printed on receipts)."""

    name: str
    city: str
    contract_number: str


@dataclass
class Transaction:
    transaction_id: str
    amount: int
    currency: str
    reference: str
    state: State = State.WAITING_FOR_CARD
    response_code: str | None = None
    authorisation_code: str | None = None
    brand: str | None = None
    masked_pan: str | None = None
    entry_mode: EntryMode | None = None
    application_label: str | None = None
    aid: str | None = None
    message: str = ""
    receipt: list[str] = field(default_factory=list)


class TerminalError(Exception):
    """A physical action the terminal cannot take in its current state (a harness mistake)."""


class TerminalEngine:
    """One terminal: state machine, screen, and journal of transactions."""

    def __init__(
        self,
        profile: TerminalProfile,
        merchant: MerchantSetup,
        timeouts: Timeouts | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.profile = profile
        self.merchant = merchant
        self.timeouts = timeouts or Timeouts()
        self.battery = profile.battery
        self.screen = Screen()
        self.state = State.IDLE
        self.current: Transaction | None = None
        self.journal: dict[str, Transaction] = {}
        self._random_bytes = random_bytes
        self._events: list[Event] = []
        self._deadline: float | None = None
        self._show_idle(0.0)

    # ---------------------------------------------------------------- driver interface
    @property
    def next_deadline(self) -> float | None:
        """Loop time at which :meth:`on_timer` must be called, if any."""
        return self._deadline

    def drain_events(self) -> list[Event]:
        """Events to send to the phone, in order; the queue is emptied."""
        events, self._events = self._events, []
        return events

    def handle_command(
        self, command: Command, now: float, calendar: dt.datetime, *, secure: bool
    ) -> None:
        """React to a command from the phone. ``secure``: the link has a MITM-authenticated bond."""
        if isinstance(command, DiagnosisRequest):
            self._emit(
                DiagnosisResponse(
                    in_reply_to=command.id,
                    state=self.state.value,
                    serial=self.profile.serial,
                    model=self.profile.model,
                    firmware=self.profile.firmware,
                    battery=self.battery,
                )
            )
            return
        if not secure:
            self._refuse(
                command,
                "insecure_link",
                "Commande refusée : liaison non sécurisée. Associez le terminal en confirmant "
                "le code à 6 chiffres affiché sur son écran.",
            )
            return
        match command:
            case PaymentRequest():
                self._on_payment_request(command, now)
            case AuthorisationResponse():
                self._on_authorisation_response(command, now, calendar)
            case AbortRequest():
                self._on_abort(command, now)
            case TransactionStatusRequest():
                self._on_status_request(command)
            case _:  # pragma: no cover - every command type is matched above
                raise AssertionError(f"unhandled command {command!r}")

    def handle_protocol_error(self, error: ProtocolError) -> None:
        """Bytes from the phone that did not make a valid command: say why, stay usable."""
        self._emit(
            Error(
                code=error.code,
                message="Message illisible reçu du téléphone : commande ignorée.",
                reason=error.reason,
            )
        )

    def on_timer(self, now: float) -> None:
        """Called by the driver at (or after) :attr:`next_deadline`."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        txn = self.current
        if self.state is State.WAITING_FOR_CARD and txn is not None:
            self._finish(
                txn,
                State.ABORTED,
                now,
                code=None,
                message="Délai de présentation de la carte dépassé",
            )
        elif self.state is State.AUTHORISING and txn is not None:
            self._finish(txn, State.ABORTED, now, code=None, message="Pas de réponse de la banque")
        elif self.state in FINAL_STATES:
            self.state = State.IDLE
            self.current = None
            self._show_idle(now)

    # ---------------------------------------------------------------- physical actions
    def present_card(
        self, card: VirtualCard, mode: EntryMode, now: float, calendar: dt.datetime
    ) -> None:
        """The cardholder taps or inserts ``card``."""
        txn = self.current
        if self.state is not State.WAITING_FOR_CARD or txn is None:
            raise TerminalError(
                f"the terminal is not waiting for a card (state {self.state.value})"
            )
        if mode is EntryMode.CHIP:
            raise TerminalError("chip-and-PIN entry is not simulated yet; tap the card")
        if txn.amount > CONTACTLESS_CEILING:
            self._show(now, format_amount(txn.amount, txn.currency), "INSÉREZ VOTRE CARTE")
            return
        txn_data = TransactionData(
            amount=txn.amount,
            currency_code=CURRENCIES[txn.currency],
            country_code=COUNTRY_FRANCE,
            date=calendar.date(),
            unpredictable_number=self._random_bytes(4).hex().upper(),
        )
        try:
            read = card.read(mode, txn_data)
        except CardError:
            self._show(
                now,
                format_amount(txn.amount, txn.currency),
                "CARTE NON SUPPORTÉE",
                "INSÉREZ LA CARTE",
            )
            return
        sealed = seal(
            self.profile.card_data_key,
            self.profile.serial,
            SensitiveCardData(pan=read.pan, expiry=read.expiry, pan_sequence=read.pan_sequence),
            associated_data(txn.transaction_id, txn.amount, txn.currency),
            self._random_bytes,
        )
        txn.brand = read.brand
        txn.masked_pan = mask_pan(read.pan)
        txn.entry_mode = read.entry_mode
        txn.application_label = read.application.label
        txn.aid = read.application.aid
        txn.state = self.state = State.AUTHORISING
        self._deadline = now + self.timeouts.authorisation
        self._show(
            now, format_amount(txn.amount, txn.currency), "AUTORISATION", "VEUILLEZ PATIENTER"
        )
        self._emit(
            AuthorisationRequest(
                transaction_id=txn.transaction_id,
                amount=txn.amount,
                currency=txn.currency,
                entry_mode=read.entry_mode.value,
                brand=read.brand,
                masked_pan=txn.masked_pan,
                application_label=read.application.label,
                aid=read.application.aid,
                card_data=sealed,
                emv=read.emv,
            )
        )

    def show_pairing_code(self, code: str, now: float) -> None:
        """Pairing: the 6-digit code the user compares with the phone's."""
        self._show(now, "APPAIRAGE", f"CODE {code}", "CONFIRMEZ SUR LE TEL")

    def pairing_ended(self, now: float, success: bool) -> None:
        if self.state is State.IDLE:
            self._show_idle(now, "APPAIRAGE RÉUSSI" if success else "APPAIRAGE ÉCHOUÉ")

    # ---------------------------------------------------------------- command handlers
    def _on_payment_request(self, cmd: PaymentRequest, now: float) -> None:
        if self.state not in (State.IDLE, *FINAL_STATES):  # a result on screen may be replaced
            self._refuse(cmd, "busy", "Terminal occupé : une transaction est déjà en cours.")
            return
        if cmd.currency not in CURRENCIES:
            self._refuse(cmd, "unsupported_currency", f"Devise non acceptée : {cmd.currency}.")
            return
        if not 0 < cmd.amount <= MAX_AMOUNT:
            self._refuse(cmd, "invalid_amount", "Montant invalide.")
            return
        if not cmd.transaction_id.strip():
            self._refuse(cmd, "invalid_transaction_id", "Identifiant de transaction manquant.")
            return
        if cmd.transaction_id in self.journal:
            self._refuse(cmd, "duplicate_transaction", "Transaction déjà connue du terminal.")
            return
        txn = Transaction(cmd.transaction_id, cmd.amount, cmd.currency, cmd.reference)
        self.journal[txn.transaction_id] = txn
        self.current = txn
        self.state = State.WAITING_FOR_CARD
        self._deadline = now + self.timeouts.card_presentation
        self._emit(CommandAccepted(in_reply_to=cmd.id, transaction_id=txn.transaction_id))
        self._show(now, format_amount(cmd.amount, cmd.currency), "PRÉSENTEZ OU", "INSÉREZ LA CARTE")

    def _on_authorisation_response(
        self, cmd: AuthorisationResponse, now: float, calendar: dt.datetime
    ) -> None:
        txn = self.current
        if (
            self.state is not State.AUTHORISING
            or txn is None
            or txn.transaction_id != cmd.transaction_id
        ):
            self._refuse(
                cmd,
                "unexpected_authorisation",
                "Aucune autorisation attendue pour cette transaction.",
            )
            return
        self._emit(CommandAccepted(in_reply_to=cmd.id, transaction_id=txn.transaction_id))
        code = cmd.response_code
        message = cmd.message or response_message(code)
        if code == "00" and not cmd.authorisation_code:
            # An approval without an authorisation number cannot be printed or disputed.
            self._finish(txn, State.DECLINED, now, code="96", message=RESPONSE_MESSAGES["96"])
        elif code == "00":
            txn.authorisation_code = cmd.authorisation_code
            txn.receipt = self._receipt(txn, calendar)
            self._finish(txn, State.APPROVED, now, code=code, message=message)
        else:
            self._finish(txn, State.DECLINED, now, code=code, message=message)

    def _on_abort(self, cmd: AbortRequest, now: float) -> None:
        txn = self.current
        if txn is None or txn.transaction_id != cmd.transaction_id or self.state in FINAL_STATES:
            self._refuse(cmd, "nothing_to_abort", "Aucune transaction en cours à annuler.")
            return
        self._emit(CommandAccepted(in_reply_to=cmd.id, transaction_id=txn.transaction_id))
        self._finish(txn, State.ABORTED, now, code=None, message="Transaction annulée")

    def _on_status_request(self, cmd: TransactionStatusRequest) -> None:
        txn = self.journal.get(cmd.transaction_id)
        self._emit(
            TransactionStatusResponse(
                in_reply_to=cmd.id,
                transaction_id=cmd.transaction_id,
                state=txn.state.value if txn else "unknown",
                result=txn.state.value if txn and txn.state in FINAL_STATES else None,
                response_code=txn.response_code if txn else None,
                authorisation_code=txn.authorisation_code if txn else None,
            )
        )

    # ---------------------------------------------------------------- helpers
    def _finish(
        self, txn: Transaction, state: State, now: float, *, code: str | None, message: str
    ) -> None:
        txn.state = self.state = state
        txn.response_code = code
        txn.message = message
        amount = format_amount(txn.amount, txn.currency)
        if state is State.APPROVED:
            self._show(now, amount, "PAIEMENT ACCEPTÉ")
        else:
            heading = "PAIEMENT REFUSÉ" if state is State.DECLINED else "TRANSACTION ANNULÉE"
            reason = textwrap.wrap(message.upper(), SCREEN_WIDTH)[:3]
            self._show(now, heading, *(reason if reason != [heading] else []))
        self._deadline = now + self.timeouts.result_display
        result = {State.APPROVED: "approved", State.DECLINED: "declined"}.get(state, "aborted")
        self._emit(
            PaymentResponse(
                transaction_id=txn.transaction_id,
                result=result,  # type: ignore[arg-type]
                amount=txn.amount,
                currency=txn.currency,
                response_code=code,
                authorisation_code=txn.authorisation_code,
                brand=txn.brand,
                masked_pan=txn.masked_pan,
                entry_mode=txn.entry_mode.value if txn.entry_mode else None,
                message=message,
                receipt=list(txn.receipt),
            )
        )

    def _receipt(self, txn: Transaction, calendar: dt.datetime) -> list[str]:
        """The customer's CB receipt ("ticket client"). Never the expiry date."""
        assert txn.entry_mode is not None
        assert txn.masked_pan is not None
        return [
            self.merchant.name.upper(),
            self.merchant.city.upper(),
            f"LE {calendar:%d/%m/%y} A {calendar:%H:%M:%S}",
            f"{txn.brand}",
            f"{txn.aid}",
            f"{txn.application_label}",
            f"CONTRAT {self.merchant.contract_number}",
            txn.masked_pan,
            f"TRANSACTION {txn.transaction_id}",
            "DEBIT",
            txn.entry_mode.receipt_label,
            f"MONTANT = {format_amount(txn.amount, txn.currency)}",
            f"AUTORISATION {txn.authorisation_code}",
            "TICKET CLIENT",
            "A CONSERVER",
        ]

    def _refuse(self, cmd: Command, code: str, message: str) -> None:
        self._emit(Error(in_reply_to=cmd.id, code=code, message=message))

    def _show_idle(self, now: float, *extra: str) -> None:
        self._show(now, "BIENVENUE", self.profile.name, *extra)

    def _show(self, now: float, *lines: str) -> None:
        if self.screen.show(now, *lines):
            self._emit(DisplayUpdate(lines=list(self.screen.lines)))

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def set_battery(self, level: int) -> None:
        if not 0 <= level <= 100:
            raise ValueError(f"battery level {level} is not 0-100")
        self.battery = level


__all__ = [
    "CONTACTLESS_CEILING",
    "MerchantSetup",
    "State",
    "TerminalEngine",
    "TerminalError",
    "Timeouts",
    "Transaction",
]
