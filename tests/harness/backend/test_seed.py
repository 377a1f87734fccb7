from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from freezegun import freeze_time

from harness.backend import load_processor, seed_store
from harness.backend.processor import AuthorisationRequest, CardState, IssuerCard
from harness.backend.seed import FixtureError, issuer_card, load_seed_settings, processor_from
from harness.keys import load_keys
from simulator.cards import CardProfile, Catalogue, CatalogueError

if TYPE_CHECKING:
    from tests.harness.backend.conftest import SealCard

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
UTC_PLUS_ONE = timezone(timedelta(hours=1))
SCENARIO = datetime(2026, 12, 3, 9, 30, tzinfo=UTC_PLUS_ONE)


def test_same_seed_gives_the_same_data() -> None:
    assert repr(seed_store(FIXTURES, seed=7)) == repr(seed_store(FIXTURES, seed=7))


def test_other_seed_gives_other_data() -> None:
    first, second = seed_store(FIXTURES, seed=7), seed_store(FIXTURES, seed=8)
    assert [c.name for c in first.customers.values()] != [c.name for c in second.customers.values()]
    assert [i.amount_cents for i in first.invoices.values()] != [
        i.amount_cents for i in second.invoices.values()
    ]


def test_data_does_not_depend_on_the_machine_clock() -> None:
    with freeze_time("2031-05-17 23:59:00"):
        later = repr(seed_store(FIXTURES))
    with freeze_time("2020-01-01 00:00:00"):
        earlier = repr(seed_store(FIXTURES))
    assert later == earlier


def test_defaults_come_from_merchant_yaml() -> None:
    settings = load_seed_settings(FIXTURES)
    store = seed_store(FIXTURES)
    assert settings.scenario_date == SCENARIO
    assert store.merchant.name == "Plomberie Durand"
    assert store.billing.tpe_enabled is True
    assert len(store.customers) == settings.customers
    assert len(store.invoices) == settings.customers * settings.invoices_per_customer
    assert repr(store) == repr(seed_store(FIXTURES, seed=settings.faker_seed))


def test_customers_look_french_and_are_numbered() -> None:
    store = seed_store(FIXTURES)
    assert list(store.customers) == ["C-0001", "C-0002", "C-0003", "C-0004", "C-0005"]
    for customer in store.customers.values():
        assert customer.name
        assert customer.address
        assert customer.city
        assert "@" in customer.email
        assert len(customer.postcode) == 5
        assert customer.phone


def test_invoices_are_dated_from_the_scenario_date_and_numbered_in_issue_order() -> None:
    scenario = datetime(2027, 3, 10, 14, 0, tzinfo=UTC_PLUS_ONE)
    store = seed_store(FIXTURES, scenario_date=scenario)
    invoices = list(store.invoices.values())
    years = {invoice.issue_date.year for invoice in invoices}
    for invoice in invoices:
        assert scenario.date() - timedelta(days=30) <= invoice.issue_date <= scenario.date()
        assert invoice.due_date == invoice.issue_date + timedelta(days=30)
        assert invoice.currency == "EUR"
    for year in years:
        numbers = [i.number for i in invoices if i.issue_date.year == year]
        assert numbers == [f"F-{year}-{n:04d}" for n in range(1, len(numbers) + 1)]
    assert [i.issue_date for i in invoices] == sorted(i.issue_date for i in invoices)


def test_invoices_offer_contactless_amounts_and_a_mix_of_statuses() -> None:
    invoices = list(seed_store(FIXTURES).invoices.values())
    assert any(i.amount_cents <= 5000 and i.status == "unpaid" for i in invoices)
    assert {i.status for i in invoices} == {"unpaid", "paid", "partially_paid"}
    for invoice in invoices:
        assert 1000 <= invoice.amount_cents <= 45000
        assert sum(line.total_cents for line in invoice.lines) == invoice.amount_cents
        paid = sum(p.amount_cents for p in invoice.payments if p.status == "captured")
        assert invoice.balance_due_cents == invoice.amount_cents - paid
        assert all(p.method in ("transfer", "cheque") for p in invoice.payments)


@pytest.mark.parametrize(("pan", "code"), [("4242424242424242", "00"), ("4000000000000002", "05")])
def test_processor_uses_the_fixture_keys_and_cards(seal_for: SealCard, pan: str, code: str) -> None:
    """The fixture terminal's DUKPT blob opens with the fixture BDK, the card's ARQC verifies
    with its issuer's fixture keys, and the catalogue's issuer answers."""
    processor = load_processor(FIXTURES)
    blob = seal_for(pan, "T1", 99)
    request = AuthorisationRequest("T1", 99, "EUR", "chip", "VISA", blob, seal_for.emv(pan, 99))
    decision = processor.authorise(request, today=SCENARIO.date())
    assert (decision.response_code, decision.reason) == (code, None)
    assert decision.arpc is not None


def test_processor_from_knows_exactly_the_cards_it_is_given(seal_for: SealCard) -> None:
    """Keys and cards already in hand make the same processor as the fixture files; a card
    left out is unknown to it."""
    visa = Catalogue.load(FIXTURES / "cards.yaml")["visa"]
    processor = processor_from(load_keys(FIXTURES), [visa])
    decisions = {}
    for pan in ("4242424242424242", "4000000000000002"):
        blob = seal_for(pan, "T1", 99)
        request = AuthorisationRequest("T1", 99, "EUR", "chip", "VISA", blob, seal_for.emv(pan, 99))
        decisions[pan] = processor.authorise(request, today=SCENARIO.date())
    approved, unknown = decisions.values()
    assert (approved.response_code, approved.card_ref) == ("00", "visa")
    assert approved.arpc is not None  # the visa's issuer keys came with the key fixture
    assert (unknown.response_code, unknown.card_ref, unknown.arpc) == ("05", None, None)


def test_seeding_reads_the_merchant_file_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.backend import seed

    reads: list[Path] = []
    real_load = seed._load

    def counting_load(path: Path) -> dict[str, Any]:
        reads.append(path)
        return real_load(path)

    monkeypatch.setattr(seed, "_load", counting_load)
    store = seed_store(FIXTURES)
    assert reads == [FIXTURES / "merchant.yaml"]
    assert store.customers


def _fixtures_copy(tmp_path: Path) -> Path:
    import shutil

    source = Path(__file__).resolve().parents[3] / "fixtures"
    target = tmp_path / "fixtures"
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("seed:", "graine:", "'seed:'"),
        ("merchant:", "marchand:", "'merchant:'"),
        ('"2026-12-03T09:30:00+01:00"', '"demain"', "scenario_date"),
        ('"2026-12-03T09:30:00+01:00"', '"2026-12-03T09:30:00"', "UTC offset"),
        ("customers: 5", "customers: many", "'customers'"),
        ("customers: 5", "customers: true", "'customers'"),
        ("tpe_enabled: true", 'tpe_enabled: "false"', "'tpe_enabled'"),
        ("merchant:", "merchant: [", "not valid YAML"),
    ],
)
def test_broken_merchant_file_names_the_file_and_field(
    tmp_path: Path, old: str, new: str, named: str
) -> None:
    fixtures = _fixtures_copy(tmp_path)
    path = fixtures / "merchant.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(FixtureError) as error:
        seed_store(fixtures)
    assert "merchant.yaml" in str(error.value)
    assert named in str(error.value)


def test_processor_reads_cards_through_the_validated_catalogue(tmp_path: Path) -> None:
    fixtures = _fixtures_copy(tmp_path)
    path = fixtures / "cards.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('"4242424242424242"', '"4242424242424243"'), encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"'visa'.*Luhn"):
        load_processor(fixtures)


# -- the issuer's record of each catalogue card ------------------------------------------------


def test_issuer_card_takes_the_issuers_fields_from_the_profile() -> None:
    profile = Catalogue.load(FIXTURES / "cards.yaml")["visa"]
    fields = {f.name: getattr(profile, f.name) for f in dataclasses.fields(profile)}
    fields.update(
        issuer_response_code="62",
        status="stolen",
        pin_tries=1,
        issuer_limit_cents=30000,
        issuer_balance_cents=12000,
        cents_rule=True,
        psd2_max_consecutive=3,
        psd2_max_cumulative_cents=8000,
        wallet=True,
    )
    card = issuer_card(cast(CardProfile, SimpleNamespace(**fields)))
    assert card == IssuerCard(
        key="visa",
        pan=profile.pan,
        brand="VISA",
        expiry=f"{profile.expiry_year:04d}-{profile.expiry_month:02d}",
        response_code="62",
        status="stolen",
        pin=profile.pin,
        pin_tries=1,
        limit_cents=30000,
        balance_cents=12000,
        cents_rule=True,
        psd2_max_consecutive=3,
        psd2_max_cumulative_cents=8000,
        wallet=True,
        brands=("VISA",),
    )


def test_a_profile_without_issuer_fields_is_an_ordinary_active_card() -> None:
    older = SimpleNamespace(
        key="visa",
        pan="4242424242424242",
        brand="VISA",
        expiry_year=2029,
        expiry_month=12,
        pin="1234",
        pin_tries=3,
        issuer_response_code="00",
    )
    card = issuer_card(cast(CardProfile, older))
    assert (card.status, card.limit_cents, card.balance_cents, card.cents_rule) == (
        "active",
        None,
        None,
        False,
    )
    assert (card.psd2_max_consecutive, card.psd2_max_cumulative_cents, card.wallet) == (
        5,
        15000,
        False,
    )


CATALOGUE = """
cards:
  perdue:
    pan: "4000000000009987"
    expiry: "2029-12"
    brand: VISA
    status: lost
    applications: [{aid: "A0000000031010"}]
  plafond:
    pan: "4000000000000341"
    expiry: "2029-12"
    brand: VISA
    applications: [{aid: "A0000000031010"}]
    issuer: {limit_cents: 3000, balance_cents: 2000}
  visa_sca:
    pan: "4000000000000101"
    expiry: "2029-12"
    brand: VISA
    applications: [{aid: "A0000000031010"}]
    psd2: {max_consecutive: 1}
  centimes:
    pan: "4000000000000077"
    expiry: "2029-12"
    brand: VISA
    applications: [{aid: "A0000000031010"}]
    issuer: {cents_rule: true}
"""


@pytest.mark.parametrize(
    ("pan", "amount", "states", "code"),
    [
        ("4000000000009987", 1000, {}, "41"),
        ("4000000000000341", 2500, {}, "51"),
        ("4000000000000341", 3001, {}, "61"),
        ("4000000000000101", 1000, {}, "00"),
        ("4000000000000101", 1000, {"visa_sca": CardState(3, 1, 1000)}, "1A"),
        ("4000000000000077", 1055, {}, "55"),
    ],
)
def test_catalogue_issuer_fields_reach_the_processor(
    tmp_path: Path,
    seal_for: SealCard,
    pan: str,
    amount: int,
    states: dict[str, CardState],
    code: str,
) -> None:
    fixtures = _fixtures_copy(tmp_path)
    (fixtures / "cards.yaml").write_text(CATALOGUE, encoding="utf-8")
    processor = load_processor(fixtures)
    blob = seal_for(pan, "T1", amount)
    emv = seal_for.emv(pan, amount, issuer_brand="VISA")
    request = AuthorisationRequest("T1", amount, "EUR", "contactless", "VISA", blob, emv)
    decision = processor.authorise(request, today=SCENARIO.date(), card_states=states)
    assert decision.response_code == code
