from __future__ import annotations

import asyncio
import base64
import gc
import logging
import re
import warnings
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from harness.backend import BackendServer, BackendStore, Processor
from harness.backend.store import Invoice
from simulator.cards import Catalogue

if TYPE_CHECKING:
    from tests.harness.backend.conftest import Backend

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"  # expires 2028-06
REFUSED = "4000000000000002"  # the issuer answers 05


def start(backend: Backend, invoice: Invoice, **body: Any) -> Any:
    reply = backend.start_payment(invoice.number, **body)
    assert reply.status == 201, reply.text
    return reply.body


def assert_error(reply: Any, status: int, code: str, field: str | None = None) -> None:
    assert reply.content_type == "application/json", reply.text
    assert (reply.status, reply.error_code) == (status, code), reply.text
    assert reply.body["error"]["message"]
    assert reply.body["error"].get("field") == field


# -- lifecycle -------------------------------------------------------------------------------


def test_serves_on_an_ephemeral_loopback_port_and_stops_cleanly(
    store: BackendStore, processor: Processor
) -> None:
    async def scenario() -> None:
        server = BackendServer(store, processor)
        with pytest.raises(RuntimeError):
            _ = server.url
        async with server:
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
            with pytest.raises(RuntimeError):
                await server.start()
            async with (
                aiohttp.ClientSession() as session,
                session.get(server.url + "/api/billing/settings") as response,
            ):
                assert await response.json() == {"tpe_enabled": True}
        assert asyncio.all_tasks() == {asyncio.current_task()}
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as session:
                await session.get(server.url + "/api/billing/settings")
        await server.stop()  # stopping twice is harmless

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(scenario())
        gc.collect()  # unclosed sockets or sessions would warn here
    assert [str(w.message) for w in caught] == []


# -- settings, terminals, customers, invoices -------------------------------------------------


def test_billing_settings_switch_the_tpe_on_and_off(backend: Backend) -> None:
    assert backend.get("/api/billing/settings").body == {"tpe_enabled": True}
    reply = backend.put("/api/billing/settings", {"tpe_enabled": False})
    assert (reply.status, reply.body) == (200, {"tpe_enabled": False})
    assert backend.get("/api/billing/settings").body == {"tpe_enabled": False}
    assert_error(
        backend.put("/api/billing/settings", {"tpe_enabled": "oui"}),
        422,
        "invalid_field",
        "tpe_enabled",
    )


def test_terminals_are_associated_once(backend: Backend) -> None:
    body = {"serial": "SIM0002", "model": "TPE-BLE-1", "firmware": "1.4.2"}
    assert backend.post("/api/terminals", body).status == 201
    again = backend.post("/api/terminals", body)
    assert again.status == 200
    assert again.body["serial"] == "SIM0002"
    serials = [t["serial"] for t in backend.get("/api/terminals").body["terminals"]]
    assert serials == ["SIM0001", "SIM0002"]
    assert_error(
        backend.post("/api/terminals", {"serial": "SIM0003", "model": "X"}),
        422,
        "invalid_field",
        "firmware",
    )


def test_customers_are_listed_and_found(backend: Backend) -> None:
    customers = backend.get("/api/customers").body["customers"]
    assert len(customers) == 5
    customer = backend.get(f"/api/customers/{customers[0]['id']}").body
    assert customer["name"] == customers[0]["name"]
    assert all(number.startswith("F-2026-") for number in customer["invoices"])
    assert_error(backend.get("/api/customers/C-9999"), 404, "customer_not_found")


def test_invoices_are_listed_filtered_and_found(backend: Backend, invoice: Invoice) -> None:
    everything = backend.get("/api/invoices").body["invoices"]
    unpaid = backend.get("/api/invoices?status=unpaid").body["invoices"]
    assert len(everything) == 11
    assert 0 < len(unpaid) < len(everything)
    assert all(i["status"] == "unpaid" for i in unpaid)
    assert_error(backend.get("/api/invoices?status=overdue"), 422, "invalid_field", "status")
    body = backend.invoice(invoice.number)
    assert body["customer"]["name"] == "Mme Lucie Bernard"
    assert (body["amount_cents"], body["balance_due_cents"]) == (4250, 4250)
    assert (body["currency"], body["status"], body["payments"]) == ("EUR", "unpaid", [])
    assert_error(backend.get("/api/invoices/F-2026-9999"), 404, "invoice_not_found")


# -- starting a payment -----------------------------------------------------------------------


def test_payment_starts_for_the_balance_due(backend: Backend, invoice: Invoice) -> None:
    payment = start(backend, invoice)
    assert re.fullmatch(r"P-\d{4}", payment["payment_id"])
    assert re.fullmatch(r"T[0-9a-f]{12}", payment["transaction_id"])
    assert {k: payment[k] for k in ("amount_cents", "currency", "reference", "status")} == {
        "amount_cents": 4250,
        "currency": "EUR",
        "reference": invoice.number,
        "status": "pending",
    }
    other = start(backend, invoice, amount_cents=1000)
    assert other["transaction_id"] != payment["transaction_id"]
    assert other["amount_cents"] == 1000


@pytest.mark.parametrize("amount", [0, -4250, 12.5, "4250", True, 4251, 10**30])
def test_payment_amount_is_checked(backend: Backend, invoice: Invoice, amount: object) -> None:
    reply = backend.start_payment(invoice.number, amount_cents=amount)
    assert_error(reply, 422, "invalid_amount", "amount_cents")


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ('{"method": "tpe", "terminal_serial": ', "invalid_json", None),
        ("", "invalid_json", None),
        ('["tpe"]', "invalid_json", None),
        (b"\xff\xfe", "invalid_json", None),
        ('{"method": "tpe", "x": ' + "9" * 5000 + "}", "invalid_json", None),  # digit limit
        ("[" * 100_000, "invalid_json", None),  # nesting beyond the recursion limit
        ('{"terminal_serial": "SIM0001"}', "invalid_field", "method"),
        ('{"method": "especes", "terminal_serial": "SIM0001"}', "invalid_field", "method"),
        ('{"method": "tpe"}', "invalid_field", "terminal_serial"),
        ('{"method": "tpe", "terminal_serial": 1}', "invalid_field", "terminal_serial"),
    ],
)
def test_payment_request_body_is_checked(
    backend: Backend, invoice: Invoice, raw: str | bytes, code: str, field: str | None
) -> None:
    reply = backend.post(f"/api/invoices/{invoice.number}/payments", raw=raw)
    assert_error(reply, 400 if code == "invalid_json" else 422, code, field)


def test_payment_refused_for_unknown_paid_or_disabled(backend: Backend, invoice: Invoice) -> None:
    assert_error(backend.start_payment("F-2026-9999"), 404, "invoice_not_found")
    assert_error(
        backend.start_payment(invoice.number, terminal_serial="SIM7777"),
        409,
        "terminal_not_associated",
    )
    paid = next(i for i in backend.store.invoices.values() if i.status == "paid")
    assert_error(backend.start_payment(paid.number), 409, "invoice_already_paid")
    backend.put("/api/billing/settings", {"tpe_enabled": False})
    assert_error(backend.start_payment(invoice.number), 403, "tpe_disabled")


# -- authorisation and result -----------------------------------------------------------------


def test_approved_twice_pays_the_invoice(backend: Backend, invoice: Invoice) -> None:
    payment = start(backend, invoice)
    reply = backend.authorise(payment, VISA)
    assert reply.status == 200, reply.text
    assert reply.body["transaction_id"] == payment["transaction_id"]
    assert (reply.body["response_code"], reply.body["approved"]) == ("00", True)
    assert re.fullmatch(r"\d{6}", reply.body["authorisation_code"])
    assert reply.body["message"] == "Paiement accepté"
    assert backend.invoice(invoice.number)["status"] == "unpaid"  # not before the terminal says so

    result = backend.result(payment, "approved")
    assert result.status == 200
    assert result.body["invoice"]["status"] == "paid"
    body = backend.invoice(invoice.number)
    assert (body["status"], body["balance_due_cents"]) == ("paid", 0)
    [recorded] = body["payments"]
    assert recorded["status"] == "captured"
    assert (recorded["brand"], recorded["masked_pan"]) == ("VISA", "************4242")
    assert recorded["entry_mode"] == "contactless"
    assert recorded["cvm"] == "none"  # a client that does not say how the holder was verified
    assert recorded["authorisation_code"] == reply.body["authorisation_code"]
    assert backend.get(f"/api/payments/{payment['payment_id']}").body == recorded


def test_declined_leaves_the_invoice_unpaid_with_an_attempt(
    backend: Backend, invoice: Invoice
) -> None:
    payment = start(backend, invoice)
    reply = backend.authorise(payment, REFUSED)
    assert re.fullmatch(r"[0-9A-F]{8}00000000", reply.body.pop("arpc"))  # CVN 18: CSU declines
    assert reply.body == {
        "transaction_id": payment["transaction_id"],
        "response_code": "05",
        "approved": False,
        "authorisation_code": None,
        "message": "Paiement refusé par la banque",
        "pin_tries_left": None,
    }
    assert backend.result(payment, "declined").status == 200
    body = backend.invoice(invoice.number)
    assert (body["status"], body["balance_due_cents"]) == ("unpaid", 4250)
    assert body["payments"][0]["status"] == "declined"
    assert [(a["payment_id"], a["response_code"]) for a in body["attempts"]] == [
        (payment["payment_id"], "05")
    ]


def test_unknown_card_is_declined(backend: Backend, invoice: Invoice, unknown_pan: str) -> None:
    assert backend.authorise(start(backend, invoice), unknown_pan).body["response_code"] == "05"


def test_expired_card_is_declined_by_the_world_clock(backend: Backend, invoice: Invoice) -> None:
    backend.clock.now = datetime(2028, 7, 1, 8, 0, tzinfo=timezone(timedelta(hours=2)))
    reply = backend.authorise(start(backend, invoice), MASTERCARD)
    assert (reply.body["response_code"], reply.body["message"]) == ("54", "Carte expirée")


def test_authorised_then_aborted_on_the_terminal_is_reversed(
    backend: Backend, invoice: Invoice
) -> None:
    payment = start(backend, invoice)
    assert backend.authorise(payment, VISA).body["approved"] is True
    result = backend.result(payment, "aborted")
    assert result.body["payment"]["status"] == "reversed"
    body = backend.invoice(invoice.number)
    assert (body["status"], body["balance_due_cents"]) == ("unpaid", 4250)
    assert body["attempts"][0]["outcome"] == "reversed"


def test_tampered_card_data_is_refused_and_changes_nothing(
    backend: Backend, invoice: Invoice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="harness.backend.server")
    payment = start(backend, invoice)
    blob = backend.authorisation_body(payment, VISA)["card_data"]
    ciphertext = bytearray(base64.b64decode(blob["ciphertext"]))
    ciphertext[-1] ^= 0x40
    tampered = {**blob, "ciphertext": base64.b64encode(ciphertext).decode()}
    before = backend.get(f"/api/payments/{payment['payment_id']}").body
    unknown_bdk = {**blob, "ksn": "FFFFFFFF" + blob["ksn"][8:]}
    interim = {**blob, "scheme": "AESGCM-TK1", "key_id": "SIM0001"}
    for card_data in (tampered, unknown_bdk, interim, "4242424242424242", {}):
        reply = backend.authorise(payment, VISA, card_data=card_data)
        assert_error(reply, 422, "card_data_invalid", "card_data")
    assert backend.get(f"/api/payments/{payment['payment_id']}").body == before
    assert backend.invoice(invoice.number)["attempts"] == []
    refusals = [r.getMessage() for r in caplog.records if "card data refused" in r.getMessage()]
    assert len(refusals) == 5
    assert all(m.startswith(f"card data refused for {payment['payment_id']}: ") for m in refusals)
    assert backend.authorise(payment, VISA).body["approved"] is True  # the real blob still works


def test_authorisation_must_match_the_payment(backend: Backend, invoice: Invoice) -> None:
    payment = start(backend, invoice)
    wrong_transaction = {**payment, "transaction_id": "T0123456789ab"}
    assert_error(
        backend.authorise(wrong_transaction, VISA), 409, "transaction_mismatch", "transaction_id"
    )
    assert_error(backend.authorise({**payment, "amount_cents": 425}, VISA), 422, "amount_mismatch")
    assert_error(backend.authorise(payment, VISA, currency="USD"), 422, "amount_mismatch")
    assert backend.authorise(payment, VISA).status == 200
    assert_error(backend.authorise(payment, VISA), 409, "already_authorised")
    assert_error(
        backend.authorise({**payment, "payment_id": "P-9999"}, VISA), 404, "payment_not_found"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("transaction_id", None),
        ("amount_cents", "4250"),
        ("amount_cents", 42.5),
        ("currency", ""),
        ("entry_mode", 3),
        ("brand", None),
        ("card_data", None),
        ("emv", {"9F26": "not hex"}),
        ("emv", ["9F26"]),
        ("cvm", "signature"),
        ("cvm", "ONLINE_PIN"),
        ("cvm", None),
    ],
)
def test_authorisation_fields_are_checked(
    backend: Backend, invoice: Invoice, field: str, value: object
) -> None:
    payment = start(backend, invoice)
    overrides: dict[str, Any] = {field: value}
    reply = backend.authorise(payment, VISA, **overrides)
    assert_error(reply, 422, "invalid_field", field)
    assert backend.get(f"/api/payments/{payment['payment_id']}").body["status"] == "pending"


def test_results_are_idempotent(backend: Backend, invoice: Invoice) -> None:
    payment = start(backend, invoice)
    assert_error(backend.result(payment, "approved"), 409, "not_authorised")
    backend.authorise(payment, VISA)
    first = backend.result(payment, "approved")
    second = backend.result(payment, "approved")
    assert (first.status, second.status) == (200, 200)
    assert first.body == second.body
    assert backend.invoice(invoice.number)["balance_due_cents"] == 0
    assert_error(backend.result(payment, "declined"), 409, "result_conflict")
    assert_error(backend.result(payment, "maybe"), 422, "invalid_field", "result")
    assert_error(
        backend.result({**payment, "transaction_id": "T0"}, "approved"),
        409,
        "transaction_mismatch",
        "transaction_id",
    )
    assert_error(
        backend.result({**payment, "payment_id": "P-9999"}, "approved"), 404, "payment_not_found"
    )
    assert_error(backend.get("/api/payments/P-9999"), 404, "payment_not_found")


def test_partial_payment(backend: Backend, invoice: Invoice) -> None:
    payment = start(backend, invoice, amount_cents=2000)
    backend.authorise(payment, MASTERCARD)
    assert backend.result(payment, "approved").body["invoice"]["status"] == "partially_paid"
    rest = start(backend, invoice)
    assert rest["amount_cents"] == 2250


# -- errors are JSON, the log explains, no PAN anywhere ---------------------------------------


def test_unknown_routes_and_methods_answer_json(backend: Backend) -> None:
    assert_error(backend.get("/api/nothing"), 404, "not_found")
    assert_error(backend.get("/"), 404, "not_found")
    assert_error(backend.request("DELETE", "/api/invoices"), 405, "method_not_allowed")


def test_unexpected_failure_is_a_json_500(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(number: str) -> Invoice:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(backend.store, "invoice", broken)
    reply = backend.get("/api/invoices/F-2026-0001")
    assert_error(reply, 500, "internal_error")
    assert "disk on fire" not in reply.text
    assert "disk on fire" in caplog.text


def test_request_log_keeps_the_last_exchanges(
    store: BackendStore, processor: Processor, backend: Backend
) -> None:
    backend.get("/api/invoices/F-2026-9999")
    record = backend.server.request_log[-1]
    assert (record.method, record.path, record.status) == ("GET", "/api/invoices/F-2026-9999", 404)
    assert "invoice_not_found" in record.response_body
    backend.put("/api/billing/settings", {"tpe_enabled": True})
    assert '"tpe_enabled": true' in backend.server.request_log[-1].request_body
    assert "PUT /api/billing/settings -> 200" in backend.server.format_request_log()

    small = BackendServer(store, processor, request_log_size=2)
    assert small.request_log.maxlen == 2
    assert small.format_request_log() == "(no request)"


def test_no_pan_is_ever_returned_logged_or_stored(
    backend: Backend, invoice: Invoice, unknown_pan: str
) -> None:
    store = backend.store
    for pan, result in ((VISA, "approved"), (REFUSED, "declined"), (MASTERCARD, "aborted")):
        fresh = store.add_invoice(
            invoice.customer_id, 3000, issue_date=invoice.issue_date, due_date=invoice.due_date
        )
        payment = start(backend, fresh)
        backend.authorise(payment, pan)
        backend.authorise(payment, pan)  # refused: already authorised
        backend.result(payment, result)
        backend.invoice(fresh.number)
    backend.authorise(start(backend, invoice), unknown_pan)
    backend.get("/api/invoices")
    backend.get("/api/customers")
    texts = [reply.text for reply in backend.replies]
    texts += [repr(store), backend.server.format_request_log()]
    for pan in (VISA, REFUSED, MASTERCARD, unknown_pan):
        assert not any(pan in text for text in texts), pan


# -- the issuer's rules over the wire -------------------------------------------------------------


def test_online_pin_is_checked_by_the_issuer(
    backend: Backend, invoice: Invoice, catalogue: Catalogue
) -> None:
    pin = catalogue["visa"].pin
    wrong = "0000" if pin != "0000" else "1111"
    payment = start(backend, invoice)
    reply = backend.authorise(payment, VISA, entry_mode="chip", cvm="online_pin", pin=wrong)
    assert reply.body.pop("arpc") is not None
    assert reply.body == {
        "transaction_id": payment["transaction_id"],
        "response_code": "55",
        "approved": False,
        "authorisation_code": None,
        "message": "Code confidentiel erroné",
        "pin_tries_left": 2,
    }
    backend.result(payment, "declined")
    retry = start(backend, invoice)
    reply = backend.authorise(retry, VISA, entry_mode="chip", cvm="online_pin", pin=pin)
    assert (reply.body["response_code"], reply.body["pin_tries_left"]) == ("00", 3)
    captured = backend.result(retry, "approved").body
    assert (captured["payment"]["cvm"], captured["invoice"]["status"]) == ("online_pin", "paid")


def test_online_pin_without_the_pin_is_unreadable_card_data(
    backend: Backend, invoice: Invoice
) -> None:
    payment = start(backend, invoice)
    reply = backend.authorise(payment, VISA, entry_mode="chip", cvm="online_pin")
    assert_error(reply, 422, "card_data_invalid", "card_data")
    assert backend.get(f"/api/payments/{payment['payment_id']}").body["status"] == "pending"


@pytest.mark.parametrize(("pan", "code"), [(VISA, "1A"), (MASTERCARD, "65")])
def test_sixth_tap_without_pin_is_soft_declined_until_a_pin_payment(
    backend: Backend, pan: str, code: str
) -> None:
    invoices = [backend.new_invoice(1000 + 100 * n) for n in range(7)]
    for invoice in invoices[:5]:
        assert backend.pay(invoice.number, pan)[1].body["response_code"] == "00"
    payment = start(backend, invoices[5])
    sixth = backend.authorise(payment, pan)
    assert (sixth.body["response_code"], sixth.body["message"]) == (
        code,
        "Authentification forte requise : saisissez le code",
    )
    # The terminal asks for the card to be inserted and the PIN typed: the same transaction.
    inserted = backend.authorise(payment, pan, entry_mode="chip", cvm="offline_pin")
    assert inserted.body["approved"] is True
    assert backend.result(payment, "approved").body["payment"]["cvm"] == "offline_pin"
    assert backend.pay(invoices[6].number, pan)[1].body["approved"] is True
    assert [backend.invoice(i.number)["status"] for i in invoices] == ["paid"] * 7
    assert backend.store.check_invariants() == []


def test_card_pays_the_balance_a_cheque_left(backend: Backend) -> None:
    [invoice, *_] = backend.get("/api/invoices?status=partially_paid").body["invoices"]
    [cheque] = invoice["payments"]
    assert cheque["method"] == "cheque"
    payment = start_number(backend, invoice["number"])
    assert payment["amount_cents"] == invoice["amount_cents"] - cheque["amount_cents"]
    assert payment["amount_cents"] == invoice["balance_due_cents"]
    backend.authorise(payment, VISA, entry_mode="chip", cvm="offline_pin")
    body = backend.result(payment, "approved").body["invoice"]
    assert (body["status"], body["balance_due_cents"]) == ("paid", 0)
    assert [(p["method"], p["status"]) for p in body["payments"]] == [
        ("cheque", "captured"),
        ("tpe", "captured"),
    ]
    assert backend.store.check_invariants() == []


def start_number(backend: Backend, number: str) -> Any:
    reply = backend.start_payment(number)
    assert reply.status == 201, reply.text
    return reply.body


# -- receipts -------------------------------------------------------------------------------------

TICKET = [
    "PLOMBERIE DURAND",
    "LYON",
    "LE 03/12/26 A 09:30:00",
    "VISA",
    "A0000000031010",
    "CONTRAT 1234567",
    "************4242",
    "DEBIT",
    "SANS CONTACT",
    "MONTANT = 42,50 EUR",
]


def test_receipts_are_kept_and_read_back(backend: Backend, invoice: Invoice) -> None:
    payment = start(backend, invoice)
    path = f"/api/payments/{payment['payment_id']}/receipts"
    backend.authorise(payment, VISA)
    assert_error(backend.get(path), 404, "receipt_not_found")
    receipts = {
        "merchant": [*TICKET, "TICKET COMMERCANT"],
        "customer": [*TICKET, "TICKET CLIENT", "A CONSERVER"],
    }
    assert backend.result(payment, "approved", receipts=receipts).status == 200
    assert backend.get(path).body == {
        "merchant": "\n".join([*TICKET, "TICKET COMMERCANT"]),
        "customer": "\n".join([*TICKET, "TICKET CLIENT", "A CONSERVER"]),
    }
    assert_error(backend.get("/api/payments/P-9999/receipts"), 404, "payment_not_found")


def test_a_receipt_for_the_merchant_only(backend: Backend, invoice: Invoice) -> None:
    payment = start(backend, invoice)
    backend.authorise(payment, REFUSED)
    backend.result(payment, "declined", receipts={"merchant": ["PAIEMENT REFUSE"]})
    path = f"/api/payments/{payment['payment_id']}/receipts"
    assert backend.get(path).body == {"merchant": "PAIEMENT REFUSE", "customer": None}


def test_a_receipt_with_a_full_pan_is_refused_changes_nothing_and_is_not_logged(
    backend: Backend, invoice: Invoice
) -> None:
    payment = start(backend, invoice)
    backend.authorise(payment, VISA)
    leaky = {"customer": [*TICKET[:6], VISA, *TICKET[7:]]}
    assert_error(
        backend.result(payment, "approved", receipts=leaky), 422, "receipt_contains_pan", "receipts"
    )
    assert backend.get(f"/api/payments/{payment['payment_id']}").body["status"] == "authorised"
    assert backend.invoice(invoice.number)["status"] == "unpaid"
    assert_error(
        backend.get(f"/api/payments/{payment['payment_id']}/receipts"), 404, "receipt_not_found"
    )
    assert backend.result(payment, "approved", receipts={"customer": TICKET}).status == 200
    assert backend.invoice(invoice.number)["status"] == "paid"
    log = backend.server.format_request_log()
    assert "************4242" in log  # the refused request is logged, masked
    assert VISA not in log
    assert not any(VISA in reply.text for reply in backend.replies)
    assert VISA not in repr(backend.store)


@pytest.mark.parametrize(
    "receipts",
    [
        {},
        ["PLOMBERIE DURAND"],
        {"merchant": "PLOMBERIE DURAND"},
        {"ticket": ["PLOMBERIE DURAND"]},
        {"customer": ["x" * 49]},
        {"customer": ["x"] * 41},
        {"customer": [None]},
    ],
)
def test_receipts_shape_is_checked(backend: Backend, invoice: Invoice, receipts: object) -> None:
    payment = start(backend, invoice)
    backend.authorise(payment, VISA)
    assert_error(
        backend.result(payment, "approved", receipts=receipts), 422, "invalid_field", "receipts"
    )
    assert backend.invoice(invoice.number)["status"] == "unpaid"
    assert backend.result(payment, "approved", receipts=None).status == 200
