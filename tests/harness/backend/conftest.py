"""Fixtures for the backend tests: a seeded store, the fixtures' processor, a sealer, and a
started server driven synchronously (as the harness's steps drive their world)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from harness.backend import BackendServer, BackendStore, Processor, load_processor, seed_store
from harness.backend.processor import IssuerCard
from harness.backend.store import Invoice
from harness.keys import load_keys
from simulator.cards import CardCryptography, Catalogue
from simulator.protocol.carddata import SensitiveCardData, associated_data, seal
from simulator.protocol.dukpt import Originator

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
SCENARIO_NOW = datetime(2026, 12, 3, 9, 30, tzinfo=timezone(timedelta(hours=1)))
TERMINAL = yaml.safe_load((FIXTURES / "terminals.yaml").read_text())["terminals"]["standard"]
SERIAL: str = TERMINAL["serial"]
KEYS = load_keys(FIXTURES)
CATALOGUE = Catalogue.load(FIXTURES / "cards.yaml")
#: The fixtures' terminal, as the tests' sealer: one counter for the whole session, so that no
#: DUKPT counter is used twice.
TERMINAL_KEYS = Originator(*KEYS.terminal_keys(SERIAL))
#: Card ATCs for :func:`emv_for`: they only go up, so no test looks like a replay.
ATCS = itertools.count(0x0100)

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"  # expires 2028-06
REFUSED = "4000000000000002"  # issuer answers 05
#: A published test number that the catalogue does not hold (the issuer does not know it).
UNKNOWN = next(
    pan
    for pan in ("6011111111111117", "4000000000003220", "4000002760003184")
    if pan not in {card.pan for card in Catalogue.load(FIXTURES / "cards.yaml").values()}
)


class Clock:
    """The world's calendar clock, settable by a test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def seal_card(
    pan: str,
    transaction_id: str,
    amount_cents: int,
    *,
    currency: str = "EUR",
    expiry: str = "2912",
    pin: str | None = None,
    terminal: Originator = TERMINAL_KEYS,
) -> dict[str, str]:
    """The blob a terminal would send for this card and transaction (with the PIN typed on
    the terminal, for an online PIN), sealed under its next DUKPT counter."""
    aad = associated_data(transaction_id, amount_cents, currency)
    return seal(terminal, SensitiveCardData(pan, expiry, pin=pin), aad)


def emv_for(
    pan: str,
    amount_cents: int,
    *,
    issuer_brand: str | None = None,
    currency_code: str = "0978",
    atc: int | None = None,
    **tags: str,
) -> dict[str, str]:
    """The EMV data of a first GENERATE AC as the card ``pan`` makes it, with its ARQC under
    the fixtures' issuer keys of ``issuer_brand`` (default: the catalogue card's brand). The
    ATC is the next of :data:`ATCS` unless given; ``tags`` change data after signing (a
    tampered relay)."""
    if issuer_brand is None:
        profile = CATALOGUE.by_pan(pan)
        issuer_brand = profile.brand if profile is not None else "VISA"
    card = CardCryptography(issuer_brand, KEYS.issuer_keys(issuer_brand), pan)
    emv = {
        # the application the terminal selected: the one the request's brand names
        "4F": "A0000000031010" if pan.startswith("4") else "A0000000041010",
        "5F2A": currency_code,
        "5F34": "00",
        "82": "3900",
        "95": "0000000000",
        "9A": "261203",
        "9C": "00",
        "9F02": f"{amount_cents:012d}",
        "9F03": "000000000000",
        "9F10": card.issuer_application_data,
        "9F1A": "0250",
        "9F27": "80",
        "9F36": f"{next(ATCS) if atc is None else atc:04X}",
        "9F37": "1A2B3C4D",
    }
    emv["9F26"] = card.arqc(emv)
    emv.update(tags)
    return emv


#: Default of :meth:`Backend.request`'s ``key``: a fresh Idempotency-Key per request.
NEW_KEY = "(a new key)"


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # decoded JSON, None when the answer is not JSON
    text: str
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def error_code(self) -> Any:
        return self.body["error"]["code"]


class Backend:
    """A started :class:`BackendServer` with a synchronous client, plus payment-flow helpers."""

    def __init__(
        self,
        runner: asyncio.Runner,
        server: BackendServer,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        self.runner = runner
        self.server = server
        self.session = session
        self.clock = clock
        self.replies: list[Reply] = []

    @property
    def store(self) -> BackendStore:
        return self.server.store

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: str | bytes | None = None,
        key: str | None = NEW_KEY,
    ) -> Reply:
        """One exchange. A mutating request carries a fresh ``Idempotency-Key`` (as the app's
        client sends one per operation) unless ``key`` gives one, or is None: no key."""
        if method in ("GET", "HEAD"):
            key = None
        elif key is NEW_KEY:
            key = str(uuid.uuid4())
        reply = self.runner.run(self._request(method, path, body, raw, key))
        self.replies.append(reply)
        return reply

    async def _request(
        self, method: str, path: str, body: Any, raw: str | bytes | None, key: str | None
    ) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if key is not None:
            headers["Idempotency-Key"] = key
        async with self.session.request(method, path, data=data, headers=headers) as response:
            text = await response.text()
            decoded = json.loads(text) if response.content_type == "application/json" else None
            return Reply(response.status, decoded, text, response.content_type, response.headers)

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        raw: str | bytes | None = None,
        key: str | None = NEW_KEY,
    ) -> Reply:
        return self.request("POST", path, body, raw=raw, key=key)

    def put(
        self,
        path: str,
        body: Any = None,
        *,
        raw: str | bytes | None = None,
        key: str | None = NEW_KEY,
    ) -> Reply:
        return self.request("PUT", path, body, raw=raw, key=key)

    # -- the payment flow, as the phone relays it ---------------------------------------------

    def start_payment(self, number: str, **body: Any) -> Reply:
        return self.post(
            f"/api/invoices/{number}/payments", {"method": "tpe", "terminal_serial": SERIAL, **body}
        )

    def authorisation_body(
        self, payment: Any, pan: str, *, pin: str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "transaction_id": payment["transaction_id"],
            "amount_cents": payment["amount_cents"],
            "currency": payment["currency"],
            "entry_mode": "contactless",
            "brand": "VISA" if pan.startswith("4") else "MASTERCARD",
            "masked_pan": "************" + pan[-4:],
            "card_data": seal_card(
                pan, payment["transaction_id"], payment["amount_cents"], pin=pin
            ),
            "emv": emv_for(pan, payment["amount_cents"]),
        }
        body.update(overrides)
        return body

    def authorise(
        self, payment: Any, pan: str, *, pin: str | None = None, **overrides: Any
    ) -> Reply:
        return self.post(
            f"/api/payments/{payment['payment_id']}/authorisation",
            self.authorisation_body(payment, pan, pin=pin, **overrides),
        )

    def result(self, payment: Any, result: str, **extra: Any) -> Reply:
        return self.post(
            f"/api/payments/{payment['payment_id']}/result",
            {"transaction_id": payment["transaction_id"], "result": result, **extra},
        )

    def pay(self, number: str, pan: str, **authorisation: Any) -> tuple[Any, Reply]:
        """Start, authorise and (if approved) confirm a payment; returns it and the answer."""
        payment = self.start_payment(number).body
        reply = self.authorise(payment, pan, **authorisation)
        assert reply.status == 200, reply.text
        self.result(payment, "approved" if reply.body["approved"] else "declined")
        return payment, reply

    # -- card captures ("prise d'empreinte") and saved cards -----------------------------------

    def start_capture(self, customer_id: str, **body: Any) -> Reply:
        return self.post(
            f"/api/customers/{customer_id}/card-captures", {"terminal_serial": SERIAL, **body}
        )

    def verification_body(
        self, capture: Any, pan: str, *, pin: str | None = None, **overrides: Any
    ) -> dict[str, Any]:
        """The terminal's zero-amount request for ``capture``, card ``pan``."""
        body: dict[str, Any] = {
            "transaction_id": capture["transaction_id"],
            "amount_cents": 0,
            "currency": "EUR",
            "entry_mode": "contactless",
            "brand": "VISA" if pan.startswith("4") else "MASTERCARD",
            "masked_pan": "************" + pan[-4:],
            "card_data": seal_card(pan, capture["transaction_id"], 0, pin=pin),
            "emv": emv_for(pan, 0),
            "cvm": "none",
        }
        body.update(overrides)
        return body

    def verify(self, capture: Any, pan: str, *, pin: str | None = None, **overrides: Any) -> Reply:
        return self.post(
            f"/api/card-captures/{capture['capture_id']}/verification",
            self.verification_body(capture, pan, pin=pin, **overrides),
        )

    def capture_result(self, capture: Any, result: str, **extra: Any) -> Reply:
        return self.post(
            f"/api/card-captures/{capture['capture_id']}/result",
            {"transaction_id": capture["transaction_id"], "result": result, **extra},
        )

    def save_card(self, customer_id: str, pan: str, **verification: Any) -> Reply:
        """Start a capture, verify the card and give the terminal's word (approved if the
        issuer answered 85, declined otherwise); returns the answer to the result."""
        reply = self.start_capture(customer_id)
        assert reply.status == 201, reply.text
        capture = reply.body
        verified = self.verify(capture, pan, **verification)
        assert verified.status == 200, verified.text
        return self.capture_result(capture, "approved" if verified.body["approved"] else "declined")

    def payment_methods(self, customer_id: str) -> Any:
        reply = self.get(f"/api/customers/{customer_id}/payment-methods")
        assert reply.status == 200, reply.text
        return reply.body["payment_methods"]

    def pay_with_token(self, number: str, payment_method_id: str, **body: Any) -> Reply:
        return self.post(
            f"/api/invoices/{number}/token-payments",
            {"payment_method_id": payment_method_id, **body},
        )

    def new_invoice(self, amount_cents: int) -> Invoice:
        customer = self.store.add_customer("M. Paul Girard", city="Villeurbanne")
        day = SCENARIO_NOW.date()
        return self.store.add_invoice(
            customer.id, amount_cents, issue_date=day, due_date=day + timedelta(days=30)
        )

    def invoice(self, number: str) -> Any:
        reply = self.get(f"/api/invoices/{number}")
        assert reply.status == 200, reply.text
        return reply.body


@pytest.fixture
def unknown_pan() -> str:
    return UNKNOWN


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.load(FIXTURES / "cards.yaml")


@pytest.fixture
def clock() -> Clock:
    return Clock(SCENARIO_NOW)


@pytest.fixture
def processor() -> Processor:
    return load_processor(FIXTURES)


@pytest.fixture
def store(clock: Clock) -> BackendStore:
    """The seeded store, with the fixtures' terminal associated."""
    store = seed_store(FIXTURES)
    store.associate_terminal(SERIAL, TERMINAL["model"], TERMINAL["firmware"], clock())
    return store


@pytest.fixture
def invoice(store: BackendStore) -> Invoice:
    """A fresh unpaid invoice of 42,50 €."""
    customer = store.add_customer("Mme Lucie Bernard", city="Lyon")
    day = SCENARIO_NOW.date()
    return store.add_invoice(customer.id, 4250, issue_date=day, due_date=day + timedelta(days=30))


@pytest.fixture
def backend(store: BackendStore, processor: Processor, clock: Clock) -> Iterator[Backend]:
    async def open_session(url: str) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(base_url=url)

    with asyncio.Runner() as runner:
        server = BackendServer(store, processor, now=clock, request_log_size=500)
        runner.run(server.start())
        session = runner.run(open_session(server.url))
        try:
            yield Backend(runner, server, session, clock)
        finally:
            runner.run(session.close())
            runner.run(server.stop())


class SealCard:
    """What the terminal and the card send the processor: :func:`seal_card` when called, and
    :meth:`emv` (:func:`emv_for`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        return seal_card(*args, **kwargs)

    @staticmethod
    def emv(*args: Any, **kwargs: Any) -> dict[str, str]:
        return emv_for(*args, **kwargs)


MakeProcessor = Callable[..., Processor]


@pytest.fixture
def make_processor() -> MakeProcessor:
    """A processor for the fixtures' keys and the issuer cards given."""

    def make(*cards: IssuerCard) -> Processor:
        return Processor(KEYS.bdks, cards, KEYS.issuer_master_keys)

    return make


@pytest.fixture
def seal_for() -> SealCard:
    """:func:`seal_card` and :func:`emv_for`, for tests that build requests themselves."""
    return SealCard()
