"""The terminal has given its word but the backend cannot record it (down, phone offline):
the app keeps the result and records it at the next chance — an approval is never lost, the
customer never pays twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from harness.app import PhoneError
from harness.backend.store import AUTHORISATION_HOLD
from harness.rig import World, WorldConfig


def refuse_connections(world: World) -> Callable[[], Awaitable[None]]:
    """A fault for :meth:`World.at_moment`: the backend stops answering."""

    async def action() -> None:
        world.backend.faults.refuse_connections()

    return action


def small_unpaid(world: World, *, other_than: str | None = None) -> str:
    return next(
        inv.number
        for inv in world.store.invoices.values()
        if inv.status == "unpaid" and inv.balance_due_cents <= 5000 and inv.number != other_than
    )


@pytest.mark.parametrize("fault", ["backend_down", "phone_offline", "server_error"])
def test_an_approval_the_backend_did_not_record_is_recorded_at_the_next_payment(
    fault: str,
) -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = small_unpaid(world)

        async def strike() -> None:
            if fault == "backend_down":
                world.backend.faults.refuse_connections()
            elif fault == "phone_offline":
                world.app.backend.offline = True
            else:
                world.backend.faults.fail("record_result", status=500, times=None)

        world.at_moment("result_ready", strike)  # the terminal decided, the phone not told
        world.start_payment(number)
        world.tap("visa")
        with pytest.raises(PhoneError) as not_recorded:
            world.finish_payment()
        assert not_recorded.value.code == "result_not_recorded"
        assert (
            "Paiement accepté sur le terminal, mais pas encore enregistré" in (world.app.screen[-1])
        )
        assert "ne relancez pas le paiement" in world.app.screen[-1]
        assert [p.status for p in world.store.invoice(number).payments] == ["authorised"]
        assert len(world.app.unsettled) == 1

        world.restart_app()  # kept in the app's state file, across a restart
        assert len(world.app.unsettled) == 1
        world.backend.faults.clear()
        world.app.backend.offline = False
        other = small_unpaid(world, other_than=number)
        world.start_payment(other)  # the next flow records the earlier result first
        assert world.store.invoice(number).status == "paid"
        assert [p.status for p in world.store.invoice(number).payments] == ["captured"]
        assert world.store.invoice(number).payments[0].receipts is not None
        assert world.app.unsettled == []
        world.tap("visa")
        assert world.finish_payment().invoice["status"] == "paid"
        assert world.store.check_invariants(settled=True) == []


def test_a_card_the_backend_did_not_save_is_saved_at_the_next_operation() -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        customer = next(iter(world.store.customers))

        world.at_moment("result_ready", refuse_connections(world))
        world.start_capture(customer)
        world.tap("visa")
        with pytest.raises(PhoneError) as not_recorded:
            world.finish_capture()
        assert not_recorded.value.code == "result_not_recorded"
        assert world.store.customer_payment_methods(customer) == []
        world.backend.faults.clear()
        world.start_capture(customer)  # settles first: the card is saved once
        assert len(world.store.customer_payment_methods(customer)) == 1
        world.tap("visa")
        outcome = world.finish_capture()
        assert outcome.duplicate  # the same card again: kept once
        assert len(world.store.customer_payment_methods(customer)) == 1
        assert world.store.check_invariants(settled=True) == []


def approve_unrecorded(world: World, number: str) -> None:
    """The customer pays; the terminal approves; the backend cannot record it."""

    world.at_moment("result_ready", refuse_connections(world))
    world.start_payment(number)
    world.tap("visa")
    with pytest.raises(PhoneError) as not_recorded:
        world.finish_payment()
    assert not_recorded.value.code == "result_not_recorded"


def test_a_known_approval_is_recorded_as_approved_even_from_another_terminal() -> None:
    """The app holds the terminal's word: it records that, whatever another terminal's
    journal (which never saw the transaction) says."""
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = small_unpaid(world)
        approve_unrecorded(world, number)
        world.backend.faults.clear()
        world.switch_off_terminal()
        world.add_terminal("mise_a_jour")
        world.run(world.app.associate_terminal("TPE-SIM0002"))
        other = small_unpaid(world, other_than=number)
        world.run(world.app.settle_unsettled())
        assert world.store.invoice(number).status == "paid"
        assert world.store.invoice(number).payments[0].receipts is not None
        assert world.app.unsettled == []
        assert world.store.invoice(other).status == "unpaid"


def test_the_same_invoice_is_not_paid_again_while_its_approval_is_unrecorded() -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = small_unpaid(world)
        approve_unrecorded(world, number)
        world.backend.faults.accept_connections()
        world.backend.faults.fail("record_result", status=503, times=None)  # still failing
        world.wait(11 * 60)  # longer than the backend's hold of an unconfirmed approval
        with pytest.raises(PhoneError) as refused:
            world.run(world.app.pay_invoice(number))
        assert refused.value.code == "previous_payment_unsettled"
        assert world.terminal.engine.current is None or (
            world.terminal.engine.current.transaction_id
            == world.store.invoice(number).payments[0].transaction_id
        )  # the customer was never asked for the card again
        assert len(world.store.invoice(number).payments) == 1


def test_an_approval_that_lapsed_before_it_was_recorded_is_said_in_french() -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = small_unpaid(world)
        approve_unrecorded(world, number)
        world.backend.faults.clear()
        world.wait(11 * 60)
        other = small_unpaid(world, other_than=number)
        # another payment of the same invoice by a colleague's phone lapses the hold first
        world.store.start_tpe_payment(number, None, "SIM0001", world.calendar())
        world.start_payment(other)
        said = [line for line in world.app.screen if "en suspens de la facture" in line]
        assert said == [
            f"Paiement en suspens de la facture {number} : l'accord de la banque a expiré "
            "avant d'être enregistré, rien n'a été débité. La facture reste à payer."
        ]
        assert world.app.unsettled == []


def test_a_result_recorded_whose_invoice_cannot_be_read_is_not_called_unrecorded() -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = small_unpaid(world)

        async def invoice_unreadable() -> None:
            world.backend.faults.fail("get_invoice", status=503, times=None)

        world.at_moment("result_ready", invoice_unreadable)
        world.start_payment(number)
        world.tap("visa")
        outcome = world.finish_payment()
        assert outcome.result == "approved"
        assert world.store.invoice(number).status == "paid"
        assert world.app.unsettled == []
        assert world.app.screen[-1].startswith("Paiement accepté et enregistré")


def test_a_cancelled_approval_the_backend_could_not_record_says_nothing_is_charged() -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = small_unpaid(world)

        async def red_key() -> None:  # the customer changes their mind
            world.terminal.press_key("red")

        world.at_moment("authorisation_request_sent", red_key)
        world.at_moment("result_ready", refuse_connections(world))
        world.start_payment(number)
        world.tap("visa")
        with pytest.raises(PhoneError) as not_recorded:
            world.finish_payment()
        assert not_recorded.value.code == "result_not_recorded"
        assert "Paiement annulé sur le terminal : rien n'est débité" in world.app.screen[-1]
        assert "ne relancez pas" not in world.app.screen[-1]
        world.backend.faults.clear()
        world.start_payment(number)  # the held approval is released first, then paid once
        world.tap("visa")
        assert world.finish_payment().invoice["status"] == "paid"
        statuses = [p.status for p in world.store.invoice(number).payments]
        assert statuses == ["reversed", "captured"]
        assert world.store.check_invariants(settled=True) == []


def test_an_approval_nobody_ever_confirms_lapses_on_its_own_after_the_hold() -> None:
    """The phone stays out of reach for an hour after the bank approved: nobody touches the
    invoice again, yet the issuer lets the hold lapse after 10 minutes — no money stays held
    on an unpaid invoice."""
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = small_unpaid(world)

        async def out_of_reach() -> None:
            await world.out_of_range_now(3600)

        world.at_moment("authorisation_request_sent", out_of_reach)
        world.start_payment(number)
        world.tap("visa")
        with pytest.raises(PhoneError):
            world.finish_payment()
        held = world.store.invoice(number).payments
        assert [p.status for p in held] == ["authorised"]  # the app could not say anything
        world.wait(AUTHORISATION_HOLD.total_seconds() + 5)
        assert [p.status for p in held] == ["reversed"]
        assert world.store.invoice(number).status == "unpaid"
        assert world.store.check_invariants(settled=True) == []
