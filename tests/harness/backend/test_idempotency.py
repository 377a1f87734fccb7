"""Idempotency keys on the backend: a replay gets the first answer and never reaches the
store again; a key reused for another request, or missing where money moves, is refused."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from harness.backend.openapi import KEYED_OPERATIONS
from harness.backend.server import IDEMPOTENCY_TTL, Fingerprint, IdempotencyKeys
from harness.backend.store import Invoice

if TYPE_CHECKING:
    from tests.harness.backend.conftest import Backend, Reply

VISA = "4242424242424242"
NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def key() -> str:
    return str(uuid.uuid4())


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.error_code) == (status, code), reply.text
    assert reply.body["error"]["message"]


def create(backend: Backend, invoice: Invoice, idempotency_key: str, **body: Any) -> Reply:
    return backend.post(
        f"/api/invoices/{invoice.number}/payments",
        {"method": "tpe", "terminal_serial": "SIM0001", **body},
        key=idempotency_key,
    )


def test_a_replayed_payment_creation_gives_the_same_payment_and_the_store_holds_one(
    backend: Backend, invoice: Invoice
) -> None:
    same = key()
    first = create(backend, invoice, same)
    again = create(backend, invoice, same)
    assert first.status == again.status == 201
    assert again.text == first.text
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert [p.id for p in invoice.payments] == [first.body["payment_id"]]
    assert invoice.payments[0].status == "pending"  # not replaced by the replay
    assert backend.server.request_log[-1].note == "replayed"


def test_a_replayed_authorisation_does_not_reach_the_issuer_again(
    backend: Backend, invoice: Invoice
) -> None:
    payment = create(backend, invoice, key()).body
    body = backend.authorisation_body(payment, VISA)
    same = key()
    path = f"/api/payments/{payment['payment_id']}/authorisation"
    first = backend.post(path, body, key=same)
    again = backend.post(path, body, key=same)
    assert first.body["approved"] is True
    assert again.body == first.body  # the same authorisation code, the same ARPC
    # without the key, the same request is a second authorisation: refused by the store
    assert_error(backend.post(path, body), 409, "already_authorised")


def test_a_replayed_result_and_capture_change_nothing_more(
    backend: Backend, invoice: Invoice
) -> None:
    payment = create(backend, invoice, key()).body
    assert backend.authorise(payment, VISA).body["approved"] is True
    same = key()
    result = {"transaction_id": payment["transaction_id"], "result": "approved"}
    path = f"/api/payments/{payment['payment_id']}/result"
    first = backend.post(path, result, key=same)
    again = backend.post(path, result, key=same)
    assert again.body == first.body
    assert invoice.status == "paid"
    assert backend.store.check_invariants() == []


@pytest.mark.parametrize(("method", "template"), sorted(KEYED_OPERATIONS))
def test_money_moving_routes_require_a_key(backend: Backend, method: str, template: str) -> None:
    path = template.format(
        number="F-2026-0001", payment_id="P-0001", customer_id="C-0001", capture_id="CAP-0001"
    )
    payments, captures = len(backend.store.payments), len(backend.store.captures)
    reply = backend.request(method.upper(), path, {"terminal_serial": "SIM0001"}, key=None)
    assert_error(reply, 400, "idempotency_key_required")
    assert reply.body["error"]["field"] == "Idempotency-Key"
    assert "Idempotency-Key" in reply.body["error"]["message"]
    assert (len(backend.store.payments), len(backend.store.captures)) == (payments, captures)


def test_other_writes_take_a_key_but_do_not_require_it(backend: Backend) -> None:
    reply = backend.put("/api/billing/settings", {"tpe_enabled": True}, key=None)
    assert reply.status == 200
    terminal = {"serial": "SIM0001", "model": "TPE-BLE-1", "firmware": "1.4.3"}
    assert backend.post("/api/terminals", terminal, key=None).status == 200
    same = key()
    off = backend.put("/api/billing/settings", {"tpe_enabled": False}, key=same)
    backend.store.billing.tpe_enabled = True  # changed by someone else meanwhile
    assert backend.put("/api/billing/settings", {"tpe_enabled": False}, key=same).body == off.body
    assert backend.store.billing.tpe_enabled is True  # the replay did not apply it again


def test_a_key_reused_for_another_request_is_refused_and_changes_nothing(
    backend: Backend, invoice: Invoice
) -> None:
    same = key()
    before = len(backend.store.payments)
    first = create(backend, invoice, same, amount_cents=1000)
    assert first.status == 201
    other_body = create(backend, invoice, same, amount_cents=2000)
    assert_error(other_body, 422, "idempotency_key_reused")
    assert other_body.body["error"]["field"] == "Idempotency-Key"
    other_path = backend.post(
        "/api/invoices/F-2026-0001/payments",
        {"method": "tpe", "terminal_serial": "SIM0001", "amount_cents": 1000},
        key=same,
    )
    assert_error(other_path, 422, "idempotency_key_reused")
    other_method = backend.put("/api/billing/settings", {"tpe_enabled": False}, key=same)
    assert_error(other_method, 422, "idempotency_key_reused")
    assert backend.store.billing.tpe_enabled is True
    assert [p.amount_cents for p in invoice.payments] == [1000]
    assert len(backend.store.payments) == before + 1  # nothing on the other invoice either


def test_a_refusal_is_kept_too_a_new_try_needs_a_new_key(
    backend: Backend, invoice: Invoice
) -> None:
    same = key()
    body = {"method": "tpe", "terminal_serial": "SIM0002"}
    path = f"/api/invoices/{invoice.number}/payments"
    assert_error(backend.post(path, body, key=same), 409, "terminal_not_associated")
    backend.store.associate_terminal("SIM0002", "TPE-BLE-1", "1.4.2", backend.clock())
    replay = backend.post(path, body, key=same)
    assert_error(replay, 409, "terminal_not_associated")  # the answer that operation got
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert backend.post(path, body, key=key()).status == 201  # a new operation


@pytest.mark.parametrize("bad", ["with space", "x" * 256, "clé"], ids=["space", "long", "accent"])
def test_a_malformed_key_is_refused(backend: Backend, invoice: Invoice, bad: str) -> None:
    reply = backend.request(
        "POST",
        f"/api/invoices/{invoice.number}/payments",
        {"method": "tpe", "terminal_serial": "SIM0001"},
        key=bad.encode().decode("latin-1"),
    )
    assert_error(reply, 400, "idempotency_key_invalid")
    assert invoice.payments == []


def test_a_key_is_forgotten_after_a_day_of_scenario_time(
    backend: Backend, invoice: Invoice
) -> None:
    same = key()
    first = create(backend, invoice, same)
    backend.clock.now += IDEMPOTENCY_TTL + timedelta(seconds=1)
    later = create(backend, invoice, same)
    assert later.body["payment_id"] != first.body["payment_id"]
    assert "Idempotent-Replayed" not in later.headers


def test_reads_and_unknown_routes_ignore_keys(backend: Backend) -> None:
    assert backend.request("GET", "/api/merchant", key=key()).status == 200
    assert_error(backend.post("/api/nowhere", {}, key=None), 404, "not_found")
    assert_error(backend.request("PUT", "/api/merchant", {}, key=None), 405, "method_not_allowed")


# -- the key store alone ------------------------------------------------------------------------


def answer(status: int, text: str) -> web.Response:
    return web.json_response({"text": text}, status=status)


def test_a_request_arriving_while_the_first_is_handled_waits_for_its_answer() -> None:
    keys = IdempotencyKeys()
    fingerprint = Fingerprint("POST", "/api/x", "d1")
    calls: list[str] = []

    async def scenario() -> list[Any]:
        release = asyncio.Event()

        async def slow() -> web.StreamResponse:
            calls.append("slow")
            await release.wait()
            return answer(201, "first")

        async def fast() -> web.StreamResponse:
            calls.append("fast")
            return answer(201, "second")

        first = asyncio.create_task(keys.run("k", fingerprint, slow, now=NOW))
        await asyncio.sleep(0)
        second = asyncio.create_task(keys.run("k", fingerprint, fast, now=NOW))
        other = asyncio.create_task(
            keys.run("k", Fingerprint("POST", "/api/y", "d1"), fast, now=NOW)
        )
        await asyncio.sleep(0)
        release.set()
        return list(await asyncio.gather(first, second, other))

    first, second, other = asyncio.run(scenario())
    assert calls == ["slow"]
    assert (first.replayed, second.replayed) == (False, True)
    assert second.response.body == first.response.body
    assert other.response.status == 422


def test_a_server_error_is_not_kept_the_retry_runs_for_real() -> None:
    keys = IdempotencyKeys()
    fingerprint = Fingerprint("POST", "/api/x", "d1")
    statuses = iter([500, 201])

    async def handle() -> web.StreamResponse:
        return answer(next(statuses), "x")

    async def twice() -> list[int]:
        return [(await keys.run("k", fingerprint, handle, now=NOW)).response.status for _ in "ab"]

    assert asyncio.run(twice()) == [500, 201]
    assert keys.answers["k"].status == 201
