"""The terminal engine, driven directly (sans-IO, h11 style): commands and card actions in,
events and screens out, time passed in as numbers."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from simulator.cards import (
    CardCryptography,
    CardProfile,
    Catalogue,
    EntryMode,
    IssuerMasterKeys,
    VirtualCard,
)
from simulator.protocol import FramingError, PhoneEndpoint, TerminalEndpoint, UnknownMessageType
from simulator.protocol.carddata import CardDataError, associated_data, ksn_of, open_sealed
from simulator.protocol.dukpt import derive_initial_key, split_ksn
from simulator.protocol.framing import fragment
from simulator.protocol.messages import (
    AbortRequest,
    AuthorisationRequest,
    AuthorisationResponse,
    CardAcquisitionRequest,
    CardAcquisitionResponse,
    Command,
    CommandAccepted,
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
    encode,
)
from simulator.terminal import (
    CONTACTLESS_CEILING,
    MerchantSetup,
    State,
    TerminalEngine,
    TerminalError,
    TerminalProfile,
    Timeouts,
    load_profiles,
)
from simulator.terminal.engine import MAX_AMOUNT

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
PROFILE = load_profiles(FIXTURES / "terminals.yaml")["standard"]
CARDS = Catalogue.load(FIXTURES / "cards.yaml")
MERCHANT = MerchantSetup(name="Plomberie Durand", city="Lyon", contract_number="1234567")
TIMEOUTS = Timeouts(card_presentation=45.0, authorisation=20.0, result_display=2.5)
CALENDAR = dt.datetime(2026, 12, 3, 9, 30, 15)
T0 = 1000.0
TXN = "T-0001"
WELCOME = ("BIENVENUE", PROFILE.name)
#: The test keys of fixtures/keys.yaml, read here without the harness: the processor's BDKs,
#: this terminal's initial key ID, and the issuers' master keys the cards are made with.
_KEYS = yaml.safe_load((FIXTURES / "keys.yaml").read_text(encoding="utf-8"))
BDKS = {bytes.fromhex(i): bytes.fromhex(k) for i, k in _KEYS["dukpt"]["bdks"].items()}
IKID = bytes.fromhex(_KEYS["dukpt"]["terminals"][PROFILE.serial])
INITIAL_KEY = derive_initial_key(BDKS[IKID[:4]], IKID)
ISSUER_KEYS = {
    brand: IssuerMasterKeys(**{part: bytes.fromhex(v) for part, v in keys.items()})
    for brand, keys in _KEYS["issuer_master_keys"].items()
}

E = TypeVar("E", bound=Event)


class CountingRandom:
    """A deterministic random source: every byte it hands out is the next counter value."""

    def __init__(self) -> None:
        self.counter = 0
        self.calls: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        out = bytes((self.counter + i) % 256 for i in range(n))
        self.counter += n
        self.calls.append(out)
        return out


class Rig:
    """One engine and the card in the customer's hand."""

    def __init__(self, profile: TerminalProfile = PROFILE) -> None:
        self.random = CountingRandom()
        self.engine = TerminalEngine(
            profile,
            MERCHANT,
            TIMEOUTS,
            random_bytes=self.random,
            initial_key=INITIAL_KEY,
            initial_key_id=IKID,
        )
        self.engine.drain_events()  # the welcome screen shown at power-on
        self.next_id = 1

    def command(self, command: Command, now: float, *, secure: bool = True) -> list[Event]:
        self.engine.handle_command(command, now, CALENDAR, secure=secure)
        return self.engine.drain_events()

    def pay(
        self, amount: int = 4250, txn: str = TXN, now: float = T0, currency: str = "EUR"
    ) -> list[Event]:
        request = PaymentRequest(
            id=self.take_id(), transaction_id=txn, amount=amount, currency=currency, reference="F1"
        )
        return self.command(request, now)

    def tap(self, card: VirtualCard, now: float) -> list[Event]:
        self.engine.present_card(card, EntryMode.CONTACTLESS, now, CALENDAR)
        return self.engine.drain_events()

    def answer(
        self,
        code: str,
        now: float,
        auth_code: str | None = None,
        txn: str = TXN,
        message: str = "",
        arpc: str | None = "issuer",
    ) -> list[Event]:
        """The processor's answer. ``arpc``: "issuer" (default) for the tag 91 the card's
        issuer computes for the ARQC of the transaction in progress, else the value sent."""
        response = AuthorisationResponse(
            id=self.take_id(),
            transaction_id=txn,
            response_code=code,
            authorisation_code=auth_code,
            message=message,
            arpc=self.issuer_arpc(code) if arpc == "issuer" else arpc,
        )
        return self.command(response, now)

    def issuer_arpc(self, code: str) -> str | None:
        """What the issuer answers the card of the current transaction (tag 91), if any."""
        txn = self.engine.current
        if txn is None or txn.card is None or txn.card_read is None:
            return None
        profile = txn.card.profile
        issuer = CardCryptography(profile.brand, ISSUER_KEYS[profile.brand], profile.pan)
        emv = txn.card_read.emv
        return issuer.issuer_authentication_data(emv["9F26"], emv["9F36"], code)

    def state(self) -> State:
        """The engine's state, read through a call so that mypy does not narrow it."""
        return self.engine.state

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def only(events: list[Event], kind: type[E]) -> E:
    matching = [event for event in events if isinstance(event, kind)]
    assert len(matching) == 1, events
    return matching[0]


def card(key: str = "visa") -> VirtualCard:
    """The catalogue card ``key``, personalised with its issuer's keys."""
    return VirtualCard(CARDS[key], ISSUER_KEYS[CARDS[key].brand])


@pytest.fixture
def rig() -> Rig:
    return Rig()


# ------------------------------------------------------------------------------ power-on
def test_power_on_shows_the_welcome_screen_and_waits_for_nothing() -> None:
    engine = TerminalEngine(PROFILE, MERCHANT, TIMEOUTS)
    assert engine.state is State.IDLE
    assert engine.screen.lines == WELCOME
    assert engine.drain_events() == [DisplayUpdate(lines=list(WELCOME))]
    assert engine.drain_events() == []
    assert engine.next_deadline is None
    assert engine.battery == PROFILE.battery


# ------------------------------------------------------------------------------ happy path
def test_payment_request_is_accepted_and_asks_for_the_card(rig: Rig) -> None:
    events = rig.pay(4250)
    assert events == [
        CommandAccepted(in_reply_to=1, transaction_id=TXN),
        DisplayUpdate(lines=["42,50 EUR", "PRÉSENTEZ OU", "INSÉREZ LA CARTE"]),
    ]
    assert rig.state() is State.WAITING_FOR_CARD
    assert rig.engine.next_deadline == T0 + TIMEOUTS.card_presentation
    assert rig.engine.journal[TXN].state is State.WAITING_FOR_CARD


def test_tap_sends_an_authorisation_request_with_sealed_card_data(rig: Rig) -> None:
    visa = card("visa")
    pan = visa.profile.pan
    rig.pay(4250)
    events = rig.tap(visa, T0 + 5)
    request = only(events, AuthorisationRequest)
    assert request.transaction_id == TXN
    assert (request.amount, request.currency) == (4250, "EUR")
    assert request.entry_mode == "contactless"
    assert request.brand == "VISA"
    assert request.masked_pan == "*" * (len(pan) - 4) + pan[-4:]
    assert request.aid == visa.profile.applications[0].aid
    assert request.application_label == visa.profile.applications[0].label
    # The EMV data of this transaction.
    assert request.emv["9F02"] == "000000004250"
    assert request.emv["5F2A"] == "0978"
    assert request.emv["9F1A"] == "0250"
    assert request.emv["9A"] == "261203"
    assert request.emv["9F37"] == rig.random.calls[0].hex().upper()
    assert len(request.emv["9F37"]) == 8
    assert request.emv["9F36"] == f"{CARDS['visa'].atc + 1:04X}"
    # The card data opens for the processor, bound to this transaction.
    aad = associated_data(TXN, 4250, "EUR")
    sealed = open_sealed(BDKS, request.card_data, aad)
    assert (sealed.pan, sealed.expiry) == (pan, visa.profile.expiry)
    assert request.card_data["scheme"] == "AES-DUKPT-1"
    assert split_ksn(ksn_of(request.card_data)) == (IKID, 1)  # the terminal's first counter
    with pytest.raises(CardDataError):
        open_sealed(BDKS, request.card_data, associated_data(TXN, 425, "EUR"))
    # The card's cryptogram, which its issuer checks.
    issuer = CardCryptography("VISA", ISSUER_KEYS["VISA"], pan)
    assert issuer.verify_arqc(request.emv)
    assert request.emv["9F10"] == issuer.issuer_application_data
    # Nothing the phone sees holds the PAN in clear.
    assert pan not in encode(request).decode()
    assert pan not in json.dumps([encode(e).decode() for e in events])
    # Screen and timer.
    assert DisplayUpdate(lines=["42,50 EUR", "AUTORISATION", "VEUILLEZ PATIENTER"]) in events
    assert rig.state() is State.AUTHORISING
    assert rig.engine.next_deadline == T0 + 5 + TIMEOUTS.authorisation


def test_the_unpredictable_number_and_nonce_are_fresh_per_transaction(rig: Rig) -> None:
    visa = card("visa")
    rig.pay(100, txn="A")
    first = only(rig.tap(visa, T0 + 1), AuthorisationRequest)
    rig.answer("00", T0 + 2, "X1", txn="A")
    rig.engine.on_timer(T0 + 2 + TIMEOUTS.result_display)
    rig.pay(100, txn="B", now=T0 + 10)
    second = only(rig.tap(visa, T0 + 11), AuthorisationRequest)
    assert first.emv["9F37"] != second.emv["9F37"]
    assert first.card_data["nonce"] != second.card_data["nonce"]
    assert int(second.emv["9F36"], 16) == int(first.emv["9F36"], 16) + 1


def approve(rig: Rig, amount: int = 4250, auth_code: str = "A1B2C3") -> list[Event]:
    rig.pay(amount)
    rig.tap(card("visa"), T0 + 5)
    return rig.answer("00", T0 + 7, auth_code)


def test_approval_gives_a_receipt_without_pan_or_expiry(rig: Rig) -> None:
    events = approve(rig)
    assert events[0] == CommandAccepted(in_reply_to=2, transaction_id=TXN)
    response = only(events, PaymentResponse)
    assert response.result == "approved"
    assert response.transaction_id == TXN
    assert (response.amount, response.currency) == (4250, "EUR")
    assert (response.response_code, response.authorisation_code) == ("00", "A1B2C3")
    assert response.message == "Paiement accepté"
    assert response.brand == "VISA"
    assert response.entry_mode == "contactless"
    receipt = response.receipt
    visa = CARDS["visa"]
    masked = "*" * (len(visa.pan) - 4) + visa.pan[-4:]
    assert "PLOMBERIE DURAND" in receipt
    assert "LYON" in receipt
    assert masked in receipt
    assert response.masked_pan == masked
    assert "SANS CONTACT" in receipt
    assert any("42,50 EUR" in line for line in receipt)
    assert any("A1B2C3" in line for line in receipt)
    assert any("03/12/26" in line and "09:30:15" in line for line in receipt)
    assert any(MERCHANT.contract_number in line for line in receipt)
    assert any(TXN in line for line in receipt)
    text = "\n".join(receipt)
    assert visa.pan not in text
    assert visa.pan[:6] not in text
    expiry_forms = (
        visa.expiry,  # YYMM
        f"{visa.expiry_month:02d}/{visa.expiry_year % 100:02d}",
        f"{visa.expiry_month:02d}/{visa.expiry_year}",
        f"{visa.expiry_year}-{visa.expiry_month:02d}",
    )
    assert not any(form in text for form in expiry_forms)
    assert visa.pan not in encode(response).decode()
    assert DisplayUpdate(lines=["42,50 EUR", "PAIEMENT ACCEPTÉ"]) in events
    assert rig.state() is State.APPROVED
    assert rig.engine.next_deadline == T0 + 7 + TIMEOUTS.result_display


def test_result_is_shown_then_the_terminal_returns_to_idle(rig: Rig) -> None:
    approve(rig)
    deadline = T0 + 7 + TIMEOUTS.result_display
    rig.engine.on_timer(deadline - 0.01)
    assert rig.state() is State.APPROVED
    assert rig.engine.drain_events() == []
    rig.engine.on_timer(deadline)
    assert rig.state() is State.IDLE
    assert rig.engine.screen.lines == WELCOME
    assert rig.engine.drain_events() == [DisplayUpdate(lines=list(WELCOME))]
    assert rig.engine.next_deadline is None
    assert rig.engine.current is None
    assert rig.engine.journal[TXN].state is State.APPROVED


def test_late_timer_call_still_fires(rig: Rig) -> None:
    rig.pay()
    rig.engine.on_timer(T0 + TIMEOUTS.card_presentation + 100)
    assert rig.state() is State.ABORTED


# ------------------------------------------------------------------------------ declines
def test_decline_05_gives_the_french_message(rig: Rig) -> None:
    rig.pay()
    rig.tap(card("visa_refusee"), T0 + 5)
    events = rig.answer("05", T0 + 6)
    assert events[0] == CommandAccepted(in_reply_to=2, transaction_id=TXN)
    response = only(events, PaymentResponse)
    assert response.result == "declined"
    assert response.response_code == "05"
    assert response.message == "Paiement refusé par la banque"
    assert response.authorisation_code is None
    assert response.receipt == []
    assert rig.engine.screen.lines[0] == "PAIEMENT REFUSÉ"
    assert rig.state() is State.DECLINED
    assert rig.engine.next_deadline == T0 + 6 + TIMEOUTS.result_display


def test_decline_passes_on_the_processors_message(rig: Rig) -> None:
    rig.pay()
    rig.tap(card("visa"), T0 + 5)
    response = only(rig.answer("51", T0 + 6, message="Solde insuffisant"), PaymentResponse)
    assert response.message == "Solde insuffisant"


def test_unknown_response_code_still_declines_with_its_code(rig: Rig) -> None:
    rig.pay()
    rig.tap(card("visa"), T0 + 5)
    response = only(rig.answer("Q7", T0 + 6), PaymentResponse)
    assert response.result == "declined"
    assert "Q7" in response.message


def test_00_without_authorisation_code_is_not_reported_as_accepted(rig: Rig) -> None:
    rig.pay()
    rig.tap(card("visa"), T0 + 5)
    response = only(rig.answer("00", T0 + 6, auth_code=None), PaymentResponse)
    assert response.result == "declined"
    assert response.message != "Paiement accepté"
    assert response.authorisation_code is None
    assert response.receipt == []
    assert "PAIEMENT ACCEPTÉ" not in rig.engine.screen.lines
    assert rig.state() is State.DECLINED


# ------------------------------------------------------------------------------ security
def test_insecure_link_refuses_a_payment(rig: Rig) -> None:
    request = PaymentRequest(id=7, transaction_id=TXN, amount=4250, currency="EUR", reference="")
    events = rig.command(request, T0, secure=False)
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, Error)
    assert error.code == "insecure_link"
    assert error.in_reply_to == 7
    assert "liaison non sécurisée" in error.message
    assert rig.state() is State.IDLE
    assert rig.engine.journal == {}
    assert rig.engine.next_deadline is None
    assert rig.engine.screen.lines == WELCOME


@pytest.mark.parametrize(
    "command",
    [
        AbortRequest(id=3, transaction_id=TXN),
        TransactionStatusRequest(id=3, transaction_id=TXN),
        AuthorisationResponse(id=3, transaction_id=TXN, response_code="00", authorisation_code="X"),
    ],
    ids=lambda c: type(c).__name__,
)
def test_insecure_link_refuses_every_transaction_command(rig: Rig, command: Command) -> None:
    rig.pay()
    rig.tap(card("visa"), T0 + 1)
    events = rig.command(command, T0 + 2, secure=False)
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(Error, "insecure_link")]
    assert rig.state() is State.AUTHORISING


def test_diagnosis_is_answered_on_an_insecure_link(rig: Rig) -> None:
    events = rig.command(DiagnosisRequest(id=4), T0, secure=False)
    assert events == [
        DiagnosisResponse(
            in_reply_to=4,
            state="idle",
            serial=PROFILE.serial,
            model=PROFILE.model,
            firmware=PROFILE.firmware,
            battery=PROFILE.battery,
        )
    ]


def test_diagnosis_reports_the_current_state_and_battery(rig: Rig) -> None:
    rig.pay()
    rig.engine.set_battery(12)
    response = only(rig.command(DiagnosisRequest(id=9), T0 + 1), DiagnosisResponse)
    assert (response.state, response.battery) == ("waiting_for_card", 12)
    with pytest.raises(ValueError, match="101"):
        rig.engine.set_battery(101)


# ------------------------------------------------------------------------------ refusals
def refusal(events: list[Event]) -> Error:
    assert len(events) == 1, events
    error = events[0]
    assert isinstance(error, Error)
    return error


def test_second_payment_while_waiting_is_busy(rig: Rig) -> None:
    rig.pay(txn="A")
    error = refusal(rig.pay(txn="B", now=T0 + 1))
    assert (error.code, error.in_reply_to) == ("busy", 2)
    assert error.message
    assert rig.engine.current is not None
    assert rig.engine.current.transaction_id == "A"
    assert "B" not in rig.engine.journal
    assert rig.engine.next_deadline == T0 + TIMEOUTS.card_presentation


def test_a_new_payment_may_replace_the_result_on_screen(rig: Rig) -> None:
    approve(rig)
    events = rig.pay(txn="B", now=T0 + 8)
    assert isinstance(events[0], CommandAccepted)
    assert rig.engine.state is State.WAITING_FOR_CARD
    assert rig.engine.journal[TXN].state is State.APPROVED  # the first stays in the journal
    assert rig.engine.next_deadline == T0 + 8 + TIMEOUTS.card_presentation


def test_payment_while_authorising_is_busy(rig: Rig) -> None:
    rig.pay()
    rig.tap(card("visa"), T0 + 5)
    assert refusal(rig.pay(txn="B", now=T0 + 6)).code == "busy"


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        (0, "EUR", "invalid_amount"),
        (-4250, "EUR", "invalid_amount"),
        (MAX_AMOUNT + 1, "EUR", "invalid_amount"),
        (4250, "USD", "unsupported_currency"),
        (4250, "eur", "unsupported_currency"),
    ],
)
def test_bad_payment_requests_are_refused(rig: Rig, amount: int, currency: str, code: str) -> None:
    error = refusal(rig.pay(amount=amount, currency=currency))
    assert (error.code, error.in_reply_to) == (code, 1)
    assert error.message
    assert rig.state() is State.IDLE
    assert rig.engine.journal == {}
    assert rig.engine.next_deadline is None


def test_largest_amount_is_accepted(rig: Rig) -> None:
    assert isinstance(rig.pay(amount=MAX_AMOUNT)[0], CommandAccepted)


def test_duplicate_transaction_id_is_refused(rig: Rig) -> None:
    approve(rig)
    rig.engine.on_timer(T0 + 100)
    assert rig.state() is State.IDLE
    rig.engine.drain_events()
    error = refusal(rig.pay(txn=TXN, now=T0 + 200))
    assert error.code == "duplicate_transaction"
    assert rig.state() is State.IDLE
    assert rig.engine.journal[TXN].state is State.APPROVED


def test_empty_transaction_id_is_refused(rig: Rig) -> None:
    refusal(rig.pay(txn=""))
    assert rig.engine.journal == {}


def test_authorisation_response_for_another_transaction_is_refused(rig: Rig) -> None:
    rig.pay()
    rig.tap(card("visa"), T0 + 1)
    error = refusal(rig.answer("00", T0 + 2, "X", txn="T-9999"))
    assert error.code == "unexpected_authorisation"
    assert rig.state() is State.AUTHORISING


def test_authorisation_response_while_idle_is_refused(rig: Rig) -> None:
    assert refusal(rig.answer("00", T0, "X")).code == "unexpected_authorisation"


# ------------------------------------------------------------------------------ timeouts, abort
def test_card_presentation_timeout_aborts(rig: Rig) -> None:
    rig.pay()
    deadline = T0 + TIMEOUTS.card_presentation
    assert rig.engine.next_deadline == deadline
    rig.engine.on_timer(deadline - 0.5)
    assert rig.engine.drain_events() == []
    assert rig.state() is State.WAITING_FOR_CARD
    rig.engine.on_timer(deadline)
    response = only(rig.engine.drain_events(), PaymentResponse)
    assert response.result == "aborted"
    assert response.response_code is None
    assert response.message == "Délai de présentation de la carte dépassé"
    assert rig.engine.screen.lines[0] == "TRANSACTION ANNULÉE"
    assert rig.state() is State.ABORTED
    assert rig.engine.next_deadline == deadline + TIMEOUTS.result_display
    rig.engine.on_timer(deadline + TIMEOUTS.result_display)
    assert rig.state() is State.IDLE
    assert rig.engine.screen.lines == WELCOME


def test_authorisation_timeout_aborts_and_a_late_answer_is_refused(rig: Rig) -> None:
    rig.pay()
    rig.tap(card("visa"), T0 + 5)
    deadline = T0 + 5 + TIMEOUTS.authorisation
    rig.engine.on_timer(deadline - 0.5)
    assert rig.state() is State.AUTHORISING
    rig.engine.on_timer(deadline)
    response = only(rig.engine.drain_events(), PaymentResponse)
    assert response.result == "aborted"
    assert response.message == "Pas de réponse de la banque"
    assert response.masked_pan is not None
    assert refusal(rig.answer("00", deadline + 1, "X")).code == "unexpected_authorisation"


def test_abort_while_waiting_for_the_card(rig: Rig) -> None:
    rig.pay()
    events = rig.command(AbortRequest(id=5, transaction_id=TXN), T0 + 3)
    assert events[0] == CommandAccepted(in_reply_to=5, transaction_id=TXN)
    response = only(events, PaymentResponse)
    assert response.result == "aborted"
    assert response.message == "Transaction annulée"
    assert rig.state() is State.ABORTED
    assert rig.engine.next_deadline == T0 + 3 + TIMEOUTS.result_display
    with pytest.raises(TerminalError):
        rig.tap(card("visa"), T0 + 4)


def test_abort_when_idle_is_refused(rig: Rig) -> None:
    error = refusal(rig.command(AbortRequest(id=5, transaction_id=TXN), T0))
    assert (error.code, error.in_reply_to) == ("nothing_to_abort", 5)


def test_abort_of_another_transaction_is_refused(rig: Rig) -> None:
    rig.pay()
    assert refusal(rig.command(AbortRequest(id=5, transaction_id="X"), T0 + 1)).code == (
        "nothing_to_abort"
    )
    assert rig.state() is State.WAITING_FOR_CARD


def test_abort_after_the_result_is_refused(rig: Rig) -> None:
    approve(rig)
    error = refusal(rig.command(AbortRequest(id=9, transaction_id=TXN), T0 + 8))
    assert error.code == "nothing_to_abort"
    assert rig.engine.journal[TXN].state is State.APPROVED


# ------------------------------------------------------------------------------ card actions
def test_tap_above_the_contactless_ceiling_asks_to_insert(rig: Rig) -> None:
    visa = card("visa")
    rig.pay(amount=CONTACTLESS_CEILING + 1)
    events = rig.tap(visa, T0 + 5)
    assert events == [DisplayUpdate(lines=["50,01 EUR", "INSÉREZ VOTRE CARTE"])]
    assert rig.state() is State.WAITING_FOR_CARD
    assert rig.engine.next_deadline == T0 + TIMEOUTS.card_presentation
    assert visa.atc == CARDS["visa"].atc  # the card was not read


def test_tap_at_the_contactless_ceiling_is_read(rig: Rig) -> None:
    assert CONTACTLESS_CEILING == 5000
    rig.pay(amount=CONTACTLESS_CEILING)
    assert only(rig.tap(card("visa"), T0 + 5), AuthorisationRequest).amount == 5000


def test_tap_of_a_contact_only_card_asks_to_insert(rig: Rig) -> None:
    data: dict[str, Any] = {
        "pan": CARDS["visa"].pan,
        "expiry": "2029-12",
        "brand": "VISA",
        "contactless": False,
        "applications": [{"aid": "A0000000031010"}],
    }
    contact_only = VirtualCard(CardProfile.from_dict("contact_only", data))
    rig.pay()
    events = rig.tap(contact_only, T0 + 5)
    assert events == [DisplayUpdate(lines=["42,50 EUR", "INSÉREZ VOTRE CARTE"])]
    assert rig.state() is State.WAITING_FOR_CARD


def test_card_actions_outside_a_payment_are_harness_mistakes(rig: Rig) -> None:
    with pytest.raises(TerminalError, match="not waiting for a card"):
        rig.tap(card("visa"), T0)
    rig.pay()
    with pytest.raises(TerminalError, match="not asking for a PIN"):
        rig.engine.enter_pin("1234", T0 + 1)
    with pytest.raises(TerminalError, match="no card is inserted"):
        rig.engine.remove_card(T0 + 1)


# ------------------------------------------------------------------------------ status
def test_transaction_status_follows_the_transaction(rig: Rig) -> None:
    def status(txn: str, now: float) -> TransactionStatusResponse:
        command = TransactionStatusRequest(id=rig.take_id(), transaction_id=txn)
        response = only(rig.command(command, now), TransactionStatusResponse)
        assert response.in_reply_to == command.id
        assert response.transaction_id == txn
        return response

    unknown = status("nope", T0)
    assert (unknown.state, unknown.result, unknown.response_code) == ("unknown", None, None)
    rig.pay()
    waiting = status(TXN, T0 + 1)
    assert (waiting.state, waiting.result) == ("waiting_for_card", None)
    rig.tap(card("visa"), T0 + 2)
    rig.answer("00", T0 + 3, "A1B2C3")
    rig.engine.on_timer(T0 + 100)
    done = status(TXN, T0 + 101)
    assert (done.state, done.result) == ("approved", "approved")
    assert (done.response_code, done.authorisation_code) == ("00", "A1B2C3")


# ------------------------------------------------------------------------------ protocol errors
@pytest.mark.parametrize(
    "error", [FramingError("fragment 3 out of order"), UnknownMessageType("type 'Refund'")]
)
def test_protocol_error_is_reported_and_the_next_command_is_served(
    rig: Rig, error: FramingError | UnknownMessageType
) -> None:
    rig.engine.handle_protocol_error(error)
    events = rig.engine.drain_events()
    reported = refusal(events)
    assert reported.code == error.code
    assert reported.reason == error.reason
    assert reported.in_reply_to is None
    assert reported.message
    assert rig.state() is State.IDLE
    assert isinstance(rig.pay()[0], CommandAccepted)


# ------------------------------------------------------------------------------ over the wire
class Wire:
    """Phone and terminal endpoints around the engine, joined by a fake link (no I/O)."""

    def __init__(self, rig: Rig, att_mtu: int = 23) -> None:
        self.rig = rig
        self.phone = PhoneEndpoint(att_mtu)
        self.terminal = TerminalEndpoint(att_mtu)

    def phone_writes(self, frames: list[bytes], now: float) -> list[object]:
        """Frames from the phone reach the terminal; what it emits comes back to the phone."""
        for frame in frames:
            for item in self.terminal.receive_frame(frame):
                if isinstance(item, Command):
                    self.rig.engine.handle_command(item, now, CALENDAR, secure=True)
                else:
                    self.rig.engine.handle_protocol_error(item)
        return self.flush()

    def send(self, command: Command, now: float) -> list[object]:
        _, frames = self.phone.send(command)
        return self.phone_writes(frames, now)

    def flush(self) -> list[object]:
        received: list[object] = []
        for event in self.rig.engine.drain_events():
            _, frames = self.terminal.send(event)
            assert all(len(frame) <= self.terminal.att_mtu - 3 for frame in frames)
            for frame in frames:
                received.extend(self.phone.receive_frame(frame))
        return received


def test_contactless_payment_over_the_wire_at_minimum_mtu(rig: Rig) -> None:
    wire = Wire(rig)
    payment = PaymentRequest(transaction_id=TXN, amount=4250, currency="EUR", reference="F1")
    accepted = wire.send(payment, T0)
    assert accepted[0] == CommandAccepted(id=1, in_reply_to=1, transaction_id=TXN)
    rig.engine.present_card(card("visa"), EntryMode.CONTACTLESS, T0 + 5, CALENDAR)
    received = wire.flush()
    request = next(e for e in received if isinstance(e, AuthorisationRequest))
    aad = associated_data(request.transaction_id, request.amount, request.currency)
    assert open_sealed(BDKS, request.card_data, aad).pan == CARDS["visa"].pan
    answer = AuthorisationResponse(
        transaction_id=TXN, response_code="00", authorisation_code="A1B2C3"
    )
    final = wire.send(answer, T0 + 6)
    response = next(e for e in final if isinstance(e, PaymentResponse))
    assert response.result == "approved"
    assert "SANS CONTACT" in response.receipt
    ids = [e.id for e in (*accepted, *received, *final) if isinstance(e, Event)]
    assert ids == list(range(1, len(ids) + 1))


def test_garbage_on_the_wire_then_a_valid_command(rig: Rig) -> None:
    wire = Wire(rig)
    garbage = [b"\x00\x01", *fragment(b"{oops", 40, 23)]
    errors = wire.phone_writes(garbage, T0)
    assert [(type(e), getattr(e, "code", None)) for e in errors] == [
        (Error, "framing_error"),
        (Error, "invalid_message"),
    ]
    payment = PaymentRequest(transaction_id=TXN, amount=4250, currency="EUR", reference="F1")
    accepted = wire.send(payment, T0)
    assert isinstance(accepted[0], CommandAccepted)
    assert rig.state() is State.WAITING_FOR_CARD


# ------------------------------------------------------------------------------ the kernel
def insert(rig: Rig, the_card: VirtualCard, now: float, brand: str | None = None) -> list[Event]:
    rig.engine.present_card(the_card, EntryMode.CHIP, now, CALENDAR, brand)
    return rig.engine.drain_events()


def pin(rig: Rig, digits: str, now: float) -> list[Event]:
    rig.engine.enter_pin(digits, now)
    return rig.engine.drain_events()


def sealed_pin(request: AuthorisationRequest) -> str | None:
    aad = associated_data(request.transaction_id, request.amount, request.currency)
    return open_sealed(BDKS, request.card_data, aad).pin


@pytest.mark.parametrize(
    ("key", "brand", "aid"),
    [
        ("cb_visa", None, "A0000000421010"),  # co-badged: CB by default
        ("cb_visa", "VISA", "A0000000031010"),  # the cardholder chose Visa on the terminal
        ("cb_mastercard", None, "A0000000421010"),
        ("cb_mastercard", "MASTERCARD", "A0000000041010"),
        ("amex", None, "A000000025010801"),
    ],
)
def test_application_selection(rig: Rig, key: str, brand: str | None, aid: str) -> None:
    rig.pay(2000)
    rig.engine.present_card(card(key), EntryMode.CONTACTLESS, T0 + 1, CALENDAR, brand)
    request = only(rig.engine.drain_events(), AuthorisationRequest)
    assert request.aid == aid
    assert request.brand == ("CB" if aid.startswith("A000000042") else CARDS[key].brand)


def test_choosing_a_brand_the_card_does_not_have_is_a_harness_mistake(rig: Rig) -> None:
    rig.pay(2000)
    with pytest.raises(TerminalError, match="no MASTERCARD application"):
        rig.engine.present_card(card("cb_visa"), EntryMode.CONTACTLESS, T0, CALENDAR, "MASTERCARD")


def test_an_unsupported_application_is_refused_and_the_terminal_keeps_waiting(rig: Rig) -> None:
    rig.pay(2000)
    events = rig.tap(card("jcb_non_supportee"), T0 + 1)
    assert events == [DisplayUpdate(lines=["20,00 EUR", "CARTE NON SUPPORTÉE", "AUTRE CARTE SVP"])]
    assert rig.state() is State.WAITING_FOR_CARD
    assert only(rig.tap(card("visa"), T0 + 2), AuthorisationRequest).brand == "VISA"


@pytest.mark.parametrize(
    ("amount", "goes_online"), [(4999, True), (5000, True), (5001, False), (12000, False)]
)
def test_contactless_ceiling(rig: Rig, amount: int, goes_online: bool) -> None:
    rig.pay(amount)
    events = rig.tap(card("visa"), T0 + 1)
    if goes_online:
        assert only(events, AuthorisationRequest).cvm == "none"
    else:
        assert rig.engine.screen.lines[-1] == "INSÉREZ VOTRE CARTE"
        assert rig.state() is State.WAITING_FOR_CARD


def test_a_phone_wallet_pays_above_the_ceiling_with_its_own_verification(rig: Rig) -> None:
    rig.pay(12000)
    request = only(rig.tap(card("wallet"), T0 + 1), AuthorisationRequest)
    assert request.cvm == "cdcvm"
    assert request.emv["9F34"] == "010002"


def test_chip_and_offline_pin_then_approval_with_both_receipts(rig: Rig) -> None:
    the_card = card("offline_pin")
    rig.pay(12000)
    assert rig.engine.screen.lines == ("120,00 EUR", "INSÉREZ LA CARTE")
    insert(rig, the_card, T0 + 2)
    assert rig.state() is State.PIN_ENTRY
    assert rig.engine.screen.lines == ("120,00 EUR", "SAISISSEZ VOTRE CODE")
    assert rig.engine.next_deadline == T0 + 2 + TIMEOUTS.pin_entry
    request = only(pin(rig, "1234", T0 + 5), AuthorisationRequest)
    assert request.entry_mode == "chip"
    assert request.cvm == "offline_pin"
    assert sealed_pin(request) is None  # the chip checked it: the PIN never leaves the card
    response = only(rig.answer("00", T0 + 6, "654321"), PaymentResponse)
    assert response.result == "approved"
    assert response.cardholder_verification == "offline_pin"
    for copy, receipt in (
        ("TICKET CLIENT", response.receipt),
        ("TICKET COMMERCANT", response.merchant_receipt),
    ):
        assert copy in receipt
        assert "PUCE" in receipt
        assert "CODE CONFIDENTIEL VERIFIE" in receipt
        assert "AUTORISATION 654321" in receipt
        assert not any(the_card.profile.pan in line or "12/29" in line for line in receipt)


def test_wrong_offline_pins_count_down_and_the_third_blocks_the_pin(rig: Rig) -> None:
    the_card = card("offline_pin")
    rig.pay(12000)
    insert(rig, the_card, T0 + 1)
    pin(rig, "0000", T0 + 2)
    assert rig.engine.screen.lines == ("CODE FAUX", "ESSAIS RESTANTS : 2", "SAISISSEZ VOTRE CODE")
    pin(rig, "1111", T0 + 3)
    assert rig.engine.screen.text.splitlines()[1] == "ESSAIS RESTANTS : 1"
    response = only(pin(rig, "2222", T0 + 4), PaymentResponse)
    assert response.result == "declined"
    assert response.response_code == "75"
    assert the_card.pin_blocked
    # the blocked card is refused at once next time, without going online
    rig.engine.on_timer(T0 + 4 + TIMEOUTS.result_display)
    rig.pay(12000, txn="T-0002", now=T0 + 10)
    events = insert(rig, the_card, T0 + 11)
    assert only(events, PaymentResponse).response_code == "75"
    assert not [e for e in events if isinstance(e, AuthorisationRequest)]


def test_a_right_pin_after_a_wrong_one_resets_the_try_counter(rig: Rig) -> None:
    the_card = card("offline_pin")
    rig.pay(12000)
    insert(rig, the_card, T0 + 1)
    pin(rig, "0000", T0 + 2)
    only(pin(rig, "1234", T0 + 3), AuthorisationRequest)
    assert the_card.pin_tries == 3


def test_online_pin_is_sealed_for_the_issuer(rig: Rig) -> None:
    rig.pay(12000)
    insert(rig, card("online_pin"), T0 + 1)
    request = only(pin(rig, "4242", T0 + 2), AuthorisationRequest)
    assert request.cvm == "online_pin"
    assert sealed_pin(request) == "4242"
    assert "4242" not in json.dumps(request.card_data)
    response = only(rig.answer("55", T0 + 3), PaymentResponse)
    assert (response.result, response.message) == ("declined", "Code confidentiel erroné")


@pytest.mark.parametrize("code", ["1A", "65"])
def test_sca_soft_decline_moves_the_same_transaction_to_chip_and_pin(rig: Rig, code: str) -> None:
    rig.pay(2000)
    first = only(rig.tap(card("visa"), T0 + 1), AuthorisationRequest)
    events = rig.answer(code, T0 + 2)
    assert not [e for e in events if isinstance(e, PaymentResponse)]  # not over yet
    assert rig.state() is State.WAITING_FOR_CARD
    assert rig.engine.screen.lines == ("20,00 EUR", "CODE REQUIS", "INSÉREZ VOTRE CARTE")
    rig.tap(card("visa"), T0 + 3)  # tapping again is not enough
    assert rig.engine.screen.lines[-1] == "INSÉREZ VOTRE CARTE"
    insert(rig, card("visa"), T0 + 4)
    second = only(pin(rig, "1234", T0 + 5), AuthorisationRequest)
    assert second.transaction_id == first.transaction_id
    assert (second.entry_mode, second.cvm) == ("chip", "offline_pin")
    assert only(rig.answer("00", T0 + 6, "112233"), PaymentResponse).result == "approved"


def test_card_removed_during_pin_entry_aborts_with_nothing_charged(rig: Rig) -> None:
    rig.pay(12000)
    insert(rig, card("offline_pin"), T0 + 1)
    rig.engine.remove_card(T0 + 2)
    response = only(rig.engine.drain_events(), PaymentResponse)
    assert (response.result, response.message) == ("aborted", "Carte retirée")
    assert response.authorisation_code is None


def test_card_removed_while_authorising_aborts_and_a_late_approval_is_refused(rig: Rig) -> None:
    rig.pay(12000)
    insert(rig, card("offline_pin"), T0 + 1)
    pin(rig, "1234", T0 + 2)
    rig.engine.remove_card(T0 + 3)
    assert only(rig.engine.drain_events(), PaymentResponse).result == "aborted"
    assert refusal(rig.answer("00", T0 + 4, "999999")).code == "unexpected_authorisation"


def test_the_chip_may_decline_after_the_issuer_approved(rig: Rig) -> None:
    rig.pay(12000)
    insert(rig, card("refus_puce"), T0 + 1)
    pin(rig, "1234", T0 + 2)
    response = only(rig.answer("00", T0 + 3, "424242"), PaymentResponse)
    assert response.result == "declined"
    assert response.message == "Paiement refusé par la carte"
    assert response.receipt == []  # nothing was paid: no receipt


@pytest.mark.parametrize(
    ("arpc", "why"),
    [
        (None, "no issuer authentication data"),
        ("00" * 8, "not the issuer's"),
        ("forged", "computed with other keys"),
        ("declines", "authentic, but the issuer's CSU declines"),
    ],
)
def test_the_chip_declines_an_approval_whose_arpc_does_not_authenticate(
    rig: Rig, arpc: str | None, why: str
) -> None:
    the_card = card("offline_pin")
    rig.pay(12000)
    insert(rig, the_card, T0 + 1)
    request = only(pin(rig, "1234", T0 + 2), AuthorisationRequest)
    profile = the_card.profile
    if arpc in ("forged", "declines"):
        keys = ISSUER_KEYS["VISA"] if arpc == "declines" else ISSUER_KEYS["MASTERCARD"]
        issuer = CardCryptography(profile.brand, keys, profile.pan)
        code = "05" if arpc == "declines" else "00"
        arpc = issuer.issuer_authentication_data(request.emv["9F26"], request.emv["9F36"], code)
    response = only(rig.answer("00", T0 + 3, "424242", arpc=arpc), PaymentResponse)
    assert (response.result, response.response_code) == ("declined", "00"), why
    assert response.message == "Paiement refusé par la carte"
    assert response.receipt == []


def test_a_contactless_approval_needs_no_arpc(rig: Rig) -> None:
    """Contactless kernels end after the first GENERATE AC: no second one checks an ARPC."""
    rig.pay(4250)
    rig.tap(card("visa"), T0 + 1)
    response = only(rig.answer("00", T0 + 2, "424242", arpc=None), PaymentResponse)
    assert response.result == "approved"


def test_every_authorisation_request_uses_the_next_dukpt_counter(rig: Rig) -> None:
    """One counter per sealed request, the SCA retry of the same transaction included; the
    processor derives each one's key from the BDK."""
    rig.pay(2000, txn="A")
    first = only(rig.tap(card("visa"), T0 + 1), AuthorisationRequest)
    rig.answer("1A", T0 + 2, txn="A")
    insert(rig, card("visa"), T0 + 3)
    second = only(pin(rig, "1234", T0 + 4), AuthorisationRequest)
    rig.answer("00", T0 + 5, "112233", txn="A")
    rig.engine.on_timer(T0 + 10)
    rig.pay(1500, txn="B", now=T0 + 11)
    third = only(rig.tap(card("mastercard"), T0 + 12), AuthorisationRequest)
    requests = [(first, 2000, "A"), (second, 2000, "A"), (third, 1500, "B")]
    counters = [split_ksn(ksn_of(request.card_data))[1] for request, _, _ in requests]
    assert counters == [1, 2, 3]
    assert rig.engine.card_data_keys is not None
    assert rig.engine.card_data_keys.counter == 3
    for request, amount, txn in requests:
        assert open_sealed(BDKS, request.card_data, associated_data(txn, amount, "EUR"))


def test_a_terminal_without_an_injected_key_seals_nothing_and_declines() -> None:
    engine = TerminalEngine(PROFILE, MERCHANT, TIMEOUTS)
    engine.handle_command(
        PaymentRequest(id=1, transaction_id=TXN, amount=4250, currency="EUR", reference="F1"),
        T0,
        CALENDAR,
        secure=True,
    )
    engine.present_card(card("visa"), EntryMode.CONTACTLESS, T0 + 1, CALENDAR)
    events = engine.drain_events()
    assert not [e for e in events if isinstance(e, AuthorisationRequest)]
    response = only(events, PaymentResponse)
    assert (response.result, response.response_code) == ("declined", "96")
    assert response.message == "Clé de chiffrement absente : terminal à initialiser"
    engine.load_initial_key(INITIAL_KEY, IKID)  # key injection (first setup)
    assert engine.card_data_keys is not None
    assert engine.card_data_keys.counter == 0


def test_initial_key_and_its_id_go_together() -> None:
    with pytest.raises(ValueError, match="together"):
        TerminalEngine(PROFILE, MERCHANT, TIMEOUTS, initial_key=INITIAL_KEY)


def test_pin_entry_timeout_aborts(rig: Rig) -> None:
    rig.pay(12000)
    insert(rig, card("offline_pin"), T0 + 1)
    rig.engine.on_timer(T0 + 1 + TIMEOUTS.pin_entry)
    response = only(rig.engine.drain_events(), PaymentResponse)
    assert (response.result, response.message) == ("aborted", "Délai de saisie du code dépassé")


# ------------------------------------------------------------------------------ the texts
#: Every fixed line the terminal shows a French cardholder or merchant. Amounts, codes and
#: tries left vary and are left out. A change here is a change users will see: review it.
TERMINAL_TEXTS = {
    "BATTERIE FAIBLE",
    "RECHARGEZ LE TPE",
    "ANNULATION",
    "ACCORD ANNULÉ",
    "RIEN N'EST DÉBITÉ",
    "BIENVENUE",
    "PRÉSENTEZ OU",
    "INSÉREZ LA CARTE",
    "INSÉREZ VOTRE CARTE",
    "CARTE NON SUPPORTÉE",
    "AUTRE CARTE SVP",
    "SAISISSEZ VOTRE CODE",
    "CODE FAUX",
    "CODE REQUIS",
    "AUTORISATION",
    "VEUILLEZ PATIENTER",
    "PAIEMENT ACCEPTÉ",
    "PAIEMENT REFUSÉ",
    "TRANSACTION ANNULÉE",
    "CARTE RETIRÉE",
    "APPAIRAGE",
    "CONFIRMEZ SUR LE TEL",
    "APPAIRAGE RÉUSSI",
    "APPAIRAGE ÉCHOUÉ",
    # a decline's reason, wrapped to the screen's width (here code 05)
    "PAIEMENT REFUSÉ PAR",
    "LA BANQUE",
    # card capture
    "ENREGISTREMENT CARTE",
    "VÉRIFICATION",
    "CARTE ENREGISTRÉE",
    "CARTE REFUSÉE",
    "CARTE EXPIRÉE",
    "ANNULÉE SUR LE",
    "TERMINAL",
    # pairing and first setup
    "SAISISSEZ SUR LE TEL",
    "APPAIRAGE REFUSÉ",
    "TROP DE TÉLÉPHONES",
    "RÉINITIALISEZ",
    "À CONFIGURER",
    "CONFIGURATION",
    "MISE À JOUR",
    "NE PAS ÉTEINDRE",
    "TERMINAL CONFIGURÉ",
    "INTERROMPUE",
}


def _screens_of_every_flow() -> set[str]:
    def approved(r: Rig) -> None:
        r.pay(2000)
        r.tap(card("visa"), T0 + 1)
        r.answer("00", T0 + 2, "123456")

    def declined(r: Rig) -> None:
        r.pay(2000)
        r.tap(card("visa"), T0 + 1)
        r.answer("05", T0 + 2)

    def unsupported(r: Rig) -> None:
        r.pay(2000)
        r.tap(card("jcb_non_supportee"), T0 + 1)

    def chip_wrong_pin(r: Rig) -> None:
        r.pay(9000)
        r.tap(card("visa"), T0 + 1)
        insert(r, card("visa"), T0 + 2)
        pin(r, "0000", T0 + 3)

    def soft_decline(r: Rig) -> None:
        r.pay(2000)
        r.tap(card("visa"), T0 + 1)
        r.answer("1A", T0 + 2)

    def removed(r: Rig) -> None:
        r.pay(9000)
        insert(r, card("offline_pin"), T0 + 1)
        r.engine.remove_card(T0 + 2)

    def pairing(r: Rig) -> None:
        for success in (True, False):
            r.engine.show_pairing_code("123456", T0)
            r.engine.pairing_ended(T0, success)

    def captures(r: Rig) -> None:
        capture(r, "T-C1")
        r.tap(card("visa"), T0 + 1)
        r.answer("85", T0 + 2, txn="T-C1")
        capture(r, "T-C2", T0 + 3)
        r.tap(card("expiree"), T0 + 4)
        r.answer("54", T0 + 5, txn="T-C2")
        capture(r, "T-C3", T0 + 6)
        r.engine.press_red_key(T0 + 7)

    def battery_low(r: Rig) -> None:
        r.engine.set_battery(1)
        r.pay(2000)

    def cancelled_approval(r: Rig) -> None:
        r.pay(2000)
        r.tap(card("visa"), T0 + 1)
        r.engine.press_red_key(T0 + 2)
        r.answer("00", T0 + 3, auth_code="A1B2C3")

    def passkey_and_full(r: Rig) -> None:
        r.engine.show_pairing_code("123456", T0, typed=True)
        r.engine.show_bonds_full(T0)

    seen: set[str] = set()
    flows = (approved, declined, unsupported, chip_wrong_pin, soft_decline, removed, pairing)
    for flow in (*flows, captures, battery_low, cancelled_approval, passkey_and_full):
        rig = Rig()
        flow(rig)
        for shot in rig.engine.screen.history:
            seen.update(shot.lines)
    for engine in (fresh(UPDATING), fresh()):  # first setup, the second one cut short
        engine.handle_command(SETUP, T0, CALENDAR, secure=True)
        if engine.profile is UPDATING:
            run_setup(engine, T0)
        else:
            engine.link_lost(T0 + 1)
        for shot in engine.screen.history:
            seen.update(shot.lines)
    return seen


def test_the_terminal_shows_only_the_listed_french_texts() -> None:
    seen = _screens_of_every_flow()
    variable = re.compile(
        r"^(\d[\d ]*,\d\d EUR|CODE \d{6}|ESSAIS RESTANTS : \d|TPE-\w+"
        r"|TÉLÉCHARGEMENT \d+ %|LOGICIEL \d+ %|\d+ %)$"
    )
    fixed = {line for line in seen if not variable.match(line)}
    assert fixed == TERMINAL_TEXTS
    assert all(len(line) <= 20 and line == line.upper() for line in seen)


def test_identifiers_that_would_not_fit_a_receipt_are_refused(rig: Rig) -> None:
    assert refusal(rig.pay(txn="T" * 65)).code == "invalid_transaction_id"
    request = PaymentRequest(
        id=rig.take_id(), transaction_id="T-1", amount=100, currency="EUR", reference="F" * 65
    )
    assert refusal(rig.command(request, T0)).code == "invalid_reference"
    assert rig.state() is State.IDLE


@pytest.mark.parametrize("auth_code", ["12345", "1234567", "<b>12", "abcdef"])
def test_an_approval_with_a_malformed_authorisation_number_is_not_an_approval(
    rig: Rig, auth_code: str
) -> None:
    rig.pay(2000)
    rig.tap(card("visa"), T0 + 1)
    response = only(rig.answer("00", T0 + 2, auth_code), PaymentResponse)
    assert (response.result, response.response_code) == ("declined", "96")
    assert response.receipt == []


# ------------------------------------------------------------------------------ card capture
def capture(rig: Rig, txn: str = "T-CAP", now: float = T0) -> list[Event]:
    request = CardAcquisitionRequest(id=rig.take_id(), transaction_id=txn, reference="C-0001")
    return rig.command(request, now)


def test_a_capture_reads_the_card_with_no_amount_and_saves_on_85(rig: Rig) -> None:
    assert isinstance(capture(rig)[0], CommandAccepted)
    assert rig.engine.screen.lines == ("ENREGISTREMENT CARTE", "PRÉSENTEZ OU", "INSÉREZ LA CARTE")
    request = only(rig.tap(card("visa"), T0 + 1), AuthorisationRequest)
    assert (request.amount, request.emv["9F02"], request.cvm) == (0, "000000000000", "none")
    response = only(
        rig.answer("85", T0 + 2, message="Carte vérifiée", txn="T-CAP"), CardAcquisitionResponse
    )
    assert (response.result, response.response_code) == ("approved", "85")
    assert (response.brand, response.masked_pan) == ("VISA", "************4242")
    assert rig.engine.screen.text == "ENREGISTREMENT CARTE\nCARTE ENREGISTRÉE"
    shown = {line for shot in rig.engine.screen.history for line in shot.lines}
    assert not [line for line in shown if re.search(r"\d,\d\d EUR", line)]


def test_a_capture_above_the_contactless_ceiling_does_not_exist(rig: Rig) -> None:
    capture(rig)
    only(rig.tap(card("visa"), T0 + 1), AuthorisationRequest)  # no amount: no ceiling


def test_a_refused_verification_saves_nothing(rig: Rig) -> None:
    capture(rig)
    rig.tap(card("expiree"), T0 + 1)
    response = only(rig.answer("54", T0 + 2, txn="T-CAP"), CardAcquisitionResponse)
    assert (response.result, response.message) == ("declined", "Carte expirée")
    assert rig.engine.screen.lines == ("CARTE REFUSÉE", "CARTE EXPIRÉE")


def test_the_red_key_cancels_while_waiting_and_does_nothing_when_idle(rig: Rig) -> None:
    rig.engine.press_red_key(T0)
    assert rig.engine.drain_events() == []
    capture(rig)
    rig.engine.press_red_key(T0 + 1)
    response = only(rig.engine.drain_events(), CardAcquisitionResponse)
    assert (response.result, response.message) == ("aborted", "Annulée sur le terminal")


@pytest.mark.parametrize("how", ["red_key", "app"])
def test_a_cancellation_while_the_bank_decides_turns_its_approval_into_an_abort(
    rig: Rig, how: str
) -> None:
    rig.pay(2000)
    rig.tap(card("visa"), T0 + 1)
    if how == "red_key":
        rig.engine.press_red_key(T0 + 2)
        events = rig.engine.drain_events()
    else:
        events = rig.command(AbortRequest(id=rig.take_id(), transaction_id=TXN), T0 + 2)
        assert only(events, CommandAccepted).transaction_id == TXN
    # The request is at the bank: the terminal waits for its answer, says it is cancelling.
    assert rig.state() is State.AUTHORISING
    assert rig.engine.screen.lines == ("20,00 EUR", "ANNULATION", "VEUILLEZ PATIENTER")
    response = only(rig.answer("00", T0 + 3, auth_code="A1B2C3"), PaymentResponse)
    assert response.result == "aborted"
    assert response.receipt == []  # nothing printed: nothing is charged
    why = "Annulée sur le terminal" if how == "red_key" else "Transaction annulée"
    assert response.message == f"{why} : l'accord de la banque est annulé, rien n'est débité"
    assert rig.state() is State.ABORTED
    assert rig.engine.screen.lines == ("TRANSACTION ANNULÉE", "ACCORD ANNULÉ", "RIEN N'EST DÉBITÉ")


def test_a_cancellation_while_the_bank_declines_ends_aborted_without_reversal_words(
    rig: Rig,
) -> None:
    rig.pay(2000)
    rig.tap(card("visa"), T0 + 1)
    rig.engine.press_red_key(T0 + 2)
    rig.engine.press_red_key(T0 + 2.5)  # pressed twice: one cancellation
    rig.engine.drain_events()
    response = only(rig.answer("51", T0 + 3), PaymentResponse)
    assert (response.result, response.message) == ("aborted", "Annulée sur le terminal")


def test_a_cancelled_request_whose_answer_never_comes_times_out_aborted(rig: Rig) -> None:
    rig.pay(2000)
    rig.tap(card("visa"), T0 + 1)
    rig.engine.press_red_key(T0 + 2)
    rig.engine.on_timer(T0 + 1 + TIMEOUTS.authorisation)
    response = only(rig.engine.drain_events(), PaymentResponse)
    assert (response.result, response.message) == ("aborted", "Annulée sur le terminal")


def test_a_phone_wallet_cannot_be_inserted(rig: Rig) -> None:
    rig.pay(12000)
    with pytest.raises(TerminalError, match="cannot be inserted"):
        insert(rig, card("wallet"), T0 + 1)
    assert rig.state() is State.WAITING_FOR_CARD


@pytest.mark.parametrize("typed", ["", "1", "123", "abcd", "12 34", "1234567890123"])
def test_the_pin_pad_takes_only_4_to_12_digits_and_a_slip_costs_no_try(
    rig: Rig, typed: str
) -> None:
    the_card = card("offline_pin")
    rig.pay(12000)
    insert(rig, the_card, T0 + 1)
    with pytest.raises(TerminalError, match="4 to 12 digits"):
        rig.engine.enter_pin(typed, T0 + 2)
    assert the_card.pin_tries == 3
    assert rig.state() is State.PIN_ENTRY


def test_strong_authentication_asked_after_the_pin_is_a_final_decline(rig: Rig) -> None:
    rig.pay(12000)
    insert(rig, card("visa"), T0 + 1)
    pin(rig, "1234", T0 + 2)
    response = only(rig.answer("65", T0 + 3), PaymentResponse)
    assert response.result == "declined"
    assert response.message.startswith("Paiement refusé par la banque")
    assert "saisissez le code" not in response.message


def test_the_brand_chosen_on_a_co_badged_card_holds_for_the_chip_read_after_a_soft_decline(
    rig: Rig,
) -> None:
    rig.pay(2000)
    rig.engine.present_card(
        card("cb_mastercard"), EntryMode.CONTACTLESS, T0 + 1, CALENDAR, "MASTERCARD"
    )
    assert only(rig.engine.drain_events(), AuthorisationRequest).brand == "MASTERCARD"
    rig.answer("65", T0 + 2)
    insert(rig, card("cb_mastercard"), T0 + 3)  # no brand chosen again
    second = only(pin(rig, "1470", T0 + 4), AuthorisationRequest)
    assert second.brand == "MASTERCARD"


def test_a_capture_is_saved_only_on_85(rig: Rig) -> None:
    capture(rig)
    rig.tap(card("visa"), T0 + 1)
    response = only(rig.answer("00", T0 + 2, "123456", txn="T-CAP"), CardAcquisitionResponse)
    assert response.result == "declined"


# ------------------------------------------------------------------------------ first setup
SETUP = SetupRequest(
    id=900, merchant_id="M-1", merchant_name="Plomberie Durand", city="Lyon", contract_number="1"
)
UPDATING = load_profiles(FIXTURES / "terminals.yaml")["mise_a_jour"]


def fresh(profile: TerminalProfile = PROFILE) -> TerminalEngine:
    engine = TerminalEngine(profile, None, TIMEOUTS)
    engine.drain_events()
    return engine


def run_setup(engine: TerminalEngine, now: float) -> list[Event]:
    engine.handle_command(SETUP, now, CALENDAR, secure=True)
    events = engine.drain_events()
    while engine.next_deadline is not None:
        engine.on_timer(engine.next_deadline)
        events += engine.drain_events()
    return events


def test_a_fresh_terminal_refuses_payments_until_set_up() -> None:
    engine = fresh()
    assert engine.screen.lines == ("BIENVENUE", PROFILE.name, "À CONFIGURER")
    request = PaymentRequest(id=1, transaction_id="T1", amount=100, currency="EUR", reference="F")
    engine.handle_command(request, T0, CALENDAR, secure=True)
    assert refusal(engine.drain_events()).code == "setup_required"


def test_first_setup_reports_progress_and_takes_its_loop_time() -> None:
    engine = fresh(UPDATING)
    events = run_setup(engine, T0)
    progress = [(e.phase, e.percent) for e in events if isinstance(e, SetupProgress)]
    assert progress[0] == ("configuration", 0)
    assert ("configuration", 100) in progress
    assert progress[-1] == ("firmware", 100)
    configuration = [p for phase, p in progress if phase == "configuration"]
    assert configuration == list(range(0, 101, 10))
    done = only(events, SetupResponse)
    assert (done.result, done.firmware) == ("completed", "1.4.2")
    assert engine.configured
    assert engine.firmware == "1.4.2"
    last = max(shot.at for shot in engine.screen.history)
    assert last - T0 == UPDATING.configuration_seconds + UPDATING.firmware_seconds


def test_setup_is_refused_below_the_battery_threshold() -> None:
    engine = fresh()
    engine.set_battery(PROFILE.min_setup_battery - 1)
    engine.handle_command(SETUP, T0, CALENDAR, secure=True)
    error = refusal(engine.drain_events())
    assert error.code == "battery_low"
    assert "Batterie du terminal trop faible" in error.message
    assert not engine.configured


def test_a_link_loss_pauses_setup_and_the_next_request_resumes_it() -> None:
    engine = fresh()
    engine.handle_command(SETUP, T0, CALENDAR, secure=True)
    for _ in range(4):
        deadline = engine.next_deadline
        assert deadline is not None
        engine.on_timer(deadline)
    engine.link_lost(T0 + 50)
    engine.drain_events()  # what went to the phone before the link dropped
    assert engine.next_deadline is None
    assert engine.setup_progress.configuration == 40
    assert engine.screen.lines == ("CONFIGURATION", "INTERROMPUE", "40 %")
    events = run_setup(engine, T0 + 100)
    first = next(e for e in events if isinstance(e, SetupProgress))
    assert first.percent == 40  # resumed, not restarted
    assert engine.configured


def test_setup_on_an_insecure_link_is_refused() -> None:
    engine = fresh()
    engine.handle_command(SETUP, T0, CALENDAR, secure=False)
    assert refusal(engine.drain_events()).code == "insecure_link"


def test_a_factory_reset_forgets_the_configuration() -> None:
    engine = fresh()
    run_setup(engine, T0)
    engine.factory_reset(T0 + 500)
    assert not engine.configured
    assert engine.journal == {}


# ------------------------------------------------------------------ journal and battery
def test_every_change_of_a_transaction_is_offered_to_the_journal(rig: Rig) -> None:
    rig.pay(2000)
    [entry] = rig.engine.drain_journal_changes()
    assert (entry.transaction_id, entry.state, entry.amount) == (TXN, "waiting_for_card", 2000)
    assert rig.engine.drain_journal_changes() == []  # nothing changed since
    rig.tap(card("visa"), T0 + 1)
    [entry] = rig.engine.drain_journal_changes()
    assert entry.state == "authorising"
    assert entry.masked_pan == "************" + CARDS["visa"].pan[-4:]
    rig.answer("00", T0 + 2, auth_code="A1B2C3")
    [entry] = rig.engine.drain_journal_changes()
    assert (entry.state, entry.authorisation_code) == ("approved", "A1B2C3")
    assert "TICKET CLIENT" in entry.receipt
    assert CARDS["visa"].pan not in repr(entry)  # never card data


def test_a_restored_journal_answers_status_and_ends_what_the_power_cut(rig: Rig) -> None:
    rig.pay(2000)
    rig.tap(card("visa"), T0 + 1)
    rig.answer("00", T0 + 2, auth_code="A1B2C3")
    done = rig.engine.drain_journal_changes()
    rig.pay(3000, txn="T-0002", now=T0 + 10)
    rig.tap(card("visa"), T0 + 11)
    cut = rig.engine.drain_journal_changes()  # T-0002 was at the bank when the power went

    rebooted = Rig()
    changed = rebooted.engine.restore_journal(done + cut)
    assert [(e.transaction_id, e.state) for e in changed] == [("T-0002", "aborted")]

    def status(txn: str) -> TransactionStatusResponse:
        command = TransactionStatusRequest(id=rebooted.take_id(), transaction_id=txn)
        return only(rebooted.command(command, T0), TransactionStatusResponse)

    approved = status(TXN)
    assert (approved.result, approved.authorisation_code) == ("approved", "A1B2C3")
    assert approved.receipt
    assert tuple(approved.receipt) == done[0].receipt
    assert (approved.kind, approved.amount) == ("payment", 2000)
    interrupted = status("T-0002")
    assert interrupted.result == "aborted"
    assert interrupted.message == "Transaction interrompue : le terminal s'est éteint"
    # the journal remembers the ids: the same transaction cannot start again
    refused = refusal(rebooted.pay(2000, txn=TXN))
    assert refused.code == "duplicate_transaction"


def test_status_of_a_transaction_in_progress_has_no_result_yet(rig: Rig) -> None:
    rig.pay(2000)
    command = TransactionStatusRequest(id=rig.take_id(), transaction_id=TXN)
    status = only(rig.command(command, T0 + 1), TransactionStatusResponse)
    assert (status.state, status.result, status.message) == ("waiting_for_card", None, "")


def test_each_card_read_costs_battery(rig: Rig) -> None:
    start = rig.engine.battery
    rig.pay(2000)
    rig.tap(card("visa"), T0 + 1)
    rig.answer("00", T0 + 2, auth_code="A1B2C3")
    assert rig.engine.battery == start - PROFILE.battery_per_transaction
    rig.engine.on_timer(T0 + 10)
    rig.pay(2000, txn="T-0002", now=T0 + 11)
    rig.command(AbortRequest(id=rig.take_id(), transaction_id="T-0002"), T0 + 12)
    assert rig.engine.battery == start - PROFILE.battery_per_transaction  # no card, no cost


def test_below_the_threshold_payments_are_refused_with_the_level(rig: Rig) -> None:
    rig.engine.set_battery(PROFILE.min_transaction_battery - 1)
    refused = only(rig.pay(2000), Error)
    assert refused.code == "battery_low"
    assert refused.message == (
        "Batterie du terminal trop faible (4 %, 5 % au moins) : rechargez-le avant d'encaisser."
    )
    assert rig.engine.screen.lines == ("BATTERIE FAIBLE", "4 %", "RECHARGEZ LE TPE")
    assert rig.state() is State.IDLE
    assert TXN not in rig.engine.journal  # refused: the id may be used again once charged
    rig.engine.set_battery(50)
    assert only(rig.pay(2000), CommandAccepted).transaction_id == TXN


def test_an_empty_battery_asks_the_driver_to_power_off(rig: Rig) -> None:
    def off() -> bool:  # read through a call: no narrowing across set_battery
        return rig.engine.power_off_requested

    assert not off()
    rig.engine.set_battery(0)
    assert off()
    with pytest.raises(ValueError, match="whole number from 0 to 100"):
        rig.engine.set_battery(101)
