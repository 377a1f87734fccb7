"""The terminal has given its word but the backend cannot record it (down, phone offline):
the app keeps the result and records it at the next chance — an approval is never lost, the
customer never pays twice."""

from __future__ import annotations

import pytest

from harness.app import PhoneError
from harness.rig import World, WorldConfig


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

        async def strike(point: str, message: object) -> None:
            if (point, type(message).__name__) != ("sending", "PaymentResponse"):
                return
            world.terminal.message_hooks.remove(strike)
            if fault == "backend_down":
                world.backend.faults.refuse_connections()
            elif fault == "phone_offline":
                world.app.backend.offline = True
            else:
                world.backend.faults.fail("record_result", status=500, times=None)

        world.terminal.message_hooks.append(strike)
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

        async def strike(point: str, message: object) -> None:
            if (point, type(message).__name__) == ("sending", "CardAcquisitionResponse"):
                world.terminal.message_hooks.remove(strike)
                world.backend.faults.refuse_connections()

        world.terminal.message_hooks.append(strike)
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
