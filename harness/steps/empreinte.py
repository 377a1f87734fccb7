"""Steps of the help article's card capture ("Collecter les informations de paiement")."""

from __future__ import annotations

import datetime as dt
import re

from faker import Faker
from pytest_bdd import given, parsers, then, when

from harness.app import BUTTON_CARD_CAPTURE, CaptureOutcome
from harness.rig import World
from harness.steps.paiement import parse_euros

_AMOUNT_ON_SCREEN = re.compile(r"\d,\d\d (EUR|€)")


@given("un client généré sans moyen de paiement enregistré", target_fixture="customer_id")
def new_customer(world: World) -> str:
    fake = Faker("fr_FR")
    fake.seed_instance(world.seed + 1000 + len(world.store.customers))
    customer = world.store.add_customer(fake.name(), city=fake.city(), email=fake.email())
    return customer.id


@given(
    parsers.parse("une facture impayée de {amount} pour ce client"),
    target_fixture="invoice_number",
)
def invoice_for_customer(world: World, customer_id: str, amount: str) -> str:
    today = world.calendar().date()
    invoice = world.store.add_invoice(
        customer_id, parse_euros(amount), issue_date=today, due_date=today + dt.timedelta(days=30)
    )
    return invoice.number


@when(
    "le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen "
    f"de paiement » puis « {BUTTON_CARD_CAPTURE} »"
)
def start_capture(world: World, customer_id: str) -> None:
    world.start_capture(customer_id)


@when("la prise d'empreinte se termine", target_fixture="capture")
def capture_ends(world: World) -> CaptureOutcome:
    return world.finish_capture()


@when("le technicien annule depuis l'application")
def cancel_in_app(world: World) -> None:
    world.cancel_from_app()


@when("le client appuie sur la touche rouge du terminal")
def red_key(world: World) -> None:
    world.press_red_key()


@then("le terminal n'affiche aucun montant")
def no_amount_shown(world: World) -> None:
    shown = [line for shot in world.terminal.engine.screen.history for line in shot.lines]
    amounts = [line for line in shown if _AMOUNT_ON_SCREEN.search(line)]
    assert not amounts, f"the terminal showed an amount: {amounts!r}"


@then(
    parsers.parse(
        "la carte « {brand} » se terminant par « {last4} » est enregistrée sur la fiche du client"
    )
)
def card_saved(world: World, customer_id: str, brand: str, last4: str) -> None:
    methods = world.run(world.app.backend.payment_methods(customer_id))
    assert [(m["brand"], m["last4"]) for m in methods] == [(brand, last4)], methods
    (method,) = methods
    assert str(method["id"]).startswith("pm_")
    assert method["fingerprint"]


@then(parsers.parse("la fiche du client a {count:d} moyen de paiement"))
@then(parsers.parse("la fiche du client a {count:d} moyens de paiement"))
def count_methods(world: World, customer_id: str, count: int) -> None:
    methods = world.run(world.app.backend.payment_methods(customer_id))
    assert len(methods) == count, methods


@then("la fiche du client n'a aucun moyen de paiement")
def no_method(world: World, customer_id: str) -> None:
    count_methods(world, customer_id, 0)


@when("le technicien paie la facture avec la carte enregistrée", target_fixture="token_payment")
def pay_with_saved_card(world: World, customer_id: str, invoice_number: str) -> dict[str, object]:
    methods = world.run(world.app.backend.payment_methods(customer_id))
    assert methods, "no saved card on the customer record"
    return world.run(world.app.pay_with_saved_card(invoice_number, str(methods[0]["id"])))
