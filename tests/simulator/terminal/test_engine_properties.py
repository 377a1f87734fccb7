"""Property tests: the terminal (endpoint + engine) fed random sequences of valid and invalid
commands, replayed ids, garbage frames, card actions and time never raises, answers every
command and every unreadable write, never shows a card number, and stays usable afterwards."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simulator.cards import (
    CardCryptography,
    Catalogue,
    EntryMode,
    IssuerMasterKeys,
    VirtualCard,
)
from simulator.protocol import ProtocolError, TerminalEndpoint
from simulator.protocol.dukpt import derive_initial_key
from simulator.protocol.framing import fragment
from simulator.protocol.messages import (
    AbortRequest,
    AuthorisationResponse,
    CardAcquisitionRequest,
    Command,
    CommandAccepted,
    DiagnosisRequest,
    DiagnosisResponse,
    Error,
    Event,
    PaymentRequest,
    TransactionStatusRequest,
    encode,
)
from simulator.terminal import (
    MerchantSetup,
    State,
    TerminalEngine,
    TerminalError,
    load_profiles,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
PROFILE = load_profiles(FIXTURES / "terminals.yaml")["standard"]
CARDS = Catalogue.load(FIXTURES / "cards.yaml")
_KEYS = yaml.safe_load((FIXTURES / "keys.yaml").read_text(encoding="utf-8"))
IKID = bytes.fromhex(_KEYS["dukpt"]["terminals"][PROFILE.serial])
BDK = bytes.fromhex(_KEYS["dukpt"]["bdks"][IKID[:4].hex().upper()])
ISSUER_KEYS = {
    brand: IssuerMasterKeys(**{part: bytes.fromhex(v) for part, v in keys.items()})
    for brand, keys in _KEYS["issuer_master_keys"].items()
}
MERCHANT = MerchantSetup(name="Plomberie Durand", city="Lyon", contract_number="1234567")
CALENDAR = dt.datetime(2026, 12, 3, 9, 30)
#: Mostly valid values, some invalid ones (repeated entries weigh the draw). NEW is a fresh
#: transaction id, CURRENT the one in progress (both resolved when sent).
NEW, CURRENT = "<new>", "<current>"
TRANSACTIONS = (NEW, NEW, NEW, CURRENT, CURRENT, CURRENT, "T1", "T2", "", " ", "T" * 70)
CARD_KEYS = ("visa", "mastercard", "cb_visa", "offline_pin", "online_pin", "refus_puce", "wallet")


# -- what the phone (or an attacker on the link) and the cardholder do -------------------------
@dataclass(frozen=True)
class Send:
    """A command; ``id_mode``: next (last + 1), replay (an id already accepted), jump."""

    command: Command
    id_mode: str
    secure: bool


@dataclass(frozen=True)
class Garbage:
    frame: bytes


@dataclass(frozen=True)
class Act:
    """The cardholder: tap, insert, pin, red_key, remove; or time passing (wait)."""

    action: str
    card: str = "visa"
    pin: str = "1234"
    seconds: float = 0.0


ISSUER_ARPC = "issuer"  # AuthorisationResponse.arpc: the issuer's real answer, computed later

txn_ids = st.sampled_from(TRANSACTIONS)
commands = st.one_of(
    st.builds(
        PaymentRequest,
        transaction_id=txn_ids,
        amount=st.sampled_from([-1, 0, 1, 4250, 4250, 5000, 5001, 8000, 99_999_999, 10**9]),
        currency=st.sampled_from(["EUR", "EUR", "EUR", "EUR", "USD", ""]),
        reference=st.sampled_from(["F-1", "F-1", "F-1", "", "R" * 70]),
    ),
    st.builds(CardAcquisitionRequest, transaction_id=txn_ids, reference=st.just("C-1")),
    st.builds(
        AuthorisationResponse,
        transaction_id=txn_ids,
        response_code=st.sampled_from(["00", "00", "00", "05", "1A", "65", "85", "55", "Z9", ""]),
        authorisation_code=st.sampled_from([None, "ABC123", "ABC123", "ABC123", "bad", ""]),
        message=st.sampled_from(["", "Refusé"]),
        arpc=st.sampled_from([None, ISSUER_ARPC, ISSUER_ARPC, ISSUER_ARPC, "00" * 8, "zz"]),
    ),
    st.builds(AbortRequest, transaction_id=txn_ids),
    st.builds(TransactionStatusRequest, transaction_id=txn_ids),
    st.builds(DiagnosisRequest),
)
#: Well-formed commands a phone sends in a real flow, over a secure link, numbered in order.
valid_commands = st.one_of(
    st.builds(
        PaymentRequest,
        transaction_id=st.just(NEW),
        amount=st.sampled_from([1000, 4250, 8000]),
        currency=st.just("EUR"),
        reference=st.just("F-1"),
    ),
    st.builds(CardAcquisitionRequest, transaction_id=st.just(NEW), reference=st.just("C-1")),
    st.builds(
        AuthorisationResponse,
        transaction_id=st.just(CURRENT),
        response_code=st.sampled_from(["00", "00", "05", "1A", "65", "85"]),
        authorisation_code=st.just("ABC123"),
        arpc=st.sampled_from([ISSUER_ARPC, ISSUER_ARPC, ISSUER_ARPC, "00" * 8]),
    ),
    st.builds(AbortRequest, transaction_id=st.just(CURRENT)),
)
PINS = sorted({CARDS[key].pin for key in CARD_KEYS if CARDS[key].pin} | {"0000"})
card_actions = st.builds(
    Act,
    action=st.sampled_from(["tap", "tap", "insert", "insert", "pin", "pin"]),
    card=st.sampled_from(CARD_KEYS),
    pin=st.sampled_from(PINS),
)
steps = st.one_of(
    st.builds(Send, command=valid_commands, id_mode=st.just("next"), secure=st.just(True)),
    card_actions,
    st.builds(
        Send,
        command=commands,
        id_mode=st.sampled_from(["next", "next", "replay", "jump"]),
        secure=st.sampled_from([True, True, True, False]),
    ),
    st.builds(Garbage, frame=st.binary(max_size=24)),
    st.builds(
        Act,
        action=st.sampled_from(["red_key", "remove", "wait"]),
        seconds=st.sampled_from([0.5, 3.0, 31.0, 61.0]),
    ),
)


class Terminal:
    """One link's endpoint and the engine, driven as ``BleTerminal`` drives them."""

    def __init__(self) -> None:
        counter = itertools.count()
        self.engine = TerminalEngine(
            PROFILE,
            MERCHANT,
            random_bytes=lambda n: bytes(next(counter) % 256 for _ in range(n)),
            initial_key=derive_initial_key(BDK, IKID),
            initial_key_id=IKID,
        )
        self.endpoint = TerminalEndpoint()
        self.cards = {
            key: VirtualCard(CARDS[key], ISSUER_KEYS[CARDS[key].brand]) for key in CARD_KEYS
        }
        self.now = 1000.0
        self.last_id = 0
        self.fresh = 0
        self.engine.drain_events()

    def write(self, frames: list[bytes], *, secure: bool) -> list[tuple[Any, list[Event]]]:
        """Every item the endpoint yields, with the events the engine answered it with."""
        answered = []
        for frame in frames:
            for item in self.endpoint.receive_frame(frame):
                if isinstance(item, ProtocolError):
                    self.engine.handle_protocol_error(item)
                else:
                    self.engine.handle_command(item, self.now, CALENDAR, secure=secure)
                answered.append((item, self.drain()))
        return answered

    def drain(self) -> list[Event]:
        """The engine's events; none of them ever holds a card number in clear."""
        events = self.engine.drain_events()
        wire = b"".join(encode(e) for e in events)
        assert not any(CARDS[key].pan.encode() in wire for key in CARD_KEYS)
        return events

    def send(self, command: Command, *, secure: bool = True) -> list[tuple[Any, list[Event]]]:
        placeholder = getattr(command, "transaction_id", None)
        if placeholder in (NEW, CURRENT):
            current = self.engine.current
            self.fresh += placeholder == NEW
            txn = f"T-{self.fresh}" if placeholder == NEW else "T1"
            if placeholder == CURRENT and current is not None:
                txn = current.transaction_id
            command = dataclasses.replace(command, transaction_id=txn)  # type: ignore[call-arg]
        if isinstance(command, AuthorisationResponse) and command.arpc == ISSUER_ARPC:
            command = _with_issuer_arpc(command, self.engine)
        return self.write(list(fragment(encode(command), command.id, 23)), secure=secure)

    def act(self, step: Act) -> None:
        engine, now = self.engine, self.now
        try:
            match step.action:
                case "tap":
                    engine.present_card(self.cards[step.card], EntryMode.CONTACTLESS, now, CALENDAR)
                case "insert":
                    engine.present_card(self.cards[step.card], EntryMode.CHIP, now, CALENDAR)
                case "pin":
                    engine.enter_pin(step.pin, now)
                case "red_key":
                    engine.press_red_key(now)
                case "remove":
                    engine.remove_card(now)
                case _:
                    self.now += step.seconds
                    deadline = engine.next_deadline
                    if deadline is not None and deadline <= self.now:
                        engine.on_timer(self.now)
        except TerminalError:
            pass  # a physical action the terminal's state does not allow: the harness's mistake
        self.drain()


def _with_issuer_arpc(
    command: AuthorisationResponse, engine: TerminalEngine
) -> AuthorisationResponse:
    txn = engine.current
    arpc = None
    if txn is not None and txn.card is not None and txn.card_read is not None:
        profile = txn.card.profile
        issuer = CardCryptography(profile.brand, ISSUER_KEYS[profile.brand], profile.pan)
        emv = txn.card_read.emv
        arpc = issuer.issuer_authentication_data(emv["9F26"], emv["9F36"], command.response_code)
    return AuthorisationResponse(
        id=command.id,
        transaction_id=command.transaction_id,
        response_code=command.response_code,
        authorisation_code=command.authorisation_code,
        message=command.message,
        arpc=arpc,
    )


def numbered(command: Command, command_id: int) -> Command:
    return dataclasses.replace(command, id=command_id)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(steps, min_size=10, max_size=50))
def test_random_sequences_never_break_the_terminal(sequence: list[Send | Garbage | Act]) -> None:
    terminal = Terminal()
    for step in sequence:
        if isinstance(step, Act):
            terminal.act(step)
            event(f"state {terminal.engine.state.value}")
            continue
        if isinstance(step, Garbage):
            for item, events in terminal.write([step.frame], secure=True):
                # anything that is not a command is answered by an Error saying why
                assert isinstance(item, ProtocolError | Command)
                if isinstance(item, ProtocolError):
                    assert [e.code for e in events if isinstance(e, Error)] == [item.code]
                else:
                    terminal.last_id = max(terminal.last_id, item.id)
            continue
        if step.id_mode == "replay" and terminal.last_id > 0:
            command_id = terminal.last_id
        elif step.id_mode == "jump":
            command_id = terminal.last_id + 7
        else:
            command_id = terminal.last_id + 1
        command = numbered(step.command, command_id)
        answered = terminal.send(command, secure=step.secure)
        assert len(answered) == 1  # one command, one item out of the endpoint
        item, events = answered[0]
        if command_id <= terminal.last_id:
            assert [e.code for e in events if isinstance(e, Error)] == ["replayed_command"]
            assert all(e.in_reply_to is None for e in events if isinstance(e, Error))
        else:
            terminal.last_id = command_id
            assert isinstance(item, type(command))
            assert item.id == command_id
            replies = [e for e in events if getattr(e, "in_reply_to", None) == command_id]
            assert replies, f"{command!r} got no answer: {events!r}"
        event(f"state {terminal.engine.state.value}")

    # Still usable: it answers a diagnosis, ends whatever is in progress, takes a new payment.
    terminal.last_id += 1
    [(_, events)] = terminal.send(DiagnosisRequest(id=terminal.last_id))
    assert any(isinstance(e, DiagnosisResponse) for e in events)
    current = terminal.engine.current
    if current is not None and terminal.engine.state not in (State.IDLE, *_FINAL):
        terminal.last_id += 1
        terminal.send(AbortRequest(id=terminal.last_id, transaction_id=current.transaction_id))
    # A cancellation while the bank decides waits for its answer, or for the timeout.
    terminal.act(Act("wait", seconds=terminal.engine.timeouts.authorisation + 1.0))
    terminal.last_id += 1
    payment = PaymentRequest(
        id=terminal.last_id,
        transaction_id="T-AFTER",
        amount=1000,
        currency="EUR",
        reference="F-2",
    )
    [(_, events)] = terminal.send(payment)
    assert any(isinstance(e, CommandAccepted) and e.in_reply_to == payment.id for e in events)
    assert terminal.engine.state is State.WAITING_FOR_CARD


_FINAL = (State.APPROVED, State.DECLINED, State.ABORTED)
