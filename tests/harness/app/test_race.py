"""Two technicians, two terminals, one invoice, at the same moment: one payment.

Each seed shifts who presses "Déclencher un paiement" first and when the customer taps, by a
few hundred milliseconds of loop time; whatever the interleaving, the invoice is paid once,
the other phone is told why it cannot pay, and the backend's books hold.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from harness.app import InvoicingApp, PaymentOutcome, PhoneError
from harness.rig import World, WorldConfig
from simulator.ble import BleTerminal
from simulator.cards import EntryMode
from simulator.terminal import State

#: what the phone that loses the race may be told (French messages from the backend)
LOSING_CODES = {"invoice_payment_in_progress", "invoice_already_paid", "payment_in_progress"}


@pytest.mark.parametrize("seed", range(10))
def test_two_phones_paying_the_same_invoice_at_once_make_one_payment(seed: int) -> None:
    rng = random.Random(seed)
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        second = world.add_terminal("code_a_saisir")
        colleague = world.add_phone(2)
        world.run(colleague.associate_terminal(second.engine.profile.name))
        number = world.unpaid_invoice(at_most_cents=5000)
        assert number is not None

        async def pay(app: InvoicingApp, delay: float) -> PaymentOutcome:
            await asyncio.sleep(delay)
            return await app.pay_invoice(number)

        flows = [
            world.spawn(pay(world.app, rng.uniform(0.0, 0.5))),
            world.spawn(pay(colleague, rng.uniform(0.0, 0.5))),
        ]
        terminals: list[BleTerminal] = [world.terminal, second]
        tapped: set[str] = set()

        def waiting() -> list[BleTerminal]:
            return [
                t
                for t in terminals
                if t.engine.state is State.WAITING_FOR_CARD
                and t.engine.current is not None
                and t.engine.current.transaction_id not in tapped
            ]

        while not all(flow.done() for flow in flows):
            world.run(
                world.wait_until(
                    lambda: all(f.done() for f in flows) or bool(waiting()), "a card request", 600
                )
            )
            for terminal in waiting():
                assert terminal.engine.current is not None
                tapped.add(terminal.engine.current.transaction_id)
                world.wait(rng.uniform(0.0, 2.0))  # the customer reaches for the card
                terminal.present_card(world.card("visa"), EntryMode.CONTACTLESS)

        outcomes, refusals = [], []
        for flow in flows:
            try:
                outcomes.append(flow.result())
            except PhoneError as error:
                refusals.append(error)
        invoice = world.store.invoice(number)
        captured = [p for p in invoice.payments if p.status == "captured"]
        assert len(captured) == 1, [(p.id, p.status) for p in invoice.payments]
        assert invoice.status == "paid"
        assert [o.result for o in outcomes] == ["approved"]  # one phone paid...
        assert len(refusals) == 1  # ...the other was told why not, in French
        assert refusals[0].code in LOSING_CODES, refusals[0].code
        assert f"La facture {number}" in refusals[0].message
        assert len(tapped) == 1  # only one customer was ever asked for the card
        assert world.store.check_invariants(settled=True) == []
