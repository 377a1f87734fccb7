"""Build the backend's world from the shared fixtures plus seeded fake data.

Customers and invoices come from Faker ``fr_FR`` seeded per store: the same seed and scenario
date give exactly the same data. Invoice dates are computed from the scenario date passed in,
never from the machine's clock, so seeding needs no clock patching and works inside a world
whose clock is already frozen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from faker import Faker

from harness.backend.processor import IssuerCard, Processor
from harness.backend.store import BackendStore, BillingSettings, InvoiceLine, Merchant
from harness.keys import KeyFixture, load_keys
from simulator.cards import CardProfile, Catalogue
from simulator.cards.catalogue import SAFE_LOADER

SERVICE_LABELS = (
    "Déplacement",
    "Main d'œuvre",
    "Recherche de fuite",
    "Remplacement de joint",
    "Détartrage du chauffe-eau",
    "Remplacement de robinet mitigeur",
    "Débouchage de canalisation",
    "Entretien de chaudière",
)
PAYMENT_TERM = timedelta(days=30)
ISSUE_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class SeedSettings:
    """The ``seed:`` section of ``merchant.yaml``."""

    faker_seed: int
    customers: int
    invoices_per_customer: int
    scenario_date: datetime


class FixtureError(ValueError):
    """A fixture file that does not hold together; the message names the file and the field."""


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise FixtureError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FixtureError(f"{path}: expected a mapping at the top level")
    return data


MERCHANT_FILE = "merchant.yaml"


def _section(path: Path, data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.get(name)
    if not isinstance(section, dict):
        raise FixtureError(f"{path}: expected a '{name}:' mapping")
    return section


def _field(path: Path, section: dict[str, Any], name: str, kind: type) -> Any:
    value = section.get(name)
    # bool is an int subclass: a YAML "true" is not a count, nor "1" a flag.
    if type(value) is not kind and not (kind is str and isinstance(value, int | float)):
        article = "an" if kind is int else "a"
        raise FixtureError(
            f"{path}: field {name!r} must be {article} {kind.__name__}, got {value!r}"
        )
    return str(value) if kind is str else value


def load_seed_settings(fixtures: Path) -> SeedSettings:
    path = fixtures / MERCHANT_FILE
    return _seed_settings(path, _load(path))


def _seed_settings(path: Path, data: dict[str, Any]) -> SeedSettings:
    """The ``seed:`` section of ``data``, read from ``path`` (named in errors)."""
    seed = _section(path, data, "seed")
    when = _field(path, seed, "scenario_date", str)
    try:
        scenario_date = datetime.fromisoformat(when)
    except ValueError as exc:
        raise FixtureError(f"{path}: field 'scenario_date' is not an ISO date: {when!r}") from exc
    if scenario_date.tzinfo is None:
        raise FixtureError(f"{path}: field 'scenario_date' needs a UTC offset, e.g. +01:00")
    counts = {
        name: _field(path, seed, name, int)
        for name in ("faker_seed", "customers", "invoices_per_customer")
    }
    if counts["customers"] < 0 or counts["invoices_per_customer"] < 0:
        raise FixtureError(f"{path}: customer and invoice counts must not be negative")
    return SeedSettings(scenario_date=scenario_date, **counts)


def load_processor(fixtures: Path) -> Processor:
    """The processor with the test keys (``keys.yaml``: DUKPT BDKs, issuers' master keys) and
    the card catalogue of the fixtures.

    Uses the same validated loaders as the world builder: these files are shared fixtures
    (the key "HSM" and the issuers' card records), not terminal internals.
    """
    return processor_from(load_keys(fixtures), Catalogue.load(fixtures / "cards.yaml").values())


def processor_from(keys: KeyFixture, profiles: Iterable[CardProfile]) -> Processor:
    """The processor with ``keys`` (DUKPT BDKs, issuers' master keys) knowing the cards
    ``profiles`` (each as :func:`issuer_card` records it), for callers that already hold
    the keys and cards (e.g. a catalogue plus generated customers' cards)."""
    return Processor(
        bdks=keys.bdks,
        cards=[issuer_card(card) for card in profiles],
        issuer_keys=keys.issuer_master_keys,
    )


def issuer_card(profile: CardProfile) -> IssuerCard:
    """The issuer's record of a catalogue card.

    Fields the card profile may not have yet fall back to an ordinary active card: no limit,
    no balance check, no cents rule, the PSD2 thresholds of Regulation 2018/389, not a wallet.
    """
    return IssuerCard(
        key=profile.key,
        pan=profile.pan,
        brand=profile.brand,
        expiry=f"{profile.expiry_year:04d}-{profile.expiry_month:02d}",
        response_code=profile.issuer_response_code,
        status=getattr(profile, "status", "active"),
        pin=profile.pin,
        pin_tries=profile.pin_tries,
        limit_cents=getattr(profile, "issuer_limit_cents", None),
        balance_cents=getattr(profile, "issuer_balance_cents", None),
        cents_rule=getattr(profile, "cents_rule", False),
        psd2_max_consecutive=getattr(profile, "psd2_max_consecutive", 5),
        psd2_max_cumulative_cents=getattr(profile, "psd2_max_cumulative_cents", 15000),
        wallet=getattr(profile, "wallet", False),
        brands=tuple(app.brand for app in getattr(profile, "applications", ())),
    )


def empty_store(fixtures: Path, *, seed: int = 0) -> BackendStore:
    """The merchant and billing settings of the fixtures, with no customer yet."""
    path = fixtures / MERCHANT_FILE
    return _empty_store(path, _load(path), seed=seed)


def _empty_store(path: Path, data: dict[str, Any], *, seed: int) -> BackendStore:
    """The store of :func:`empty_store`, from ``data`` read from ``path`` (named in errors)."""
    merchant = _section(path, data, "merchant")
    store = BackendStore(
        Merchant(
            id=_field(path, merchant, "id", str),
            name=_field(path, merchant, "name", str),
            city=_field(path, merchant, "city", str),
            contract_number=_field(path, merchant, "contract_number", str),
        ),
        BillingSettings(tpe_enabled=_field(path, merchant, "tpe_enabled", bool)),
        seed=seed,
    )
    elsewhere = data.get("terminals_of_other_merchants") or {}
    if not isinstance(elsewhere, dict):
        raise FixtureError(f"{path}: 'terminals_of_other_merchants' must map serial to merchant")
    store.terminals_elsewhere = {str(serial): str(owner) for serial, owner in elsewhere.items()}
    return store


def seed_store(
    fixtures: Path, *, seed: int | None = None, scenario_date: datetime | None = None
) -> BackendStore:
    """A store with the fixtures' merchant and seeded customers and invoices.

    ``seed`` and ``scenario_date`` default to the ``seed:`` section of ``merchant.yaml``.
    Invoices are issued within the 30 days before the scenario date, due 30 days later,
    numbered in issue order; one in three is at most 50 € (contactless), a few are already
    paid or partially paid by transfer or cheque.
    """
    path = fixtures / MERCHANT_FILE
    data = _load(path)  # read and parsed once, for the settings and the merchant
    settings = _seed_settings(path, data)
    seed = settings.faker_seed if seed is None else seed
    now = settings.scenario_date if scenario_date is None else scenario_date
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    store = _empty_store(path, data, seed=seed)

    drafts: list[tuple[date, str, list[InvoiceLine]]] = []
    for _ in range(settings.customers):
        customer = store.add_customer(
            fake.company() if fake.boolean(chance_of_getting_true=40) else fake.name(),
            address=fake.street_address(),
            postcode=fake.postcode(),
            city=fake.city(),
            email=fake.email(),
            phone=fake.phone_number(),
        )
        for _ in range(settings.invoices_per_customer):
            issue = fake.date_between(start_date=now.date() - ISSUE_WINDOW, end_date=now.date())
            drafts.append((issue, customer.id, _lines(fake, small=len(drafts) % 3 == 0)))

    drafts.sort(key=lambda draft: draft[0])  # French invoice numbers follow issue order
    for index, (issue, customer_id, lines) in enumerate(drafts):
        amount = sum(line.total_cents for line in lines)
        invoice = store.add_invoice(
            customer_id, amount, issue_date=issue, due_date=issue + PAYMENT_TERM, lines=lines
        )
        paid_at = min(now, datetime.combine(issue + timedelta(days=3), time(10), now.tzinfo))
        if index % 4 == 3:
            store.record_offline_payment(invoice.number, amount, "transfer", paid_at)
        elif index % 5 == 4:
            part = fake.random_int(amount // 4, amount // 2)
            store.record_offline_payment(invoice.number, part, "cheque", paid_at)
    return store


def _lines(fake: Faker, *, small: bool) -> list[InvoiceLine]:
    if small:
        prices = [fake.random_int(1000, 5000)]
    else:
        prices = [fake.random_int(2000, 15000) for _ in range(fake.random_int(1, 3))]
    return [
        InvoiceLine(label=fake.random_element(SERVICE_LABELS), quantity=1, unit_price_cents=price)
        for price in prices
    ]
