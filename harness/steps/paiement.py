"""Steps of the help article's payment flow: "Faire régler une facture client"."""

from __future__ import annotations

import datetime as dt
import json
import re

from faker import Faker
from pytest_bdd import given, parsers, then, when

from harness.app import BUTTON_PAY_BY_CARD, PaymentOutcome
from harness.rig import World
from simulator.protocol.messages import PaymentRequest

_AMOUNT = re.compile(r"^(\d{1,3}(?:[  ]?\d{3})*)(?:,(\d{2}))?\s*€$")


def parse_euros(text: str) -> int:
    """``42,50 €`` → 4250 cents, ``1 000,00 €`` → 100000 (French notation, as the app writes
    amounts)."""
    match = _AMOUNT.match(text.strip())
    if match is None:
        raise ValueError(f"not an amount in euros: {text!r} (expected e.g. « 42,50 € »)")
    euros = re.sub(r"\D", "", match.group(1))
    return int(euros) * 100 + int(match.group(2) or 0)


@given("le TPE est activé comme moyen de paiement dans le module Facturation")
def tpe_enabled(world: World) -> None:
    world.store.billing.tpe_enabled = True


@given("le TPE est désactivé comme moyen de paiement dans le module Facturation")
def tpe_disabled(world: World) -> None:
    world.store.billing.tpe_enabled = False


@given("le terminal de paiement est associé à l'application mobile")
def terminal_associated(world: World) -> None:
    world.associate()
    assert world.app.terminal is not None
    assert world.app.terminal.serial in world.store.terminals


@given(
    parsers.parse("une facture impayée de {amount} pour un client généré"),
    target_fixture="invoice_number",
)
def unpaid_invoice(world: World, amount: str) -> str:
    fake = Faker("fr_FR")
    fake.seed_instance(world.seed + len(world.store.customers))
    customer = world.store.add_customer(fake.name(), city=fake.city(), email=fake.email())
    today = world.calendar().date()
    invoice = world.store.add_invoice(
        customer.id,
        parse_euros(amount),
        issue_date=today,
        due_date=today + dt.timedelta(days=30),
    )
    assert invoice.status == "unpaid"
    return invoice.number


@when(
    "le technicien ouvre la facture dans le menu Facturation "
    f"et clique sur « {BUTTON_PAY_BY_CARD} »"
)
def trigger_card_payment(world: World, invoice_number: str) -> None:
    world.start_payment(invoice_number)


@when(
    parsers.parse("le client présente sa carte « {card} » sans contact après {seconds:d} secondes")
)
def customer_taps(world: World, card: str, seconds: int) -> None:
    world.wait(seconds)
    world.tap(card)


@when("le paiement se termine", target_fixture="outcome")
@then("le paiement se termine", target_fixture="outcome")
def payment_ends(world: World) -> PaymentOutcome:
    return world.finish_payment()


@then(parsers.parse("le terminal affiche « {text} »"))
def terminal_shows(world: World, text: str) -> None:
    lines = world.terminal.engine.screen.lines
    assert text in lines, f"the terminal shows {list(lines)!r}, not « {text} »"


@then(parsers.parse("l'application affiche « {text} »"))
def app_shows(world: World, text: str) -> None:
    assert any(text in shown for shown in world.app.screen), (
        f"the app never showed « {text} »; it showed {world.app.screen[-5:]!r}"
    )


@then("la facture est payée")
def invoice_paid(world: World, invoice_number: str) -> None:
    invoice = world.store.invoice(invoice_number)
    assert invoice.status == "paid", f"invoice {invoice_number} is {invoice.status}"
    assert invoice.balance_due_cents == 0


@then(parsers.parse("la facture reste impayée avec une tentative refusée de code « {code} »"))
def invoice_unpaid(world: World, invoice_number: str, code: str) -> None:
    invoice = world.store.invoice(invoice_number)
    assert invoice.status == "unpaid", f"invoice {invoice_number} is {invoice.status}"
    assert invoice.balance_due_cents == invoice.amount_cents
    assert [a.response_code for a in invoice.attempts] == [code]


@then(
    parsers.parse(
        "le paiement est enregistré avec la marque « {brand} » et la carte masquée « {masked} »"
    )
)
def payment_recorded(world: World, invoice_number: str, brand: str, masked: str) -> None:
    invoice = world.store.invoice(invoice_number)
    captured = [p for p in invoice.payments if p.status == "captured"]
    assert len(captured) == 1, f"expected one captured payment, got {invoice.payments!r}"
    payment = captured[0]
    assert payment.brand == brand
    assert payment.masked_pan == masked
    assert payment.amount_cents == invoice.amount_cents
    assert payment.authorisation_code
    assert len(payment.authorisation_code) == 6


@given(
    parsers.parse("une facture de {amount} déjà réglée en partie par chèque pour {paid}"),
    target_fixture="invoice_number",
)
def partially_paid_invoice(world: World, amount: str, paid: str) -> str:
    number = unpaid_invoice(world, amount)
    world.store.record_offline_payment(number, parse_euros(paid), "cheque", world.calendar())
    assert world.store.invoice(number).status == "partially_paid"
    return number


@then(parsers.parse("le montant envoyé au terminal est de {amount}"))
def amount_sent(world: World, amount: str) -> None:
    amounts = [c.amount for c in world.terminal.commands_received if isinstance(c, PaymentRequest)]
    assert amounts, "no payment request reached the terminal"
    assert amounts[-1] == parse_euros(amount)


@then("la facture reste impayée sans aucun paiement encaissé")
def invoice_unpaid_nothing_captured(world: World, invoice_number: str) -> None:
    invoice = world.store.invoice(invoice_number)
    assert invoice.status == "unpaid", f"invoice {invoice_number} is {invoice.status}"
    assert [p for p in invoice.payments if p.status == "captured"] == []


@then(parsers.parse("l'autorisation de la banque est annulée (paiement « {status} »)"))
def authorisation_reversed(world: World, invoice_number: str, status: str) -> None:
    invoice = world.store.invoice(invoice_number)
    assert [p.status for p in invoice.payments] == [status]
    assert invoice.payments[0].response_code == "00"  # the issuer had approved
    assert invoice.balance_due_cents == invoice.amount_cents


@then(parsers.parse("le ticket client indique « {text} »"))
def customer_receipt_says(outcome: PaymentOutcome, text: str) -> None:
    assert text in outcome.receipt, f"the customer receipt is {outcome.receipt!r}"


@then(parsers.parse("le ticket commerçant indique « {text} »"))
def merchant_receipt_says(outcome: PaymentOutcome, text: str) -> None:
    assert text in outcome.merchant_receipt, f"the merchant receipt is {outcome.merchant_receipt!r}"


@then(parsers.parse("la banque a répondu « {code} » à la première demande"))
def first_answer_was(world: World, code: str) -> None:
    answers = [
        json.loads(record.response_body).get("response_code")
        for record in world.backend.request_log
        if record.path.endswith("/authorisation") and record.status == 200
    ]
    assert answers, "no authorisation reached the backend"
    assert answers[-1] == code, f"the bank answered {answers!r}"


@then(parsers.parse("le ticket est conservé avec le paiement et indique « {text} »"))
def receipt_kept(world: World, invoice_number: str, text: str) -> None:
    invoice = world.store.invoice(invoice_number)
    captured = [p for p in invoice.payments if p.status == "captured"]
    assert len(captured) == 1, f"expected one captured payment, got {invoice.payments!r}"
    kept = world.run(world.app.backend.receipts(captured[0].id))
    for copy in ("customer", "merchant"):
        assert text in str(kept[copy]).splitlines(), f"{copy} receipt kept: {kept[copy]!r}"


@then(parsers.parse("le terminal a affiché « {text} »"))
def terminal_showed(world: World, text: str) -> None:
    shown = [shot.lines for shot in world.terminal.engine.screen.history]
    assert any(text in lines for lines in shown), f"the terminal showed {shown[-6:]!r}"
