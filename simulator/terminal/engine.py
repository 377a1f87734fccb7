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

import dataclasses
import datetime as dt
import os
import re
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from simulator.cards import (
    Application,
    CardRead,
    EntryMode,
    TransactionData,
    VirtualCard,
)
from simulator.protocol import ProtocolError
from simulator.protocol.carddata import SensitiveCardData, associated_data, mask_pan, seal
from simulator.protocol.dukpt import Originator
from simulator.protocol.messages import (
    AbortRequest,
    AuthorisationRequest,
    AuthorisationResponse,
    CardAcquisitionRequest,
    CardAcquisitionResponse,
    Command,
    CommandAccepted,
    Cvm,
    DiagnosisRequest,
    DiagnosisResponse,
    DisplayUpdate,
    Error,
    Event,
    PaymentRequest,
    PaymentResponse,
    SetupProgress,
    SetupRequest,
    SetupResponse,
    TransactionStatusRequest,
    TransactionStatusResponse,
)
from simulator.protocol.response_codes import response_message
from simulator.terminal.journal import JournalEntry
from simulator.terminal.profile import TerminalProfile
from simulator.terminal.screen import SCREEN_WIDTH, Screen, format_amount

CONTACTLESS_CEILING = 5000  # cents: 50 EUR per contactless transaction in France since 2020
MAX_AMOUNT = 99_999_999
MAX_ID_LENGTH = 64  # transaction ids and invoice references: they end up on receipts
AUTHORISATION_CODE = re.compile(
    r"[0-9A-Z]{6}"
)  # ISO 8583 field 38  # 12-digit EMV amount, but no sane invoice is near this
CURRENCIES = {"EUR": "0978"}
#: Schemes whose applications this terminal's kernel accepts, in its preference order.
SUPPORTED_BRANDS = ("CB", "VISA", "MASTERCARD", "AMEX")
#: Issuer soft declines asking for strong customer authentication (PSD2): Visa/CB, Mastercard.
SCA_SOFT_DECLINES = ("1A", "65")
#: EMV tag 9F34 (CVM results: method, condition, result) for each way the holder was verified.
CVM_RESULTS = {
    "none": "1F0302",
    "cdcvm": "010002",
    "offline_pin": "410302",
    "online_pin": "420300",
}
CVM_RECEIPT_LINES = {
    "offline_pin": "CODE CONFIDENTIEL VERIFIE",
    "online_pin": "CODE CONFIDENTIEL VERIFIE",
    "cdcvm": "VERIFIE PAR LE TELEPHONE",
}
RECEIPT_WIDTH = 24
CAPTURE_HEADER = "ENREGISTREMENT CARTE"
SETUP_DONE = "Terminal configuré et prêt à encaisser"
SCA_FAILED = "Paiement refusé par la banque : authentification forte non reconnue"
#: The answer that verifies a card with no amount: 85, no reason to decline (the backend saves
#: a card only on this answer, so the terminal says "enregistrée" only on it too).
VERIFICATION_APPROVALS = ("85",)
COUNTRY_FRANCE = "0250"
NO_CARD_DATA_KEY = "Clé de chiffrement absente : terminal à initialiser"
POWER_LOST = "Transaction interrompue : le terminal s'est éteint"
CANCELLED_FROM_APP = "Transaction annulée"
CANCELLED_ON_TERMINAL = "Annulée sur le terminal"
#: after the bank approved, a cancellation ends the transaction aborted: nothing is charged
APPROVAL_CANCELLED = "l'accord de la banque est annulé, rien n'est débité"


def select_application(card: VirtualCard, brand: str | None = None) -> Application | None:
    """Application selection: the cardholder's choice if any, else CB on a co-badged card
    (French terminals route to CB by default), else the card's highest-priority application
    that the kernel supports. ``None`` when the terminal supports none of them."""
    supported = [app for app in card.applications if app.brand in SUPPORTED_BRANDS]
    if brand is not None:
        chosen = [app for app in supported if app.brand == brand.upper()]
        if not chosen:
            raise TerminalError(f"the card has no {brand} application this terminal accepts")
        return chosen[0]
    cb = [app for app in supported if app.brand == "CB"]
    candidates = cb or supported
    return candidates[0] if candidates else None


class State(StrEnum):
    IDLE = "idle"
    SETUP = "setup"
    WAITING_FOR_CARD = "waiting_for_card"
    PIN_ENTRY = "pin_entry"
    AUTHORISING = "authorising"
    APPROVED = "approved"
    DECLINED = "declined"
    ABORTED = "aborted"


FINAL_STATES = (State.APPROVED, State.DECLINED, State.ABORTED)


@dataclass(frozen=True)
class Timeouts:
    """Seconds the terminal waits before it gives up or moves on."""

    card_presentation: float = 60.0
    pin_entry: float = 30.0
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
    merchant_receipt: list[str] = field(default_factory=list)
    #: none, cdcvm (the phone verified its holder), offline_pin or online_pin
    cvm: Cvm = "none"
    #: the issuer asked for strong authentication: only chip and PIN may finish this payment
    sca_required: bool = False
    card: VirtualCard | None = field(default=None, repr=False)
    card_read: CardRead | None = field(default=None, repr=False)
    #: a payment, or a card acquisition with no amount ("prise d'empreinte")
    kind: str = "payment"
    #: the brand the cardholder chose on a co-badged card, for every read of this payment
    chosen_brand: str | None = None
    #: a cancellation (app or red key) arrived while the bank was deciding: whatever the bank
    #: answers, the transaction ends aborted (an approval is then reversed by the backend)
    abort_requested: bool = False
    #: the request at the bank, sent again if the phone asks the status while it is
    #: unanswered (its link dropped: the request or its answer may be lost)
    authorisation_request: AuthorisationRequest | None = field(default=None, repr=False)

    @property
    def is_capture(self) -> bool:
        return self.kind == "capture"

    @property
    def card_in_reader(self) -> bool:
        """A chip card is inserted (and must stay until the end)."""
        return self.card is not None and self.entry_mode is EntryMode.CHIP


@dataclass
class SetupProgressState:
    """Percent done of each phase of first-time setup; kept when the link drops."""

    configuration: int = 0
    firmware: int = 0
    pending: MerchantSetup | None = None


def journal_entry(txn: Transaction) -> JournalEntry:
    """What the terminal keeps of a transaction across power cycles (never card data)."""
    return JournalEntry(
        transaction_id=txn.transaction_id,
        kind=txn.kind,
        amount=txn.amount,
        currency=txn.currency,
        reference=txn.reference,
        state=txn.state.value,
        response_code=txn.response_code,
        authorisation_code=txn.authorisation_code,
        brand=txn.brand,
        masked_pan=txn.masked_pan,
        entry_mode=txn.entry_mode.value if txn.entry_mode else None,
        cvm=txn.cvm,
        message=txn.message,
        receipt=tuple(txn.receipt),
        merchant_receipt=tuple(txn.merchant_receipt),
    )


def transaction_from_entry(entry: JournalEntry) -> Transaction:
    return Transaction(
        transaction_id=entry.transaction_id,
        amount=entry.amount,
        currency=entry.currency,
        reference=entry.reference,
        state=State(entry.state),
        response_code=entry.response_code,
        authorisation_code=entry.authorisation_code,
        brand=entry.brand,
        masked_pan=entry.masked_pan,
        entry_mode=EntryMode(entry.entry_mode) if entry.entry_mode else None,
        message=entry.message,
        receipt=list(entry.receipt),
        merchant_receipt=list(entry.merchant_receipt),
        cvm=entry.cvm,  # type: ignore[arg-type]
        kind=entry.kind,
    )


def _lost_with_the_power(txn: Transaction) -> bool:
    """End ``txn`` aborted if it was under way when the power went (its card, its request at
    the bank gone with it); False if it had already ended."""
    if txn.state in FINAL_STATES:
        return False
    txn.state = State.ABORTED
    txn.response_code = None
    txn.message = POWER_LOST
    txn.authorisation_request = None
    txn.card = txn.card_read = None
    return True


class TerminalError(Exception):
    """A physical action the terminal cannot take in its current state (a harness mistake)."""


class TerminalEngine:
    """One terminal: state machine, screen, and journal of transactions."""

    def __init__(
        self,
        profile: TerminalProfile,
        merchant: MerchantSetup | None,
        timeouts: Timeouts | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        firmware: str | None = None,
        *,
        initial_key: bytes | None = None,
        initial_key_id: bytes | None = None,
    ) -> None:
        """``merchant`` is None for a terminal fresh from the factory: it refuses payments
        until its first setup (:class:`SetupRequest`) has completed.

        ``initial_key`` and ``initial_key_id``: the AES DUKPT initial key injected into the
        terminal and its 8-byte ID (see :meth:`load_initial_key`); without them card data
        cannot be sealed and a card read ends declined (``96``)."""
        self.profile = profile
        self.merchant = merchant
        self.firmware = firmware or profile.firmware
        self.setup_progress = SetupProgressState()
        if merchant is not None:
            self.setup_progress.configuration = self.setup_progress.firmware = 100
        self.timeouts = timeouts or Timeouts()
        self.battery = profile.battery
        self.screen = Screen()
        self.state = State.IDLE
        self.current: Transaction | None = None
        self.journal: dict[str, Transaction] = {}
        #: transactions changed since the driver last saved the journal (see
        #: :meth:`drain_journal_changes`)
        self._journal_changes: dict[str, Transaction] = {}
        #: the battery reached 0 %: the driver must power the terminal off
        self.power_off_requested = False
        self._random_bytes = random_bytes
        self._events: list[Event] = []
        self._deadline: float | None = None
        #: the DUKPT key state sealing card data: initial key, its ID, the transaction counter
        self.card_data_keys: Originator | None = None
        if initial_key is not None or initial_key_id is not None:
            if initial_key is None or initial_key_id is None:
                raise ValueError("initial_key and initial_key_id go together")
            self.load_initial_key(initial_key, initial_key_id)
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

    def drain_journal_changes(self) -> list[JournalEntry]:
        """Snapshots of the transactions changed since the last call, for the driver to
        write to durable storage BEFORE it sends the events of :meth:`drain_events` (a result
        never reaches the phone before it is journaled)."""
        changes, self._journal_changes = self._journal_changes, {}
        return [journal_entry(txn) for txn in changes.values()]

    def restore_journal(self, entries: Iterable[JournalEntry]) -> list[JournalEntry]:
        """Power-on: reload the journal kept across the power cycle. A transaction that was
        still under way when the power went is over: it ends aborted (the card is gone, its
        screens too; the phone learns it with a :class:`TransactionStatusRequest`). Returns
        the entries changed that way, to write back."""
        changed = []
        for entry in entries:
            txn = transaction_from_entry(entry)
            if _lost_with_the_power(txn):
                changed.append(journal_entry(txn))
            self.journal[txn.transaction_id] = txn
        return changed

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
                    firmware=self.firmware,
                    battery=self.battery,
                    configured=self.configured,
                    setup_percent=self._setup_percent(),
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
        if isinstance(command, SetupRequest):
            self._on_setup_request(command, now)
            return
        if not self.configured and isinstance(command, PaymentRequest | CardAcquisitionRequest):
            self._refuse(
                command,
                "setup_required",
                "Le terminal n'est pas encore configuré : terminez son association dans le "
                "menu Terminaux de Paiement (TPE).",
            )
            return
        match command:
            case PaymentRequest():
                self._on_payment_request(command, now)
            case CardAcquisitionRequest():
                self._on_card_acquisition(command, now)
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
        message = (
            "Commande déjà reçue : rejouée, elle est ignorée."
            if error.code == "replayed_command"
            else "Message illisible reçu du téléphone : commande ignorée."
        )
        self._emit(Error(code=error.code, message=message, reason=error.reason))

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
        elif self.state is State.PIN_ENTRY and txn is not None:
            self._finish(
                txn, State.ABORTED, now, code=None, message="Délai de saisie du code dépassé"
            )
        elif self.state is State.AUTHORISING and txn is not None:
            # cancelled while the bank decided: the cancellation is the reason, not the bank
            reason = txn.message if txn.abort_requested else "Pas de réponse de la banque"
            self._finish(txn, State.ABORTED, now, code=None, message=reason)
        elif self.state is State.SETUP:
            self._setup_tick(now)
        elif self.state in FINAL_STATES:
            self.state = State.IDLE
            self.current = None
            self._show_idle(now)

    # ---------------------------------------------------------------- physical actions
    def present_card(
        self,
        card: VirtualCard,
        mode: EntryMode,
        now: float,
        calendar: dt.datetime,
        brand: str | None = None,
    ) -> None:
        """The cardholder taps or inserts ``card``; ``brand`` is the cardholder's choice of
        application on a co-badged card (French terminals pick CB by default)."""
        txn = self.current
        if self.state is not State.WAITING_FOR_CARD or txn is None:
            raise TerminalError(
                f"the terminal is not waiting for a card (state {self.state.value})"
            )
        if mode is EntryMode.CHIP and card.profile.wallet:
            raise TerminalError("a phone wallet cannot be inserted in the chip reader; tap it")
        amount = self._header(txn)
        if brand is not None:
            txn.chosen_brand = brand  # kept if the same payment goes on with another read
        application = select_application(card, brand or txn.chosen_brand)
        if application is None:
            self._show(now, amount, "CARTE NON SUPPORTÉE", "AUTRE CARTE SVP")
            return
        if mode is EntryMode.CONTACTLESS:
            needs_chip = (
                txn.sca_required
                or not card.profile.contactless
                or (txn.amount > CONTACTLESS_CEILING and not card.profile.wallet)
            )  # a capture has no amount: no ceiling
            if needs_chip:
                self._show(now, amount, "INSÉREZ VOTRE CARTE")
                return
            read = card.read(mode, self._transaction_data(txn, calendar), application)
            self._take_card(txn, card, read)
            self._authorise(txn, now, cvm="cdcvm" if card.profile.wallet else "none")
            return
        read = card.read(mode, self._transaction_data(txn, calendar), application)
        self._take_card(txn, card, read)
        if card.profile.cvm == "offline_pin" and card.pin_blocked:
            self._finish(txn, State.DECLINED, now, code="75", message=response_message("75"))
            return
        txn.state = self.state = State.PIN_ENTRY
        self._deadline = now + self.timeouts.pin_entry
        self._show(now, amount, "SAISISSEZ VOTRE CODE")

    def enter_pin(self, pin: str, now: float) -> None:
        """The cardholder types the PIN and presses the green key."""
        txn = self.current
        if self.state is not State.PIN_ENTRY or txn is None or txn.card is None:
            raise TerminalError(f"the terminal is not asking for a PIN (state {self.state.value})")
        if not re.fullmatch(r"[0-9]{4,12}", pin):
            raise TerminalError("the PIN pad takes 4 to 12 digits")
        card = txn.card
        if card.profile.cvm == "online_pin":
            self._authorise(txn, now, cvm="online_pin", pin=pin)
            return
        verification = card.verify_pin(pin)
        if verification.ok:
            self._authorise(txn, now, cvm="offline_pin")
        elif verification.blocked:
            self._finish(txn, State.DECLINED, now, code="75", message=response_message("75"))
        else:
            self._deadline = now + self.timeouts.pin_entry
            tries = verification.tries_left
            self._show(now, "CODE FAUX", f"ESSAIS RESTANTS : {tries}", "SAISISSEZ VOTRE CODE")

    def press_red_key(self, now: float) -> None:
        """The cardholder (or merchant) cancels on the terminal: nothing is charged. While
        the bank decides, the cancellation waits for its answer and the transaction then ends
        aborted (an approval is reversed by the backend when the phone reports the result)."""
        txn = self.current
        if txn is None or self.state in FINAL_STATES or self.state is State.IDLE:
            return  # nothing to cancel: the key does nothing, as on a real terminal
        self._cancel(txn, now, CANCELLED_ON_TERMINAL)

    def _cancel(self, txn: Transaction, now: float, message: str) -> None:
        if self.state is State.AUTHORISING:
            if not txn.abort_requested:
                txn.abort_requested = True
                txn.message = message
                self._show(now, self._header(txn), "ANNULATION", "VEUILLEZ PATIENTER")
            return
        self._finish(txn, State.ABORTED, now, code=None, message=message)

    def remove_card(self, now: float) -> None:
        """The cardholder pulls the inserted card out. Before the end, the payment aborts."""
        txn = self.current
        if txn is None or not txn.card_in_reader:
            raise TerminalError("no card is inserted in the terminal")
        if self.state in (State.PIN_ENTRY, State.AUTHORISING):
            self._finish(txn, State.ABORTED, now, code=None, message="Carte retirée")
        txn.card = None

    def _transaction_data(self, txn: Transaction, calendar: dt.datetime) -> TransactionData:
        return TransactionData(
            amount=txn.amount,
            currency_code=CURRENCIES[txn.currency],
            country_code=COUNTRY_FRANCE,
            date=calendar.date(),
            unpredictable_number=self._random_bytes(4).hex().upper(),
        )

    def _take_card(self, txn: Transaction, card: VirtualCard, read: CardRead) -> None:
        txn.card = card
        txn.card_read = read
        txn.brand = read.brand
        txn.masked_pan = mask_pan(read.pan)
        txn.entry_mode = read.entry_mode
        txn.application_label = read.application.label
        txn.aid = read.application.aid

    def load_initial_key(self, initial_key: bytes, initial_key_id: bytes, counter: int = 0) -> None:
        """Key injection: the AES DUKPT initial key sealing card data, its 8-byte initial key
        ID (BDK ID + derivation ID) and the last transaction counter used (0 for a new key)."""
        self.card_data_keys = Originator(initial_key, initial_key_id, counter)

    def _authorise(self, txn: Transaction, now: float, *, cvm: Cvm, pin: str | None = None) -> None:
        """Go online: seal the card data (and an online PIN) and ask the processor."""
        read = txn.card_read
        assert read is not None
        txn.cvm = cvm
        if self.card_data_keys is None:  # no initial key injected: nothing may leave in clear
            self._finish(txn, State.DECLINED, now, code="96", message=NO_CARD_DATA_KEY)
            return
        # AES DUKPT: the next counter's data key, never used before nor again.
        sealed = seal(
            self.card_data_keys,
            SensitiveCardData(
                pan=read.pan,
                expiry=read.expiry,
                pan_sequence=read.pan_sequence,
                pin=pin,
                entry_mode=read.entry_mode.value,
                cvm=cvm,
                brand=read.brand,
            ),
            associated_data(txn.transaction_id, txn.amount, txn.currency),
            self._random_bytes,
        )
        txn.state = self.state = State.AUTHORISING
        self._deadline = now + self.timeouts.authorisation
        step = "VÉRIFICATION" if txn.is_capture else "AUTORISATION"
        self._show(now, self._header(txn), step, "VEUILLEZ PATIENTER")
        emv = dict(read.emv)
        emv["9F34"] = CVM_RESULTS[cvm]
        txn.authorisation_request = AuthorisationRequest(
            transaction_id=txn.transaction_id,
            amount=txn.amount,
            currency=txn.currency,
            entry_mode=read.entry_mode.value,
            brand=read.brand,
            masked_pan=mask_pan(read.pan),
            application_label=read.application.label,
            aid=read.application.aid,
            card_data=sealed,
            emv=emv,
            cvm=cvm,
        )
        self._emit(txn.authorisation_request)

    # ---------------------------------------------------------------- first-time setup
    @property
    def configured(self) -> bool:
        return self.merchant is not None

    def _setup_percent(self) -> int:
        """Overall progress of first setup, 0-100, both phases weighted by their duration."""
        progress, profile = self.setup_progress, self.profile
        total = profile.configuration_seconds + (
            profile.firmware_seconds if profile.firmware_update else 0
        )
        done = progress.configuration * profile.configuration_seconds
        if profile.firmware_update:
            done += progress.firmware * profile.firmware_seconds
        return done // total

    def _on_setup_request(self, cmd: SetupRequest, now: float) -> None:
        if self.configured:  # already done: say so, change nothing
            self._emit(CommandAccepted(in_reply_to=cmd.id))
            self._emit(
                SetupResponse(result="completed", firmware=self.firmware, message=SETUP_DONE)
            )
            return
        if self.state not in (State.IDLE, State.SETUP):
            self._refuse(cmd, "busy", "Terminal occupé : une transaction est déjà en cours.")
            return
        if self.battery < self.profile.min_setup_battery:
            self._refuse(
                cmd,
                "battery_low",
                f"Batterie du terminal trop faible pour sa configuration ({self.battery} %, "
                f"{self.profile.min_setup_battery} % au moins) : branchez-le sur secteur.",
            )
            return
        self.setup_progress.pending = MerchantSetup(
            cmd.merchant_name, cmd.city, cmd.contract_number
        )
        self._emit(CommandAccepted(in_reply_to=cmd.id))
        self.state = State.SETUP
        self._setup_step(now)

    def _setup_phase(self) -> tuple[str, int] | None:
        """The phase under way and its duration, or None when setup is complete."""
        progress = self.setup_progress
        if progress.configuration < 100:
            return "configuration", self.profile.configuration_seconds
        if self.profile.firmware_update and progress.firmware < 100:
            return "firmware", self.profile.firmware_seconds
        return None

    def _setup_step(self, now: float) -> None:
        """Report the progress of the phase under way and schedule its next tenth."""
        phase = self._setup_phase()
        if phase is None:
            self._setup_complete(now)
            return
        name, seconds = phase
        self._report_setup(name, getattr(self.setup_progress, name), now)
        self._deadline = now + seconds / 10

    def _report_setup(self, name: str, percent: int, now: float) -> None:
        lines: tuple[str, ...]
        if name == "configuration":
            message = f"Téléchargement de la configuration : {percent} %"
            lines = ("CONFIGURATION", f"TÉLÉCHARGEMENT {percent} %")
        else:
            message = f"Mise à jour du logiciel {self.profile.firmware_update} : {percent} %"
            lines = ("MISE À JOUR", f"LOGICIEL {percent} %", "NE PAS ÉTEINDRE")
        self._show(now, *lines)
        self._emit(SetupProgress(phase=name, percent=percent, message=message))  # type: ignore[arg-type]

    def _setup_tick(self, now: float) -> None:
        phase = self._setup_phase()
        if phase is not None:
            name, _ = phase
            percent = min(100, getattr(self.setup_progress, name) + 10)
            setattr(self.setup_progress, name, percent)
            if percent == 100:
                self._report_setup(name, percent, now)  # the phase's end, then the next one
        self._setup_step(now)

    def _setup_complete(self, now: float) -> None:
        progress = self.setup_progress
        assert progress.pending is not None
        self.merchant, progress.pending = progress.pending, None
        if self.profile.firmware_update:
            self.firmware = self.profile.firmware_update
        self.state = State.IDLE
        self._deadline = None
        self._emit(SetupResponse(result="completed", firmware=self.firmware, message=SETUP_DONE))
        self._show_idle(now, "TERMINAL CONFIGURÉ")

    def link_lost(self, now: float) -> None:
        """The phone's link dropped. A setup in progress pauses where it is and resumes on the
        next :class:`SetupRequest`; a transaction goes on (its own timeouts end it)."""
        if self.state is State.SETUP:
            self.state = State.IDLE
            self._deadline = None
            self._show(now, "CONFIGURATION", "INTERROMPUE", f"{self._setup_percent()} %")

    def power_cut(self, now: float) -> None:
        """The power goes (empty battery): a transaction under way is over, aborted, its card
        gone; a setup pauses. Nothing is sent (the radio is off): the phone learns the end
        from the journal (:class:`TransactionStatusRequest`) once the terminal is back."""
        txn = self.current
        if txn is not None and _lost_with_the_power(txn):
            self._journal_changes[txn.transaction_id] = txn
        if self.state is State.SETUP:
            self.link_lost(now)
        self.current = None
        self.state = State.IDLE
        self._deadline = None
        self.power_off_requested = False
        self._events.clear()
        self.screen.show(now)  # a dark screen

    def power_on(self, now: float) -> None:
        """Switched on again (after a power cut, in the same process)."""
        self._show_idle(now)

    def factory_reset(self, now: float) -> None:
        """Back to the factory: no configuration, no journal, no card-data key (the next first
        setup injects a new one); the firmware stays installed."""
        self.merchant = None
        self.card_data_keys = None
        self.setup_progress = SetupProgressState()
        self.journal.clear()
        self._journal_changes.clear()
        self.current = None
        self.state = State.IDLE
        self._deadline = None
        self._show_idle(now)

    def show_bonds_full(self, now: float) -> None:
        """A new phone tried to pair while every bond slot is taken."""
        self._show(now, "APPAIRAGE REFUSÉ", "TROP DE TÉLÉPHONES", "RÉINITIALISEZ")

    def show_pairing_code(self, code: str, now: float, *, typed: bool = False) -> None:
        """Pairing: the 6-digit code the user compares with the phone's (numeric comparison)
        or types on the phone (passkey entry, ``typed``)."""
        action = "SAISISSEZ SUR LE TEL" if typed else "CONFIRMEZ SUR LE TEL"
        self._show(now, "APPAIRAGE", f"CODE {code}", action)

    def pairing_ended(self, now: float, success: bool) -> None:
        if self.state is State.IDLE:
            self._show_idle(now, "APPAIRAGE RÉUSSI" if success else "APPAIRAGE ÉCHOUÉ")

    # ---------------------------------------------------------------- command handlers
    def _on_payment_request(self, cmd: PaymentRequest, now: float) -> None:
        if cmd.currency not in CURRENCIES:
            self._refuse(cmd, "unsupported_currency", f"Devise non acceptée : {cmd.currency}.")
            return
        if not 0 < cmd.amount <= MAX_AMOUNT:
            self._refuse(cmd, "invalid_amount", "Montant invalide.")
            return
        txn = Transaction(cmd.transaction_id, cmd.amount, cmd.currency, cmd.reference)
        if not self._start(cmd, txn, now):
            return
        amount = format_amount(cmd.amount, cmd.currency)
        if cmd.amount > CONTACTLESS_CEILING:
            self._show(now, amount, "INSÉREZ LA CARTE")
        else:
            self._show(now, amount, "PRÉSENTEZ OU", "INSÉREZ LA CARTE")

    def _on_card_acquisition(self, cmd: CardAcquisitionRequest, now: float) -> None:
        """Read a card with no amount, to save it on the customer record (nexo CardAcquisition)."""
        txn = Transaction(cmd.transaction_id, 0, "EUR", cmd.reference, kind="capture")
        if self._start(cmd, txn, now):
            self._show(now, CAPTURE_HEADER, "PRÉSENTEZ OU", "INSÉREZ LA CARTE")

    def _start(
        self, cmd: PaymentRequest | CardAcquisitionRequest, txn: Transaction, now: float
    ) -> bool:
        """Checks common to every transaction; on success the terminal waits for the card."""
        if self.state not in (State.IDLE, *FINAL_STATES):  # a result on screen may be replaced
            self._refuse(cmd, "busy", "Terminal occupé : une transaction est déjà en cours.")
            return False
        if not cmd.transaction_id.strip() or len(cmd.transaction_id) > MAX_ID_LENGTH:
            self._refuse(cmd, "invalid_transaction_id", "Identifiant de transaction invalide.")
            return False
        if len(cmd.reference) > MAX_ID_LENGTH:
            self._refuse(cmd, "invalid_reference", "Référence trop longue.")
            return False
        if cmd.transaction_id in self.journal:
            self._refuse(cmd, "duplicate_transaction", "Transaction déjà connue du terminal.")
            return False
        if self.battery < self.profile.min_transaction_battery:
            self._show(now, "BATTERIE FAIBLE", f"{self.battery} %", "RECHARGEZ LE TPE")
            self._refuse(
                cmd,
                "battery_low",
                f"Batterie du terminal trop faible ({self.battery} %, "
                f"{self.profile.min_transaction_battery} % au moins) : rechargez-le avant "
                "d'encaisser.",
            )
            return False
        self.journal[txn.transaction_id] = txn
        self.current = txn
        self.state = State.WAITING_FOR_CARD
        self._deadline = now + self.timeouts.card_presentation
        self._emit(CommandAccepted(in_reply_to=cmd.id, transaction_id=txn.transaction_id))
        return True

    def _header(self, txn: Transaction) -> str:
        """The first line of a transaction's screens: its amount, or what a capture is."""
        return CAPTURE_HEADER if txn.is_capture else format_amount(txn.amount, txn.currency)

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
        if txn.abort_requested:
            # Cancelled while the bank decided: aborted whatever it said. An approval is
            # not lost silently: the phone reports "aborted" and the backend reverses it.
            if code == "00":
                reason = f"{txn.message} : {APPROVAL_CANCELLED}"
                screen = ("TRANSACTION ANNULÉE", "ACCORD ANNULÉ", "RIEN N'EST DÉBITÉ")
                self._finish(txn, State.ABORTED, now, code=None, message=reason, screen=screen)
            else:
                self._finish(txn, State.ABORTED, now, code=None, message=txn.message)
            return
        contactless_without_pin = txn.entry_mode is EntryMode.CONTACTLESS and txn.cvm == "none"
        if txn.is_capture:
            # Zero-amount account verification: 85 ("no reason to decline") saves the card.
            verified = code in VERIFICATION_APPROVALS
            state = State.APPROVED if verified else State.DECLINED
            self._finish(txn, state, now, code=code, message=message)
        elif code in SCA_SOFT_DECLINES and not contactless_without_pin:
            # Strong authentication asked although the PIN was typed: nothing more to offer.
            self._finish(txn, State.DECLINED, now, code=code, message=SCA_FAILED)
        elif code in SCA_SOFT_DECLINES:
            # PSD2: the issuer wants the PIN. The same transaction goes on with chip and PIN.
            txn.sca_required = True
            txn.card = txn.card_read = None
            txn.state = self.state = State.WAITING_FOR_CARD
            self._deadline = now + self.timeouts.card_presentation
            self._show(now, self._header(txn), "CODE REQUIS", "INSÉREZ VOTRE CARTE")
        elif code == "00" and not AUTHORISATION_CODE.fullmatch(cmd.authorisation_code or ""):
            # An approval without a proper authorisation number cannot be printed or disputed.
            self._finish(txn, State.DECLINED, now, code="96", message=response_message("96"))
        elif (
            code == "00"
            and txn.card_in_reader
            and txn.card
            and not txn.card.complete(True, arpc=cmd.arpc)
        ):
            # The chip's second GENERATE AC says AAC: declined although the issuer approved
            # (the card's own choice, or an ARPC that does not authenticate the approval);
            # the backend reverses the authorisation when the phone reports this result.
            txn.authorisation_code = cmd.authorisation_code
            self._finish(
                txn, State.DECLINED, now, code="00", message="Paiement refusé par la carte"
            )
        elif code == "00":
            txn.authorisation_code = cmd.authorisation_code
            txn.receipt = self._receipt(txn, calendar, "TICKET CLIENT")
            txn.merchant_receipt = self._receipt(txn, calendar, "TICKET COMMERCANT")
            self._finish(txn, State.APPROVED, now, code=code, message=message)
        else:
            self._finish(txn, State.DECLINED, now, code=code, message=message)

    def _on_abort(self, cmd: AbortRequest, now: float) -> None:
        txn = self.current
        if txn is None or txn.transaction_id != cmd.transaction_id or self.state in FINAL_STATES:
            self._refuse(cmd, "nothing_to_abort", "Aucune transaction en cours à annuler.")
            return
        self._emit(CommandAccepted(in_reply_to=cmd.id, transaction_id=txn.transaction_id))
        self._cancel(txn, now, CANCELLED_FROM_APP)

    def _on_status_request(self, cmd: TransactionStatusRequest) -> None:
        txn = self.journal.get(cmd.transaction_id)
        if txn is None:
            self._emit(
                TransactionStatusResponse(
                    in_reply_to=cmd.id, transaction_id=cmd.transaction_id, state="unknown"
                )
            )
            return
        final = txn.state in FINAL_STATES
        pending = txn.authorisation_request if self.state is State.AUTHORISING else None
        self._emit(
            TransactionStatusResponse(
                in_reply_to=cmd.id,
                transaction_id=cmd.transaction_id,
                state=txn.state.value,
                result=txn.state.value if final else None,
                response_code=txn.response_code,
                authorisation_code=txn.authorisation_code,
                kind=txn.kind,
                amount=txn.amount,
                currency=txn.currency,
                brand=txn.brand,
                masked_pan=txn.masked_pan,
                entry_mode=txn.entry_mode.value if txn.entry_mode else None,
                message=txn.message if final else "",
                receipt=list(txn.receipt),
                merchant_receipt=list(txn.merchant_receipt),
                cardholder_verification=txn.cvm,
            )
        )
        if txn is self.current and pending is not None and not txn.abort_requested:
            # the same request again (same sealed data, same cryptogram): a phone whose link
            # dropped relays it, or answers it with the answer it already has
            self._emit(dataclasses.replace(pending, id=0))

    # ---------------------------------------------------------------- helpers
    def _finish(
        self,
        txn: Transaction,
        state: State,
        now: float,
        *,
        code: str | None,
        message: str,
        screen: tuple[str, ...] | None = None,
    ) -> None:
        txn.state = self.state = state
        txn.response_code = code
        txn.message = message
        txn.authorisation_request = None
        if txn.card_read is not None:  # the card was read: the radio and the reader ran
            self.set_battery(max(0, self.battery - self.profile.battery_per_transaction))
        if screen is not None:
            self._show(now, *screen)
        elif state is State.APPROVED:
            done = "CARTE ENREGISTRÉE" if txn.is_capture else "PAIEMENT ACCEPTÉ"
            self._show(now, self._header(txn), done)
        else:
            refused = "CARTE REFUSÉE" if txn.is_capture else "PAIEMENT REFUSÉ"
            heading = refused if state is State.DECLINED else "TRANSACTION ANNULÉE"
            reason = textwrap.wrap(message.upper(), SCREEN_WIDTH)[:3]
            self._show(now, heading, *(reason if reason != [heading] else []))
        self._deadline = now + self.timeouts.result_display
        result = {State.APPROVED: "approved", State.DECLINED: "declined"}.get(state, "aborted")
        if txn.is_capture:
            self._emit(
                CardAcquisitionResponse(
                    transaction_id=txn.transaction_id,
                    result=result,  # type: ignore[arg-type]
                    response_code=code,
                    brand=txn.brand,
                    masked_pan=txn.masked_pan,
                    entry_mode=txn.entry_mode.value if txn.entry_mode else None,
                    message=message,
                )
            )
            return
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
                merchant_receipt=list(txn.merchant_receipt),
                cardholder_verification=txn.cvm,
            )
        )

    def _receipt(self, txn: Transaction, calendar: dt.datetime, copy: str) -> list[str]:
        """A CB receipt ("ticket CB"). Never the expiry date, never the full PAN."""
        assert txn.entry_mode is not None
        assert txn.masked_pan is not None
        assert self.merchant is not None  # payments need a configured terminal
        lines = [
            self.merchant.name.upper()[:RECEIPT_WIDTH],
            self.merchant.city.upper()[:RECEIPT_WIDTH],
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
        ]
        if txn.cvm in CVM_RECEIPT_LINES:
            lines.append(CVM_RECEIPT_LINES[txn.cvm])
        lines += [f"AUTORISATION {txn.authorisation_code}", copy, "A CONSERVER"]
        return lines

    def _refuse(self, cmd: Command, code: str, message: str) -> None:
        self._emit(Error(in_reply_to=cmd.id, code=code, message=message))

    def _show_idle(self, now: float, *extra: str) -> None:
        if self.merchant is None and not extra:
            extra = ("À CONFIGURER",)
        self._show(now, "BIENVENUE", self.profile.name, *extra)

    def _show(self, now: float, *lines: str) -> None:
        if self.screen.show(now, *lines):
            self._emit(DisplayUpdate(lines=list(self.screen.lines)))

    def _emit(self, event: Event) -> None:
        self._events.append(event)
        if self.current is not None:  # every change of a transaction emits something
            self._journal_changes[self.current.transaction_id] = self.current

    def set_battery(self, level: int) -> None:
        """The battery's charge in percent; at 0 the terminal must power off
        (:attr:`power_off_requested`): a transaction under way ends with the power."""
        if type(level) is not int or not 0 <= level <= 100:
            raise ValueError(f"battery level {level!r} is not a whole number from 0 to 100")
        self.battery = level
        self.power_off_requested = level == 0


__all__ = [
    "CONTACTLESS_CEILING",
    "MerchantSetup",
    "State",
    "TerminalEngine",
    "TerminalError",
    "Timeouts",
    "Transaction",
]
