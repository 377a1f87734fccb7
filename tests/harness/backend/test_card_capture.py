"""Cards saved on the customer record ("prise d'empreinte") and paying with them, over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from harness.backend import BackendStore, Processor
from harness.backend.processor import AuthorisationRequest
from harness.backend.store import PENDING_HOLD, BillingSettings, Merchant, SavedCard
from simulator.cards import Catalogue

if TYPE_CHECKING:
    from tests.harness.backend.conftest import Backend, SealCard

VISA = "4242424242424242"  # expires 2029-12
MASTERCARD = "5555555555554444"  # expires 2028-06
NOW = datetime.fromisoformat("2026-12-03T09:30:00+01:00")


def assert_error(reply: Any, status: int, code: str, field: str | None = None) -> None:
    assert reply.content_type == "application/json", reply.text
    assert (reply.status, reply.error_code) == (status, code), reply.text
    assert reply.body["error"]["message"]
    assert reply.body["error"].get("field") == field


def customer(backend: Backend, name: str = "Mme Claire Fontaine") -> str:
    return backend.store.add_customer(name, city="Lyon").id


def invoice_for(backend: Backend, customer_id: str, amount_cents: int = 4250) -> str:
    day = NOW.date()
    invoice = backend.store.add_invoice(
        customer_id, amount_cents, issue_date=day, due_date=day + timedelta(days=30)
    )
    return invoice.number


def start(backend: Backend, customer_id: str) -> Any:
    reply = backend.start_capture(customer_id)
    assert reply.status == 201, reply.text
    return reply.body


def saved(backend: Backend, customer_id: str, pan: str, **verification: Any) -> Any:
    """Save ``pan`` on the customer record; returns the saved card (JSON)."""
    reply = backend.save_card(customer_id, pan, **verification)
    assert reply.status == 200, reply.text
    assert reply.body["payment_method"] is not None, reply.text
    return reply.body["payment_method"]


# -- starting a capture -----------------------------------------------------------------------


def test_a_capture_starts_pending_for_the_customer(backend: Backend) -> None:
    who = customer(backend)
    reply = backend.start_capture(who)
    assert reply.status == 201
    assert reply.body == {
        "capture_id": "CAP-0001",
        "transaction_id": reply.body["transaction_id"],
        "customer_id": who,
        "status": "pending",
    }
    assert re.fullmatch(r"T[0-9a-f]{12}", reply.body["transaction_id"])
    assert backend.start_capture(who).body["transaction_id"] != reply.body["transaction_id"]
    fetched = backend.get("/api/card-captures/CAP-0001").body
    assert (fetched["status"], fetched["terminal_serial"]) == ("pending", "SIM0001")


def test_a_capture_needs_a_known_customer_an_associated_terminal_and_the_tpe(
    backend: Backend,
) -> None:
    who = customer(backend)
    assert_error(backend.start_capture("C-9999"), 404, "customer_not_found")
    assert_error(
        backend.start_capture(who, terminal_serial="SIM0404"), 409, "terminal_not_associated"
    )
    assert_error(
        backend.start_capture(who, terminal_serial=""), 422, "invalid_field", "terminal_serial"
    )
    backend.put("/api/billing/settings", {"tpe_enabled": False})
    assert_error(backend.start_capture(who), 403, "tpe_disabled")
    assert backend.store.captures == {}
    assert_error(backend.get("/api/card-captures/CAP-0001"), 404, "capture_not_found")


# -- verification and result: the card is saved ------------------------------------------------


def test_a_verified_card_the_terminal_approved_is_saved_on_the_customer_record(
    backend: Backend, catalogue: Catalogue
) -> None:
    who = customer(backend)
    capture = start(backend, who)
    verified = backend.verify(capture, VISA)
    arpc = verified.body.pop("arpc")  # the issuer authentication data (tag 91), for the chip
    assert re.fullmatch(r"[0-9A-F]{8}00800000", arpc)  # Visa CVN 18: ARPC ‖ CSU "approves"
    assert (verified.status, verified.body) == (
        200,
        {
            "transaction_id": capture["transaction_id"],
            "response_code": "85",
            "approved": True,
            "message": "Carte vérifiée",
        },
    )
    assert backend.payment_methods(who) == []  # nothing before the terminal's word

    answer = backend.capture_result(capture, "approved")
    assert answer.status == 200, answer.text
    method = answer.body["payment_method"]
    visa = catalogue["visa"]
    assert method == {
        "id": method["id"],
        "brand": "VISA",
        "last4": "4242",
        "exp_month": visa.expiry_month,
        "exp_year": visa.expiry_year,
        "fingerprint": method["fingerprint"],
        "created_at": NOW.isoformat(),
    }
    assert re.fullmatch(r"pm_[0-9a-f]{24}", method["id"])
    assert re.fullmatch(r"[0-9a-f]{64}", method["fingerprint"])
    assert (answer.body["duplicate"], answer.body["message"]) == (
        False,
        "Carte enregistrée sur la fiche client.",
    )
    assert answer.body["capture"]["status"] == "saved"
    assert answer.body["capture"]["payment_method_id"] == method["id"]
    assert backend.payment_methods(who) == [method]
    assert backend.get(f"/api/customers/{who}").body["payment_methods"] == [method]
    assert backend.store.payment_methods[method["id"]].card_ref == "visa"
    assert backend.store.check_invariants() == []


# -- refusals save nothing -------------------------------------------------------------------

REFUSALS = [
    ("perdue", "41", "Carte refusée : contactez votre banque"),
    ("volee", "43", "Carte refusée : contactez votre banque"),
    ("expiree", "54", "Carte expirée"),
    ("pin_bloque", "75", "Nombre d'essais du code confidentiel dépassé"),
    ("visa_refusee", "05", "Paiement refusé par la banque"),
    ("non_autorisee", "57", "Opération non autorisée pour cette carte"),
    ("restreinte", "62", "Carte soumise à restrictions"),
    ("banque_indisponible", "91", "Banque indisponible, réessayez"),
    ("erreur_systeme", "96", "Erreur système"),
]


@pytest.mark.parametrize(("card", "code", "message"), REFUSALS)
def test_a_card_the_issuer_refuses_is_not_saved_and_the_record_is_unchanged(
    backend: Backend, catalogue: Catalogue, card: str, code: str, message: str
) -> None:
    who = customer(backend)
    before = [saved(backend, who, MASTERCARD)]
    capture = start(backend, who)
    reply = backend.verify(capture, catalogue[card].pan)
    assert reply.body.pop("arpc") is not None  # the card authenticated: the issuer answers it
    assert (reply.status, reply.body) == (
        200,
        {
            "transaction_id": capture["transaction_id"],
            "response_code": code,
            "approved": False,
            "message": message,
        },
    )
    # The terminal cannot turn a refusal into a saved card.
    assert_error(backend.capture_result(capture, "approved"), 409, "result_conflict")
    answer = backend.capture_result(capture, "declined")
    assert answer.body["payment_method"] is None
    assert answer.body["message"] == f"Carte non enregistrée : {message}."
    assert answer.body["capture"]["status"] == "declined"
    assert answer.body["capture"]["response_code"] == code
    assert backend.payment_methods(who) == before
    assert backend.get(f"/api/customers/{who}").body["payment_methods"] == before
    assert len(backend.store.payment_methods) == 1
    assert backend.store.check_invariants() == []


def test_an_unknown_card_is_refused_and_not_saved(backend: Backend, unknown_pan: str) -> None:
    who = customer(backend)
    capture = start(backend, who)
    assert backend.verify(capture, unknown_pan).body["response_code"] == "05"
    assert backend.capture_result(capture, "declined").body["payment_method"] is None
    assert backend.payment_methods(who) == []


@pytest.mark.parametrize("result", ["declined", "aborted"])
def test_a_verified_card_the_terminal_did_not_approve_is_not_saved(
    backend: Backend, result: str
) -> None:
    who = customer(backend)
    capture = start(backend, who)
    assert backend.verify(capture, VISA).body["response_code"] == "85"
    answer = backend.capture_result(capture, result)
    assert answer.status == 200, answer.text
    assert answer.body["payment_method"] is None
    assert answer.body["duplicate"] is False
    assert answer.body["capture"]["status"] == result
    assert (
        answer.body["message"]
        == {
            "declined": "Carte non enregistrée : la prise d'empreinte a été refusée.",
            "aborted": "Carte non enregistrée : la prise d'empreinte a été abandonnée.",
        }[result]
    )
    assert backend.payment_methods(who) == []
    assert backend.store.payment_methods == {}


def test_the_terminal_may_abort_before_any_verification_but_not_approve(
    backend: Backend,
) -> None:
    who = customer(backend)
    capture = start(backend, who)
    assert_error(backend.capture_result(capture, "approved"), 409, "not_verified")
    assert backend.capture_result(capture, "aborted").body["capture"]["status"] == "aborted"
    # Closed: no verification afterwards.
    assert_error(backend.verify(capture, VISA), 409, "already_verified")
    assert backend.payment_methods(who) == []


# -- verification rules ----------------------------------------------------------------------


@pytest.mark.parametrize("amount", [1, 4250, -1])
def test_a_verification_is_for_zero_euros(backend: Backend, amount: int) -> None:
    who = customer(backend)
    capture = start(backend, who)
    reply = backend.verify(capture, VISA, amount_cents=amount)
    assert_error(reply, 422, "invalid_amount", "amount_cents")
    assert backend.get(f"/api/card-captures/{capture['capture_id']}").body["status"] == "pending"
    assert backend.verify(capture, VISA).body["response_code"] == "85"


def test_a_capture_is_verified_once(backend: Backend, catalogue: Catalogue) -> None:
    capture = start(backend, customer(backend))
    assert backend.verify(capture, catalogue["visa_refusee"].pan).body["response_code"] == "05"
    assert_error(backend.verify(capture, VISA), 409, "already_verified")
    assert backend.get(f"/api/card-captures/{capture['capture_id']}").body["response_code"] == "05"


def test_a_verification_must_match_the_capture(backend: Backend) -> None:
    capture = start(backend, customer(backend))
    reply = backend.verify(capture, VISA, transaction_id="T000000000000")
    assert_error(reply, 409, "transaction_mismatch", "transaction_id")
    assert_error(backend.verify(capture, VISA, currency="USD"), 422, "invalid_field", "currency")
    assert_error(backend.verify(capture, VISA, cvm="pin"), 422, "invalid_field", "cvm")
    assert_error(
        backend.post("/api/card-captures/CAP-0099/verification", {}), 404, "capture_not_found"
    )
    assert backend.verify(capture, VISA).body["response_code"] == "85"


def test_tampered_card_data_is_refused_and_the_capture_stays_pending(backend: Backend) -> None:
    capture = start(backend, customer(backend))
    body = backend.verification_body(capture, VISA)
    body["card_data"] = {
        **body["card_data"],
        "ciphertext": "AAAA" + body["card_data"]["ciphertext"][4:],
    }
    reply = backend.post(f"/api/card-captures/{capture['capture_id']}/verification", body)
    assert_error(reply, 422, "card_data_invalid", "card_data")
    assert backend.get(f"/api/card-captures/{capture['capture_id']}").body["status"] == "pending"


def test_online_pin_is_checked_as_for_a_payment(backend: Backend, catalogue: Catalogue) -> None:
    card = catalogue["online_pin"]
    wrong = "0000" if card.pin != "0000" else "1111"
    who = customer(backend)
    capture = start(backend, who)
    reply = backend.verify(capture, card.pan, entry_mode="chip", cvm="online_pin", pin=wrong)
    assert (reply.body["response_code"], reply.body["message"]) == (
        "55",
        "Code confidentiel erroné",
    )
    assert backend.store.card_states["online_pin"].pin_tries == 2
    backend.capture_result(capture, "declined")
    assert backend.payment_methods(who) == []

    method = saved(backend, who, card.pan, entry_mode="chip", cvm="online_pin", pin=card.pin)
    assert method["last4"] == card.pan[-4:]
    assert backend.store.card_states["online_pin"].pin_tries == 3  # a right PIN resets it


def test_three_wrong_online_pins_block_the_card(backend: Backend, catalogue: Catalogue) -> None:
    card = catalogue["online_pin"]
    wrong = "0000" if card.pin != "0000" else "1111"
    who = customer(backend)
    codes = []
    for _ in range(3):
        capture = start(backend, who)
        pin = {"entry_mode": "chip", "cvm": "online_pin", "pin": wrong}
        codes.append(backend.verify(capture, card.pan, **pin).body["response_code"])
        backend.capture_result(capture, "declined")
    assert codes == ["55", "55", "75"]
    # Blocked: even the right PIN, or no PIN at all, is refused now.
    capture = start(backend, who)
    right = {"entry_mode": "chip", "cvm": "online_pin", "pin": card.pin}
    assert backend.verify(capture, card.pan, **right).body["response_code"] == "75"
    assert backend.verify(start(backend, who), card.pan).body["response_code"] == "75"
    assert backend.payment_methods(who) == []


def test_a_verification_is_no_contactless_payment_for_psd2(
    backend: Backend, catalogue: Catalogue
) -> None:
    card = catalogue["visa_sca"]  # one contactless payment without PIN, then SCA is due
    assert backend.pay(backend.new_invoice(1000).number, card.pan)[1].body["approved"] is True
    state = backend.store.card_states["visa_sca"]
    assert state.contactless_count == 1
    payment = backend.start_payment(backend.new_invoice(1000).number).body
    assert backend.authorise(payment, card.pan).body["response_code"] == "1A"
    # A tap without PIN to save the same card is not a payment: not soft-declined, not counted.
    who = customer(backend)
    assert saved(backend, who, card.pan)["last4"] == card.pan[-4:]
    after = backend.store.card_states["visa_sca"]
    assert (after.contactless_count, after.contactless_cents) == (1, 1000)
    assert after.last_atc is not None
    assert state.last_atc is not None
    assert after.last_atc > state.last_atc  # the card's counters moved on; PSD2's did not


# -- duplicates and idempotence ------------------------------------------------------------------


def test_the_same_card_twice_keeps_one_saved_card(backend: Backend) -> None:
    who = customer(backend)
    first = saved(backend, who, VISA)
    backend.clock.now = NOW + timedelta(days=2)
    again = backend.save_card(who, VISA)
    assert again.status == 200
    assert (again.body["duplicate"], again.body["payment_method"], again.body["message"]) == (
        True,
        first,
        "Cette carte est déjà enregistrée pour ce client.",
    )
    other = saved(backend, who, MASTERCARD)
    assert other["fingerprint"] != first["fingerprint"]
    assert backend.payment_methods(who) == [first, other]
    assert backend.store.check_invariants() == []


def test_another_customer_saves_the_same_card_under_its_own_id(backend: Backend) -> None:
    mine = saved(backend, customer(backend), VISA)
    theirs = saved(backend, customer(backend, "M. Hugo Lambert"), VISA)
    assert theirs["id"] != mine["id"]
    assert theirs["fingerprint"] == mine["fingerprint"]  # the same card, the same fingerprint


def test_results_are_idempotent_and_contradictions_refused(backend: Backend) -> None:
    who = customer(backend)
    capture = start(backend, who)
    backend.verify(capture, VISA)
    first = backend.capture_result(capture, "approved")
    again = backend.capture_result(capture, "approved")
    assert (again.status, again.body) == (200, first.body)
    assert_error(backend.capture_result(capture, "aborted"), 409, "result_conflict")
    assert_error(
        backend.capture_result(capture, "approved", transaction_id="T000000000000"),
        409,
        "transaction_mismatch",
        "transaction_id",
    )
    assert_error(backend.capture_result(capture, "peut-être"), 422, "invalid_field", "result")
    assert len(backend.payment_methods(who)) == 1

    duplicate = start(backend, who)
    backend.verify(duplicate, VISA)
    once = backend.capture_result(duplicate, "approved")
    twice = backend.capture_result(duplicate, "approved")
    assert twice.body == once.body
    assert twice.body["duplicate"] is True
    assert len(backend.payment_methods(who)) == 1


def test_payment_methods_of_an_unknown_customer(backend: Backend) -> None:
    assert_error(backend.get("/api/customers/C-9999/payment-methods"), 404, "customer_not_found")


# -- paying with a saved card --------------------------------------------------------------------


def test_a_saved_card_pays_an_invoice_without_a_terminal(backend: Backend) -> None:
    who = customer(backend)
    method = saved(backend, who, VISA)
    number = invoice_for(backend, who, 4250)
    reply = backend.pay_with_token(number, method["id"])
    assert reply.status == 201, reply.text
    body = reply.body
    assert (body["response_code"], body["approved"], body["message"]) == (
        "00",
        True,
        "Paiement accepté",
    )
    assert re.fullmatch(r"[0-9]{6}", body["authorisation_code"])
    payment = body["payment"]
    assert {k: payment[k] for k in payment if k not in ("id", "created_at", "updated_at")} == {
        "invoice_number": number,
        "method": "card_on_file",
        "status": "captured",
        "amount_cents": 4250,
        "currency": "EUR",
        "transaction_id": payment["transaction_id"],
        "terminal_serial": None,
        "entry_mode": "credential_on_file",
        "brand": "VISA",
        "masked_pan": "************4242",
        "response_code": "00",
        "authorisation_code": body["authorisation_code"],
        "cvm": "none",
        "terminal_result": None,
        "payment_method_id": method["id"],
    }
    invoice = backend.invoice(number)
    assert (invoice["status"], invoice["balance_due_cents"]) == ("paid", 0)
    assert invoice["payments"] == [payment]
    assert invoice["attempts"] == []
    assert_error(backend.pay_with_token(number, method["id"]), 409, "invoice_already_paid")
    assert backend.store.check_invariants() == []


def test_a_saved_card_may_pay_part_of_the_balance(backend: Backend) -> None:
    who = customer(backend)
    method = saved(backend, who, VISA)
    number = invoice_for(backend, who, 4250)
    assert backend.pay_with_token(number, method["id"], amount_cents=1000).body["approved"]
    invoice = backend.invoice(number)
    assert (invoice["status"], invoice["balance_due_cents"]) == ("partially_paid", 3250)
    assert_error(
        backend.pay_with_token(number, method["id"], amount_cents=3251),
        422,
        "invalid_amount",
        "amount_cents",
    )
    assert backend.pay_with_token(number, method["id"]).body["payment"]["amount_cents"] == 3250
    assert backend.invoice(number)["status"] == "paid"


@pytest.mark.parametrize(
    ("card", "amount", "code"),
    [
        ("provision_insuffisante", 4250, "51"),  # 10 € available
        ("plafond", 4250, "61"),  # 30 € per payment
        ("carte_test_centimes", 1005, "05"),  # the cents rule
        ("carte_test_centimes", 1051, "51"),
    ],
)
def test_a_declined_charge_leaves_the_invoice_unpaid_with_an_attempt(
    backend: Backend, catalogue: Catalogue, card: str, amount: int, code: str
) -> None:
    who = customer(backend)
    method = saved(backend, who, catalogue[card].pan)  # verification ignores funds and limits
    number = invoice_for(backend, who, amount)
    reply = backend.pay_with_token(number, method["id"])
    assert reply.status == 201, reply.text
    assert (reply.body["response_code"], reply.body["approved"]) == (code, False)
    assert reply.body["authorisation_code"] is None
    assert reply.body["payment"]["status"] == "declined"
    invoice = backend.invoice(number)
    assert (invoice["status"], invoice["balance_due_cents"]) == ("unpaid", amount)
    assert [(a["outcome"], a["response_code"]) for a in invoice["attempts"]] == [("declined", code)]
    assert backend.store.check_invariants() == []


def test_a_saved_card_within_the_cents_rule_and_limits_is_approved(
    backend: Backend, catalogue: Catalogue
) -> None:
    who = customer(backend)
    centimes = saved(backend, who, catalogue["carte_test_centimes"].pan)
    plafond = saved(backend, who, catalogue["plafond"].pan)
    assert backend.pay_with_token(invoice_for(backend, who, 1000), centimes["id"]).body["approved"]
    assert backend.pay_with_token(invoice_for(backend, who, 3000), plafond["id"]).body["approved"]


def test_a_saved_card_that_has_expired_since_is_declined(backend: Backend) -> None:
    who = customer(backend)
    method = saved(backend, who, MASTERCARD)  # valid until June 2028
    number = invoice_for(backend, who)
    backend.clock.now = datetime.fromisoformat("2028-07-01T09:00:00+02:00")
    assert backend.pay_with_token(number, method["id"]).body["response_code"] == "54"
    assert backend.invoice(number)["status"] == "unpaid"


def test_merchant_initiated_charges_are_never_soft_declined_nor_counted(
    backend: Backend, catalogue: Catalogue
) -> None:
    card = catalogue["visa_sca"]  # SCA due after one contactless payment without PIN
    who = customer(backend)
    method = saved(backend, who, card.pan)
    assert backend.pay(backend.new_invoice(1000).number, card.pan)[1].body["approved"] is True
    state = backend.store.card_states["visa_sca"]
    assert (state.contactless_count, state.contactless_cents) == (1, 1000)  # a tap now: 1A
    codes = [
        backend.pay_with_token(invoice_for(backend, who, 2000), method["id"]).body["response_code"]
        for _ in range(3)
    ]
    assert codes == ["00", "00", "00"]
    assert backend.store.card_states["visa_sca"] == state


def test_a_card_of_another_customer_or_an_unknown_card_is_refused(backend: Backend) -> None:
    mine, theirs = customer(backend), customer(backend, "M. Hugo Lambert")
    their_card = saved(backend, theirs, VISA)
    number = invoice_for(backend, mine)
    assert_error(
        backend.pay_with_token(number, their_card["id"]),
        409,
        "payment_method_not_for_customer",
        "payment_method_id",
    )
    assert_error(
        backend.pay_with_token(number, "pm_000000000000000000000000"),
        404,
        "payment_method_not_found",
    )
    assert_error(backend.pay_with_token(number, ""), 422, "invalid_field", "payment_method_id")
    assert_error(backend.pay_with_token("F-2026-9999", their_card["id"]), 404, "invoice_not_found")
    invoice = backend.invoice(number)
    assert (invoice["status"], invoice["payments"], invoice["attempts"]) == ("unpaid", [], [])


def test_card_on_file_does_not_need_the_tpe_switched_on(backend: Backend) -> None:
    who = customer(backend)
    method = saved(backend, who, VISA)
    backend.put("/api/billing/settings", {"tpe_enabled": False})
    assert backend.pay_with_token(invoice_for(backend, who), method["id"]).body["approved"] is True


def test_a_charge_waits_for_a_terminal_payment_under_way_and_replaces_an_abandoned_one(
    backend: Backend,
) -> None:
    who = customer(backend)
    method = saved(backend, who, VISA)
    number = invoice_for(backend, who)
    waiting = backend.start_payment(number).body
    # the customer may be at the terminal right now: the saved card must not steal the payment
    assert_error(backend.pay_with_token(number, method["id"]), 409, "invoice_payment_in_progress")
    backend.clock.now += PENDING_HOLD  # nobody presented a card: the payment is abandoned
    assert backend.pay_with_token(number, method["id"]).body["approved"] is True
    invoice = backend.invoice(number)
    assert [(p["method"], p["status"]) for p in invoice["payments"]] == [
        ("tpe", "aborted"),
        ("card_on_file", "captured"),
    ]
    assert_error(backend.authorise(waiting, VISA), 409, "already_authorised")
    assert backend.store.check_invariants() == []


def test_no_charge_while_the_terminal_holds_money_for_the_invoice(backend: Backend) -> None:
    who = customer(backend)
    method = saved(backend, who, VISA)
    number = invoice_for(backend, who)
    held = backend.start_payment(number).body
    assert backend.authorise(held, MASTERCARD).body["approved"] is True
    assert_error(backend.pay_with_token(number, method["id"]), 409, "invoice_payment_in_progress")
    assert [p["status"] for p in backend.invoice(number)["payments"]] == ["authorised"]


# -- no PAN anywhere ---------------------------------------------------------------------------


def spaced(pan: str) -> list[str]:
    """How a PAN may be written with spaces: groups of 4, and Amex's 4-6-5."""
    forms = [" ".join(pan[i : i + 4] for i in range(0, len(pan), 4))]
    if len(pan) == 15:
        forms.append(f"{pan[:4]} {pan[4:10]} {pan[10:]}")
    return forms


def test_no_pan_is_stored_returned_or_logged_by_captures_and_charges(
    backend: Backend, catalogue: Catalogue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    who = customer(backend)
    cards = list(catalogue.values())
    for card in cards:
        extra: dict[str, Any] = {"entry_mode": "chip"}
        if card.cvm == "online_pin" and card.pin:
            extra.update(cvm="online_pin", pin=card.pin)
        capture = start(backend, who)
        backend.verify(capture, card.pan, **extra)
        backend.verify(capture, card.pan, **extra)  # refused: already verified
        verdict = backend.get(f"/api/card-captures/{capture['capture_id']}").body
        backend.capture_result(
            capture, "approved" if verdict["status"] == "verified" else "aborted"
        )
    backend.save_card(who, VISA)  # a duplicate
    tampered = start(backend, who)
    body = backend.verification_body(tampered, VISA)
    body["card_data"]["nonce"] = "!!"
    backend.post(f"/api/card-captures/{tampered['capture_id']}/verification", body)
    methods = backend.payment_methods(who)
    assert len(methods) >= 10  # the scan covers many saved cards
    for method in methods:
        backend.pay_with_token(invoice_for(backend, who, 4250), method["id"])
    backend.get(f"/api/customers/{who}")
    backend.get("/api/invoices")

    texts = [reply.text for reply in backend.replies]
    texts += [repr(backend.store), repr(vars(backend.store)), backend.server.format_request_log()]
    texts += [caplog.text]
    for card in cards:
        for written in [card.pan, *spaced(card.pan)]:
            assert not any(written in text for text in texts), card.key
    assert backend.store.check_invariants() == []


# -- the fingerprint -----------------------------------------------------------------------------


def test_the_fingerprint_is_keyed_and_not_a_plain_hash_of_the_pan(backend: Backend) -> None:
    fingerprint = saved(backend, customer(backend), VISA)["fingerprint"]
    assert fingerprint not in {
        hashlib.sha256(VISA.encode()).hexdigest(),
        hashlib.sha256(VISA[-4:].encode()).hexdigest(),
        hmac.new(b"", VISA.encode(), hashlib.sha256).hexdigest(),
    }


def saved_in(store: BackendStore, processor: Processor, seal_for: SealCard, pan: str) -> SavedCard:
    """Save ``pan`` for a new customer of ``store``, store calls only; returns the saved card."""
    store.associate_terminal("SIM0001", "TPE-BLE-1", "1.4.2", NOW)
    who = store.add_customer("Mme Claire Fontaine").id
    capture = store.start_card_capture(who, "SIM0001", NOW)
    request = AuthorisationRequest(
        transaction_id=capture.transaction_id,
        amount_cents=0,
        currency="EUR",
        entry_mode="chip",
        brand="VISA",
        card_data=seal_for(pan, capture.transaction_id, 0),
        emv=seal_for.emv(pan, 0),
    )
    assert store.verify_card(capture.id, request, processor, NOW)[1].response_code == "85"
    store.record_capture_result(capture.id, capture.transaction_id, "approved", NOW)
    [method] = store.payment_methods.values()
    return method


def new_store(seed: int, fingerprint_key: bytes | None = None) -> BackendStore:
    return BackendStore(
        Merchant("M-0001", "Plomberie Durand", "Lyon", "1234567"),
        BillingSettings(tpe_enabled=True),
        seed=seed,
        fingerprint_key=fingerprint_key,
    )


def test_ids_and_fingerprints_follow_the_store_seed_and_key(
    processor: Processor, seal_for: SealCard
) -> None:
    first = saved_in(new_store(7), processor, seal_for, VISA)
    same_seed = saved_in(new_store(7), processor, seal_for, VISA)
    other_seed = saved_in(new_store(8), processor, seal_for, VISA)
    assert (same_seed.id, same_seed.fingerprint) == (first.id, first.fingerprint)
    assert other_seed.id != first.id
    assert other_seed.fingerprint != first.fingerprint  # another backend, another secret
    secret = b"a backend secret from a vault"
    keyed = saved_in(new_store(7, secret), processor, seal_for, VISA)
    assert keyed.id == first.id
    assert keyed.fingerprint == hmac.new(secret, VISA.encode(), hashlib.sha256).hexdigest()
    assert "backend secret" not in repr(vars(new_store(7, secret)))  # nor in a dump of it
    with pytest.raises(ValueError, match="fingerprint_key"):
        new_store(7, b"")


@pytest.mark.parametrize(
    ("brand", "aid"),
    [
        ("AMEX", "A0000000031010"),  # not one of the card's applications
        ("JCB", "A0000000031010"),
        ("4242424242424242", "A0000000031010"),  # a PAN smuggled in as a brand
        ("VISA", "A0000000041010"),  # a brand that contradicts the selected application
    ],
)
def test_a_brand_the_card_does_not_have_is_refused_and_nothing_is_saved(
    backend: Backend, seal_for: SealCard, brand: str, aid: str
) -> None:
    who = customer(backend)
    capture = start(backend, who)
    emv = seal_for.emv(VISA, 0, **{"4F": aid})
    verified = backend.verify(capture, VISA, brand=brand, emv=emv)
    assert verified.status == 200
    assert verified.body["response_code"] != "85"
    assert not verified.body["approved"]
    assert backend.get(f"/api/customers/{who}/payment-methods").body == {"payment_methods": []}
