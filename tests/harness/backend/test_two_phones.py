"""Two phones, one invoice: a payment under way on one terminal keeps its invoice (the other
phone is told it is being paid, or paid), and whatever the interleaving, and whatever answers
are lost on the way, the invoice is paid once.

The races run the real backend and the app's real clients on a virtual-time loop (looptime),
each phone waiting seeded random loop-time delays between its steps: thirty seeds cost well
under a second of wall time."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import looptime
import pytest

from harness.app.backend_client import BackendClient, BackendError, RetryPolicy
from harness.backend import BackendServer, BackendStore, load_processor, seed_store
from harness.backend.faults import Fault
from harness.backend.store import AUTHORISATION_HOLD, PENDING_HOLD, Invoice
from harness.keys import load_keys
from simulator.protocol.dukpt import Originator

if TYPE_CHECKING:
    from tests.harness.backend.conftest import Backend, SealCard

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
KEYS = load_keys(FIXTURES)
VISA = "4242424242424242"
SCENARIO_NOW = datetime(2026, 12, 3, 9, 30, tzinfo=timezone(timedelta(hours=1)))
#: the two phones' terminals, each with its DUKPT originator for the whole session (no
#: counter used twice)
ORIGINATORS = {serial: Originator(*KEYS.terminal_keys(serial)) for serial in ("SIM0001", "SIM0002")}
LOSER_CODES = {"invoice_payment_in_progress", "invoice_already_paid"}
SEEDS = range(30)
T = TypeVar("T")


def assert_error(reply: Any, status: int, code: str) -> None:
    assert (reply.status, reply.error_code) == (status, code), reply.text
    assert reply.body["error"]["message"]


# -- the rule, request by request ---------------------------------------------------------------


@pytest.fixture
def second_terminal(backend: Backend) -> str:
    backend.store.associate_terminal("SIM0002", "TPE-BLE-1", "1.4.2", backend.clock())
    return "SIM0002"


def test_another_terminal_cannot_take_a_payment_waiting_for_a_card(
    backend: Backend, invoice: Invoice, second_terminal: str
) -> None:
    first = backend.start_payment(invoice.number).body
    stolen = backend.start_payment(invoice.number, terminal_serial=second_terminal)
    assert_error(stolen, 409, "invoice_payment_in_progress")
    assert stolen.body["error"]["message"].startswith(
        f"La facture {invoice.number} est en cours de paiement sur un autre terminal"
    )
    assert [p.status for p in invoice.payments] == ["pending"]
    assert backend.authorise(first, VISA).body["approved"] is True  # the first goes on


def test_the_same_terminal_replaces_its_own_waiting_payment(
    backend: Backend, invoice: Invoice
) -> None:
    backend.start_payment(invoice.number)
    assert backend.start_payment(invoice.number).status == 201  # the app restarted
    assert [p.status for p in invoice.payments] == ["aborted", "pending"]


def test_an_abandoned_payment_no_longer_holds_the_invoice(
    backend: Backend, invoice: Invoice, second_terminal: str
) -> None:
    abandoned = backend.start_payment(invoice.number).body
    backend.clock.now += PENDING_HOLD - timedelta(seconds=1)
    assert backend.start_payment(invoice.number, terminal_serial=second_terminal).status == 409
    backend.clock.now += timedelta(seconds=1)
    fresh = backend.start_payment(invoice.number, terminal_serial=second_terminal)
    assert fresh.status == 201
    assert [p.status for p in invoice.payments] == ["aborted", "pending"]
    assert_error(backend.authorise(abandoned, VISA), 409, "already_authorised")


def test_money_held_for_another_terminal_keeps_the_invoice_too(
    backend: Backend, invoice: Invoice, second_terminal: str
) -> None:
    held = backend.start_payment(invoice.number).body
    assert backend.authorise(held, VISA).body["approved"] is True
    backend.clock.now += PENDING_HOLD * 2  # longer than a card wait, within the hold
    other = backend.start_payment(invoice.number, terminal_serial=second_terminal)
    assert_error(other, 409, "invoice_payment_in_progress")
    # on its own terminal: the terminal's word must come first, as before
    assert_error(backend.start_payment(invoice.number), 409, "payment_in_progress")


def test_a_payment_waiting_for_the_pin_after_a_soft_decline_keeps_the_invoice(
    backend: Backend, invoice: Invoice, second_terminal: str
) -> None:
    backend.start_payment(invoice.number)
    waiting = invoice.payments[0]
    waiting.status, waiting.response_code = "declined", "1A"  # insert the card, type the PIN
    other = backend.start_payment(invoice.number, terminal_serial=second_terminal)
    assert_error(other, 409, "invoice_payment_in_progress")
    waiting.terminal_result = "declined"  # the terminal gave its final word
    assert backend.start_payment(invoice.number, terminal_serial=second_terminal).status == 201


def test_the_invoice_says_when_a_payment_is_under_way(backend: Backend, invoice: Invoice) -> None:
    def in_progress() -> bool:
        flag = backend.invoice(invoice.number)["payment_in_progress"]
        assert isinstance(flag, bool)
        return flag

    assert in_progress() is False
    payment = backend.start_payment(invoice.number).body
    assert in_progress() is True
    backend.clock.now += PENDING_HOLD
    assert in_progress() is False  # abandoned
    payment = backend.start_payment(invoice.number).body
    assert backend.authorise(payment, VISA).body["approved"] is True
    assert in_progress() is True
    backend.clock.now += AUTHORISATION_HOLD + timedelta(seconds=1)
    assert in_progress() is False  # the approval lapsed
    backend.clock.now = backend.clock.now - AUTHORISATION_HOLD  # back within the hold
    backend.result(payment, "approved")
    assert in_progress() is False
    assert backend.invoice(invoice.number)["status"] == "paid"
    listed = backend.get("/api/invoices").body["invoices"]
    assert all(isinstance(i["payment_in_progress"], bool) for i in listed)


# -- the race ------------------------------------------------------------------------------------


@dataclass
class Phone:
    serial: str
    client: BackendClient
    rng: random.Random
    refused: str | None = None  # the code the backend refused the payment with
    result: str | None = None  # the payment's status after the terminal's word


class Race:
    """The backend and two phones' clients on one virtual-time loop; an invoice of 42,50 €."""

    def __init__(self, seed: int, seal: SealCard) -> None:
        self.seed = seed
        self.seal = seal
        self.loop = looptime.new_event_loop(start=0.0)
        self.store: BackendStore = seed_store(FIXTURES)
        day = SCENARIO_NOW.date()
        for serial in ORIGINATORS:
            self.store.associate_terminal(serial, "TPE-BLE-1", "1.4.2", SCENARIO_NOW)
        customer = self.store.add_customer("Mme Lucie Bernard", city="Lyon")
        self.invoice = self.store.add_invoice(
            customer.id, 4250, issue_date=day, due_date=day + timedelta(days=30)
        )
        self.server = BackendServer(
            self.store,
            load_processor(FIXTURES),
            now=lambda: SCENARIO_NOW + timedelta(seconds=self.loop.time()),
        )
        self.run(self.server.start())
        self.phones = [
            Phone(
                serial,
                BackendClient(
                    self.server.url,
                    RetryPolicy(request_timeout=5.0),
                    rng=random.Random(f"{seed}/{serial}/backoff"),
                ),
                random.Random(f"{seed}/{serial}"),
            )
            for serial in ORIGINATORS
        ]

    def run(self, coroutine: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coroutine

        return self.loop.run_until_complete(wrapped())

    def close(self) -> None:
        for phone in self.phones:
            self.run(phone.client.close())
        self.run(self.server.stop())
        self.loop.close()

    def arm_a_fault(self) -> Fault:
        """One fault on one step of the flow, drawn from the seed: an error before the store,
        an answer lost after it (503 or a cut connection), or an answer slower than the
        client's 5-second timeout; once or twice."""
        rng = random.Random(f"{self.seed}/fault")
        route = rng.choice(["create_payment", "authorise_payment", "record_result"])
        times = rng.randint(1, 2)
        faults = self.server.faults
        match rng.choice(["fail", "lost", "cut", "slow"]):
            case "fail":
                return faults.fail(route, status=rng.choice([502, 503, 504]), times=times)
            case "lost":
                return faults.fail_after(route, status=503, times=times)
            case "cut":
                return faults.fail_after(route, status=None, times=times)
            case _:
                return faults.delay(route, seconds=8.0, times=times)

    async def pay(self, phone: Phone) -> None:
        """One phone's flow, with the technician's and the customer's hesitations."""
        client, rng = phone.client, phone.rng
        await asyncio.sleep(rng.uniform(0, 8))  # the technician opens the invoice
        try:
            payment = await client.create_payment(self.invoice.number, phone.serial)
        except BackendError as error:
            phone.refused = error.code
            return
        payment_id, transaction_id = payment["payment_id"], payment["transaction_id"]
        await asyncio.sleep(rng.uniform(0, 4))  # the customer taps the card
        amount = payment["amount_cents"]
        decision = await client.authorise(
            payment_id,
            {
                "transaction_id": transaction_id,
                "amount_cents": amount,
                "currency": payment["currency"],
                "entry_mode": "contactless",
                "brand": "VISA",
                "masked_pan": "************" + VISA[-4:],
                "card_data": self.seal(
                    VISA, transaction_id, amount, terminal=ORIGINATORS[phone.serial]
                ),
                "emv": self.seal.emv(VISA, amount),
            },
        )
        await asyncio.sleep(rng.uniform(0, 1))  # the terminal shows its verdict
        verdict = "approved" if decision["approved"] else "declined"
        answer = await client.report_result(payment_id, transaction_id, verdict)
        phone.result = answer["payment"]["status"]

    def race(self) -> list[Phone]:
        async def both() -> None:
            await asyncio.gather(*(self.pay(phone) for phone in self.phones))

        self.run(both())
        return self.phones

    def check_paid_once(self, context: str) -> tuple[Phone, Phone]:
        """Exactly one captured payment, the invoice paid once, nothing wrong in the store;
        returns (winner, loser)."""
        captured = [p for p in self.invoice.payments if p.status == "captured"]
        assert len(captured) == 1, (context, self.invoice.payments)
        assert self.invoice.status == "paid", context
        assert self.invoice.balance_due_cents == 0, context
        assert self.store.check_invariants() == [], context
        winners = [p for p in self.phones if p.result == "captured"]
        losers = [p for p in self.phones if p.result is None]
        assert len(winners) == len(losers) == 1, (context, self.phones)
        assert losers[0].refused in LOSER_CODES, (context, losers[0])
        return winners[0], losers[0]


@pytest.fixture
def race(request: pytest.FixtureRequest, seal_for: SealCard) -> Iterator[Race]:
    race = Race(request.param, seal_for)
    try:
        yield race
    finally:
        race.close()


@pytest.mark.parametrize("race", SEEDS, indirect=True)
def test_two_phones_paying_one_invoice_at_once_pay_it_once(race: Race) -> None:
    race.race()
    race.check_paid_once(f"seed {race.seed}")


@pytest.mark.parametrize("race", SEEDS, indirect=True)
def test_two_phones_racing_through_backend_faults_pay_it_once(race: Race) -> None:
    fault = race.arm_a_fault()
    race.race()
    race.check_paid_once(f"seed {race.seed}: {fault}")
    assert fault.hits >= 1, f"the fault never struck: {fault}"  # the winner passes every step


def test_the_seeds_cover_both_ways_of_losing(seal_for: SealCard) -> None:
    """The interleavings are varied: across the seeds, the loser is told both that the
    invoice is being paid and that it is already paid."""
    seen = set()
    for seed in SEEDS:
        race = Race(seed, seal_for)
        try:
            race.race()
            _, loser = race.check_paid_once(f"seed {seed}")
            seen.add(loser.refused)
        finally:
            race.close()
    assert seen == LOSER_CODES
