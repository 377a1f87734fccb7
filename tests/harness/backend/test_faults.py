"""The backend's fault plan: route specs a script can write, errors before the store, answers
lost after it, and what the request log says of them. (Slow answers and the closed port are
exercised with the app's client on virtual time: tests/harness/app/test_backend_client.py.)"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from harness.backend.faults import FaultPlan, Route, RouteSpec
from harness.backend.store import Invoice

if TYPE_CHECKING:
    from tests.harness.backend.conftest import Backend

PAYMENTS = Route("create_payment", "POST", "/api/invoices/{number}/payments")
INVOICE = Route("get_invoice", "GET", "/api/invoices/{number}")
AUTHORISATION = Route("authorise_payment", "POST", "/api/payments/{payment_id}/authorisation")


# -- route specs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "method", "path", "name", "strikes"),
    [
        ("create_payment", "POST", "/api/invoices/F-1/payments", "create_payment", True),
        ("create_payment", "GET", "/api/invoices/F-1", "get_invoice", False),
        ("POST /api/payments/*/authorisation", "POST", "/api/payments/P-7/authorisation", "", True),
        ("POST /api/payments/*/authorisation", "POST", "/api/payments/P-7/result", "", False),
        ("POST /api/payments/*/authorisation", "GET", "/api/payments/P-7/authorisation", "", False),
        ("/api/invoices/{number}", "GET", "/api/invoices/F-1", "", True),
        ("/api/invoices/{number}", "GET", "/api/invoices/F-1/payments", "", False),
        ("* /api/invoices/F-1", "GET", "/api/invoices/F-1", "", True),
        ("GET /api/invoices/F-1", "GET", "/api/invoices/F-2", "", False),
        ("*", "PUT", "/anything/at/all", "", True),
    ],
)
def test_a_route_spec_strikes_the_requests_it_names(
    spec: str, method: str, path: str, name: str, strikes: bool
) -> None:
    assert RouteSpec.parse(spec).matches(method, path, name or None) is strikes


@pytest.mark.parametrize(
    "spec",
    ["create_paiement", "POST /api/paiements/*", "DELETE /api/invoices/*", "GET /api/invoices"],
)
def test_a_spec_that_strikes_no_route_is_refused_with_the_known_ones(spec: str) -> None:
    plan = FaultPlan(routes=(PAYMENTS, INVOICE, AUTHORISATION))
    with pytest.raises(ValueError, match="matches no route") as refused:
        plan.fail(spec)
    assert "create_payment (POST /api/invoices/{number}/payments)" in str(refused.value)
    assert plan.faults == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda plan: plan.fail("", 503), "non-empty"),
        (lambda plan: plan.fail("FETCH /api/x"), "unknown method"),
        (lambda plan: plan.fail("POST api/x"), "must start with '/'"),
        (lambda plan: plan.fail("a b c"), "route name or 'METHOD /path'"),
        (lambda plan: plan.fail("create_payment", status=200), "400-599"),
        (lambda plan: plan.fail("create_payment", status=True), "400-599"),
        (lambda plan: plan.fail_after("create_payment", times=0), "times"),
        (lambda plan: plan.delay("create_payment", seconds=-1), "seconds"),
    ],
)
def test_nonsense_is_refused_with_a_clear_error(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(FaultPlan(routes=(PAYMENTS,)))


def test_faults_strike_as_many_times_as_asked_in_the_order_armed() -> None:
    plan = FaultPlan(routes=(PAYMENTS, INVOICE))
    first = plan.fail("create_payment", status=502, times=2)
    always = plan.fail("*", status=504, times=None)
    path = "/api/invoices/F-1/payments"
    struck = [plan.strike(("fail",), "POST", path, "create_payment") for _ in range(4)]
    assert [f.status if f else None for f in struck] == [502, 502, 504, 504]
    assert (first.hits, always.hits) == (2, 2)
    assert plan.faults == [always]  # spent faults are dropped
    assert plan.strike(("fail_after",), "POST", path, "create_payment") is None
    plan.clear()
    assert plan.strike(("fail",), "POST", path, "create_payment") is None


def test_the_server_names_every_route_after_its_handler(backend: Backend) -> None:
    names = backend.server.faults.route_names
    assert "create_payment" in names
    assert "authorise_payment" in names
    assert len(names) == len(set(names))
    for name in names:
        assert callable(getattr(backend.server, name))


# -- on the server -------------------------------------------------------------------------------


def start(backend: Backend, invoice: Invoice, key: str | None = None) -> Any:
    return backend.post(
        f"/api/invoices/{invoice.number}/payments",
        {"method": "tpe", "terminal_serial": "SIM0001"},
        key=key or str(uuid.uuid4()),
    )


def test_an_error_injected_before_the_store_means_nothing_happened(
    backend: Backend, invoice: Invoice
) -> None:
    fault = backend.server.faults.fail("POST /api/invoices/*/payments", status=503)
    reply = start(backend, invoice)
    assert (reply.status, reply.error_code) == (503, "service_unavailable")
    assert reply.headers.get("Retry-After") == "1"
    assert invoice.payments == []
    assert fault.hits == 1
    record = backend.server.request_log[-1]
    assert (record.status, record.note) == (503, "injected 503 before the store")
    assert start(backend, invoice).status == 201  # struck once only


def test_an_answer_lost_after_the_store_is_found_again_under_its_key(
    backend: Backend, invoice: Invoice
) -> None:
    backend.server.faults.fail_after("create_payment", status=502)
    key = str(uuid.uuid4())
    lost = start(backend, invoice, key)
    assert (lost.status, lost.error_code) == (502, "bad_gateway")
    assert [p.status for p in invoice.payments] == ["pending"]  # it was applied
    again = start(backend, invoice, key)
    assert again.status == 201
    assert again.body["payment_id"] == invoice.payments[0].id
    assert len(invoice.payments) == 1
    notes = [r.note for r in backend.server.request_log][-2:]
    assert notes == ["injected 502 after the store applied it", "replayed"]


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_cut_connection_gives_no_answer_at_all(
    backend: Backend, invoice: Invoice, after: bool
) -> None:
    faults = backend.server.faults
    (faults.fail_after if after else faults.fail)("create_payment", status=None)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        start(backend, invoice)
    assert len(invoice.payments) == (1 if after else 0)
    record = backend.server.request_log[-1]
    assert record.status == 0
    assert "connection cut" in record.note
    assert start(backend, invoice).status == 201  # the server goes on serving


def test_faults_may_target_one_invoice_only(backend: Backend, invoice: Invoice) -> None:
    other = backend.new_invoice(1200)
    backend.server.faults.fail(f"POST /api/invoices/{invoice.number}/payments", times=None)
    assert start(backend, invoice).status == 503
    assert start(backend, other).status == 201
    assert start(backend, invoice).status == 503


def test_reads_can_fail_too_and_clear_disarms_everything(
    backend: Backend, invoice: Invoice
) -> None:
    backend.server.faults.fail("get_invoice", status=504, times=None)
    assert backend.get(f"/api/invoices/{invoice.number}").status == 504
    assert backend.get("/api/merchant").status == 200
    backend.server.faults.clear()
    assert backend.get(f"/api/invoices/{invoice.number}").status == 200


def test_the_port_closes_and_opens_again_on_the_same_address(backend: Backend) -> None:
    url = backend.server.url
    backend.server.faults.refuse_connections()

    async def fresh_get() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/api/merchant") as response,
        ):
            return response.status

    with pytest.raises(aiohttp.ClientConnectorError):
        backend.runner.run(fresh_get())
    backend.server.faults.accept_connections()
    assert backend.runner.run(fresh_get()) == 200
    assert backend.server.url == url
