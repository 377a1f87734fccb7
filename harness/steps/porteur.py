"""The cardholder's steps ("le client …"): tap, insert, PIN, remove the card."""

from __future__ import annotations

from pytest_bdd import given, parsers, when

from harness.rig import World
from harness.steps.paiement import unpaid_invoice


@when(parsers.parse("le client présente sa carte « {card} » sans contact"))
def tap(world: World, card: str) -> None:
    world.tap(card)


@when(
    parsers.parse("le client présente sa carte « {card} » sans contact en choisissant « {brand} »")
)
def tap_choosing_brand(world: World, card: str, brand: str) -> None:
    world.tap(card, brand=brand)


@when(parsers.parse("le client insère sa carte « {card} »"))
def insert(world: World, card: str) -> None:
    world.insert(card)


@when(parsers.parse("le client insère sa carte « {card} » en choisissant « {brand} »"))
def insert_choosing_brand(world: World, card: str, brand: str) -> None:
    world.insert(card, brand=brand)


@when(parsers.parse("le client saisit le code « {pin} »"))
def enter_pin(world: World, pin: str) -> None:
    world.enter_pin(pin)


@when("le client retire sa carte")
def remove_card(world: World) -> None:
    world.remove_card()


@when(parsers.parse("le client attend {seconds:d} secondes"))
def wait(world: World, seconds: int) -> None:
    world.wait(seconds)


@given(
    parsers.parse(
        "le client a déjà payé {count:d} factures de {amount} sans contact avec sa carte « {card} »"
    )
)
def earlier_contactless_payments(world: World, count: int, amount: str, card: str) -> None:
    for _ in range(count):
        number = unpaid_invoice(world, amount)
        world.start_payment(number)
        world.tap(card)
        outcome = world.finish_payment()
        assert outcome.result == "approved", outcome.message
