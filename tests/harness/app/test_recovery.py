"""A link loss at every protocol step of a payment and of a card capture.

For each flow, a clean run records every step a message takes through the terminal's edge
(a command received, an event about to be sent, an event sent) in each terminal state. Then,
for each of those steps, a new world cuts the Bluetooth link exactly there, once; the app
reconnects, asks the terminal's journal, and the flow ends. Whatever the step, money and
records agree: exactly one approved payment or none, never an invoice paid without money,
never money without the invoice paid; a card saved only if the terminal said so.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import pytest

from harness.app import PhoneError
from harness.rig import World, WorldConfig
from simulator.ble.terminal import HookPoint
from simulator.cards import EntryMode
from simulator.protocol.messages import (
    CardAcquisitionResponse,
    Command,
    DisplayUpdate,
    Event,
    PaymentResponse,
)
from simulator.terminal import State

#: (point, message type, terminal state when it happened): one protocol step
Step = tuple[HookPoint, str, str]


@dataclass(frozen=True)
class Flow:
    name: str
    card: str
    mode: EntryMode
    pin: str | None
    capture: bool = False

    def start(self, world: World) -> Coroutine[Any, Any, object]:
        if self.capture:
            customer = next(iter(world.store.customers))
            return world.app.capture_card(customer)
        limit = 5000 if self.mode is EntryMode.CONTACTLESS else None
        number = next(
            inv.number
            for inv in world.store.invoices.values()
            if inv.status == "unpaid"
            and (limit is None or inv.balance_due_cents <= limit)
            and (limit is not None or inv.balance_due_cents > 5000)
        )
        return world.app.pay_invoice(number)


FLOWS = {
    "sans_contact": Flow("sans_contact", "visa", EntryMode.CONTACTLESS, None),
    "puce_et_code": Flow("puce_et_code", "offline_pin", EntryMode.CHIP, "1234"),
    "empreinte": Flow("empreinte", "visa", EntryMode.CONTACTLESS, None, capture=True),
}


def new_world() -> World:
    world = World(WorldConfig(preconfigured=True))
    world.open()
    world.associate()
    return world


def play(world: World, flow: Flow) -> tuple[object, list[str]]:
    """Run ``flow`` with a cardholder who presents the card and types the PIN whenever the
    terminal asks; returns the flow's outcome (or the PhoneError it ended with)."""
    task = world.spawn(flow.start(world))
    engine = world.terminal.engine
    done: set[tuple[str, State]] = set()

    def needs_cardholder() -> bool:
        current = engine.current
        key = (current.transaction_id if current else "", engine.state)
        return engine.state in (State.WAITING_FOR_CARD, State.PIN_ENTRY) and key not in done

    while True:
        world.run(
            world.wait_until(
                lambda: task.done() or needs_cardholder(), "the flow or the cardholder", 900.0
            )
        )
        if task.done():
            break
        current = engine.current
        assert current is not None
        done.add((current.transaction_id, engine.state))
        if engine.state is State.WAITING_FOR_CARD:
            world.terminal.present_card(world.card(flow.card), flow.mode)
        else:
            assert flow.pin is not None
            world.terminal.enter_pin(flow.pin)
    # the terminal's own timers end whatever it still holds (result display)
    world.wait(world.config.timeouts.authorisation + world.config.timeouts.result_display)
    try:
        return task.result(), list(world.app.screen)
    except PhoneError as error:
        return error, list(world.app.screen)


def record_steps(flow: Flow) -> list[Step]:
    world = new_world()
    steps: list[Step] = []

    finished: list[bool] = []

    async def record(point: HookPoint, message: Command | Event) -> None:
        step = (point, type(message).__name__, world.terminal.engine.state.value)
        if step not in steps and not finished:
            steps.append(step)
        if point == "sent" and isinstance(message, PaymentResponse | CardAcquisitionResponse):
            finished.append(True)  # what follows (idle screen) is after the flow

    try:
        world.terminal.message_hooks.append(record)
        outcome, _ = play(world, flow)
        assert getattr(outcome, "result", None) == "approved", outcome  # the clean run pays
    finally:
        world.close()
    return steps


STEPS = {name: record_steps(flow) for name, flow in FLOWS.items()}
CASES = [
    pytest.param(name, step, id=f"{name}-{step[0]}-{step[1]}-{step[2]}")
    for name, steps in STEPS.items()
    for step in steps
    # a screen update is a step too, but one per terminal state is enough
    if step[1] != DisplayUpdate.__name__ or step[0] == "sending"
]


def test_the_walk_covers_every_step_that_matters() -> None:
    """The cases below include the four moments the issue names, for payments and captures."""
    for name in ("sans_contact", "puce_et_code", "empreinte"):
        steps = set(STEPS[name])
        final = "CardAcquisitionResponse" if name == "empreinte" else "PaymentResponse"
        command = "CardAcquisitionRequest" if name == "empreinte" else "PaymentRequest"
        assert ("received", command, "idle") in steps  # before the card
        assert ("sent", "AuthorisationRequest", "authorising") in steps  # request left
        assert ("received", "AuthorisationResponse", "authorising") in steps
        assert ("sending", final, "approved") in steps  # approved, phone not told
    assert ("sending", "DisplayUpdate", "pin_entry") in STEPS["puce_et_code"]  # during PIN


def cut_link_at(world: World, wanted: Step) -> Callable[[], bool]:
    """Cut the link the first time the terminal reaches ``wanted``; tells whether it did."""
    cut: list[bool] = []

    async def hook(point: HookPoint, message: Command | Event) -> None:
        step = (point, type(message).__name__, world.terminal.engine.state.value)
        if step == wanted and not cut:
            cut.append(True)
            await world.terminal.drop_links()

    world.terminal.message_hooks.append(hook)
    return lambda: bool(cut)


@pytest.mark.parametrize(("flow_name", "step"), CASES)
def test_a_link_lost_at_any_step_ends_with_one_payment_or_none(flow_name: str, step: Step) -> None:
    flow = FLOWS[flow_name]
    world = new_world()
    try:
        was_cut = cut_link_at(world, step)
        outcome, screen = play(world, flow)
        assert was_cut(), f"the link was never cut at {step}"
        assert any("Liaison perdue" in line for line in screen), screen
        journal = world.terminal.engine.journal
        assert len(journal) <= 1
        terminal_says = next(iter(journal.values())).state if journal else None
        store = world.store
        assert store.check_invariants(settled=True) == []
        if flow.capture:
            saved = list(store.payment_methods.values())
            assert len(saved) == (1 if terminal_says is State.APPROVED else 0)
            assert getattr(outcome, "saved", False) == bool(saved)
        else:
            invoice = next(inv for inv in store.invoices.values() if inv.payments)
            captured = [p for p in invoice.payments if p.status == "captured"]
            assert len(captured) <= 1
            # the terminal's word and the money agree
            assert bool(captured) == (terminal_says is State.APPROVED), (
                terminal_says,
                [(p.id, p.status) for p in invoice.payments],
            )
            assert (invoice.status == "paid") == bool(captured)
            assert not [p for p in invoice.payments if p.status in ("authorised", "pending")]
            # and the app told the technician what happened
            assert getattr(outcome, "result", None) == (
                "approved" if captured else getattr(outcome, "result", None)
            )
            if captured:
                assert getattr(outcome, "receipt", None), "an approved payment has its receipt"
        # the terminal is usable again
        assert world.terminal.engine.state is State.IDLE
    finally:
        world.close()


def test_a_link_lost_for_good_leaves_an_approval_unsettled_then_settles_it() -> None:
    """The approval reached the terminal, then the terminal went out of reach for longer than
    the app keeps trying: the app says the outcome is unknown, keeps it, and settles it with
    the terminal's journal at the next connection — the invoice ends paid, once."""
    world = new_world()
    try:
        number = next(
            inv.number
            for inv in world.store.invoices.values()
            if inv.status == "unpaid" and inv.balance_due_cents <= 5000
        )

        async def switch_off(point: HookPoint, message: Command | Event) -> None:
            if (point, type(message).__name__) == ("sending", "PaymentResponse"):
                world.terminal.message_hooks.clear()
                await world.terminal.drop_links()  # the result never reaches the phone
                world.spawn(world.terminal.stop())  # and the terminal goes off

        world.terminal.message_hooks.append(switch_off)
        task = world.spawn(world.app.pay_invoice(number))
        world.run(
            world.wait_until(
                lambda: world.terminal.engine.state is State.WAITING_FOR_CARD,
                "the card request",
                60,
            )
        )
        world.terminal.present_card(world.card("visa"), EntryMode.CONTACTLESS)
        world.run(world.wait_until(task.done, "the payment to end", 900))
        with pytest.raises(PhoneError) as unknown:
            task.result()
        assert unknown.value.code == "outcome_unknown"
        assert "Résultat du paiement inconnu" in world.app.screen[-1]
        assert [p.status for p in world.store.invoice(number).payments] == ["authorised"]
        assert len(world.app.unsettled) == 1

        world.restart_terminal()  # back on: its journal says approved
        other = next(
            inv.number
            for inv in world.store.invoices.values()
            if inv.status == "unpaid" and inv.number != number and inv.balance_due_cents <= 5000
        )
        world.start_payment(other)  # the next flow settles the earlier one first
        assert any("en suspens de la facture" in line for line in world.app.screen)
        assert world.app.unsettled == []
        assert world.store.invoice(number).status == "paid"
        assert [p.status for p in world.store.invoice(number).payments] == ["captured"]
        world.tap("visa")
        assert world.finish_payment().invoice["status"] == "paid"
        assert world.store.check_invariants(settled=True) == []
    finally:
        world.close()
