"""The fleet: N terminals and N phones on one link and one backend, all paying at once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.fixtures import fixtures_dir
from harness.fleet import (
    Fleet,
    FleetConfig,
    customer_card,
    luhn_digit,
    member_address,
    terminal_profile,
)
from simulator.cards import Catalogue
from simulator.terminal import load_profiles


@pytest.fixture(scope="module")
def paid_fleet() -> Iterator[Fleet]:
    with Fleet(FleetConfig(size=3)) as fleet:
        fleet.pay_all()
        yield fleet


def test_every_invoice_is_paid_and_the_books_hold(paid_fleet: Fleet) -> None:
    assert [m.outcome.result if m.outcome else None for m in paid_fleet.members] == ["approved"] * 3
    assert {inv.status for inv in paid_fleet.store.invoices.values()} == {"paid"}
    assert len(paid_fleet.store.invoices) == 3
    assert paid_fleet.failed == []
    assert paid_fleet.store.check_invariants() == []


def test_each_phone_paired_with_its_own_terminal(paid_fleet: Fleet) -> None:
    for member in paid_fleet.members:
        assert member.app.terminal is not None
        assert member.app.terminal.serial == member.profile.serial
        assert member.app.link is not None
        assert member.app.link.connection.peer_address.to_string(False) == member.profile.address
    registered = set(paid_fleet.store.terminals)
    assert registered == {m.profile.serial for m in paid_fleet.members}


def test_each_payment_went_through_its_own_terminal(paid_fleet: Fleet) -> None:
    for member in paid_fleet.members:
        payments = paid_fleet.store.invoice(member.invoice).payments
        assert [p.terminal_serial for p in payments] == [member.profile.serial]


def test_members_have_distinct_identities() -> None:
    base = load_profiles(fixtures_dir() / "terminals.yaml")["standard"]
    profiles = [terminal_profile(base, i) for i in (1, 2, 300)]
    assert [p.serial for p in profiles] == ["SIM0001-0001", "SIM0001-0002", "SIM0001-0300"]
    assert [p.name for p in profiles] == [
        "TPE-SIM0001-0001",
        "TPE-SIM0001-0002",
        "TPE-SIM0001-0300",
    ]
    assert [p.address for p in profiles] == [
        "C1:00:00:00:00:01",
        "C1:00:00:00:00:02",
        "C1:00:00:00:01:2C",
    ]
    assert member_address(0xC2, 0x123456) == "C2:00:00:12:34:56"
    with pytest.raises(ValueError, match="out of range"):
        member_address(0xC2, 0)


def test_customer_cards_have_their_own_valid_pans() -> None:
    assert luhn_digit("424242424242424") == "2"  # 4242 4242 4242 4242
    assert luhn_digit("37828224631000") == "5"  # 3782 822463 10005
    visa = Catalogue.load(fixtures_dir() / "cards.yaml")["visa"]
    cards = [customer_card(visa, i) for i in (1, 2, 999)]
    assert [c.key for c in cards] == ["visa-0001", "visa-0002", "visa-0999"]
    assert len({c.pan for c in cards} | {visa.pan}) == 4
    for card in cards:
        assert len(card.pan) == len(visa.pan)
        assert card.pan[:6] == visa.pan[:6]
        assert luhn_digit(card.pan[:-1]) == card.pan[-1]


def test_a_fleet_needs_at_least_one_member() -> None:
    with pytest.raises(ValueError, match="fleet size"):
        Fleet(FleetConfig(size=0))


def test_terminals_fresh_from_the_box_are_set_up_then_pay() -> None:
    with Fleet(FleetConfig(size=2, preconfigured=False)) as fleet:
        outcomes = fleet.pay_all()
        assert [o.result for o in outcomes] == ["approved", "approved"]
        assert all(m.terminal.engine.configured for m in fleet.members)
        assert fleet.store.check_invariants() == []
        assert fleet.loop_elapsed >= fleet.profiles[0].configuration_seconds
