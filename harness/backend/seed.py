"""Build the backend's world from the shared fixtures plus seeded fake data.

Customers and invoices come from Faker ``fr_FR`` seeded per store: the same seed and scenario
date give exactly the same data. Invoice dates are computed from the scenario date passed in,
never from the machine's clock, so seeding needs no clock patching and works inside a world
whose clock is already frozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import yaml
from faker import Faker

from harness.backend.processor import IssuerCard, Processor
from harness.backend.store import BackendStore, BillingSettings, InvoiceLine, Merchant

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


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def load_seed_settings(fixtures: Path) -> SeedSettings:
    seed = _load(fixtures / "merchant.yaml")["seed"]
    return SeedSettings(
        faker_seed=int(seed["faker_seed"]),
        customers=int(seed["customers"]),
        invoices_per_customer=int(seed["invoices_per_customer"]),
        scenario_date=datetime.fromisoformat(str(seed["scenario_date"])),
    )


def load_processor(fixtures: Path) -> Processor:
    """The processor with the terminal keys and card catalogue of the fixtures."""
    terminals = _load(fixtures / "terminals.yaml")["terminals"].values()
    cards = _load(fixtures / "cards.yaml")["cards"].values()
    return Processor(
        terminal_keys={str(t["serial"]): bytes.fromhex(str(t["card_data_key"])) for t in terminals},
        cards=[
            IssuerCard(
                pan=str(card["pan"]),
                brand=str(card["brand"]),
                expiry=str(card["expiry"]),
                response_code=str(card["issuer"]["response_code"]),
            )
            for card in cards
        ],
    )


def empty_store(fixtures: Path, *, seed: int = 0) -> BackendStore:
    """The merchant and billing settings of the fixtures, with no customer yet."""
    merchant = _load(fixtures / "merchant.yaml")["merchant"]
    return BackendStore(
        Merchant(
            id=str(merchant["id"]),
            name=str(merchant["name"]),
            city=str(merchant["city"]),
            contract_number=str(merchant["contract_number"]),
        ),
        BillingSettings(tpe_enabled=bool(merchant["tpe_enabled"])),
        seed=seed,
    )


def seed_store(
    fixtures: Path, *, seed: int | None = None, scenario_date: datetime | None = None
) -> BackendStore:
    """A store with the fixtures' merchant and seeded customers and invoices.

    ``seed`` and ``scenario_date`` default to the ``seed:`` section of ``merchant.yaml``.
    Invoices are issued within the 30 days before the scenario date, due 30 days later,
    numbered in issue order; one in three is at most 50 € (contactless), a few are already
    paid or partially paid by transfer or cheque.
    """
    settings = load_seed_settings(fixtures)
    seed = settings.faker_seed if seed is None else seed
    now = settings.scenario_date if scenario_date is None else scenario_date
    fake = Faker("fr_FR")
    fake.seed_instance(seed)
    store = empty_store(fixtures, seed=seed)

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
