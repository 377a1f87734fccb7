"""The virtual app's flows when things go wrong: lost links, refused pairing, double taps."""

from __future__ import annotations

import pytest

from harness.app import PhoneError
from harness.rig import World, WorldConfig
from simulator.terminal import State


def small_unpaid(world: World) -> str:
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    return number


def test_link_lost_while_waiting_for_the_card_is_noticed_at_once_and_charges_nothing() -> None:
    with World() as world:
        world.associate()
        number = small_unpaid(world)
        world.start_payment(number)
        link = world.app.link
        assert link is not None
        started = world.loop_elapsed
        world.run(link.disconnect())
        with pytest.raises(PhoneError) as lost:
            world.finish_payment()
        assert lost.value.code == "link_lost"
        assert world.loop_elapsed - started < 5.0  # not the 180 s payment timeout
        assert "Connexion Bluetooth perdue" in world.app.screen[-1]
        invoice = world.store.invoice(number)
        assert invoice.status == "unpaid"
        assert [p.status for p in invoice.payments] == ["aborted"]
        # the terminal gives up on its own when the card never comes
        world.wait(world.config.timeouts.card_presentation + world.config.timeouts.result_display)
        assert world.terminal.engine.state is State.IDLE
        # and the technician can pay again: the app reconnects
        world.start_payment(number)
        world.tap("visa")
        assert world.finish_payment().invoice["status"] == "paid"


def test_a_second_payment_while_one_is_running_is_refused_and_the_first_goes_on() -> None:
    with World() as world:
        world.associate()
        first = small_unpaid(world)
        second = next(
            i.number
            for i in world.store.invoices.values()
            if i.status == "unpaid" and i.number != first
        )
        world.start_payment(first)
        with pytest.raises(PhoneError) as refused:
            world.start_payment(second)
        assert refused.value.code == "payment_in_progress"
        world.tap("visa")
        assert world.finish_payment().invoice_number == first
        assert world.store.invoice(first).status == "paid"
        assert world.store.invoice(second).payments == []


@pytest.mark.parametrize("answer", ["refuse_on_phone", "refuse_on_terminal"])
def test_a_refused_pairing_can_be_retried(answer: str) -> None:
    config = WorldConfig(pairing_answer=answer)  # type: ignore[arg-type]
    with World(config) as world:
        with pytest.raises(PhoneError):
            world.associate()
        assert world.terminal._links == {}  # the half-open link was closed
        world.config.pairing_answer = "confirm"
        world.associate()
        assert world.app.terminal is not None
        assert world.app.terminal.serial in world.store.terminals
