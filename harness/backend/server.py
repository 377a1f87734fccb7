"""The mock invoicing backend as a real HTTP server on 127.0.0.1 (aiohttp).

:class:`BackendServer` owns the ``web.Application``, binds the routes to its methods, listens on
an ephemeral port and keeps the last exchanges in :attr:`BackendServer.request_log` so that a
failing scenario can show what the phone asked and what it was told. Every error, including
unknown routes and unexpected exceptions, is answered as JSON::

    {"error": {"code": "invoice_not_found", "message": "Facture F-2026-0099 introuvable."}}

No card number leaves or stays: the processor answers with the masked PAN only, receipts that
look like they hold a full PAN are refused, and the request log masks any PAN-like run.

Cards saved on a customer record ("prise d'empreinte"): ``POST
/api/customers/{id}/card-captures`` starts a capture, the terminal's zero-amount request goes
to ``POST /api/card-captures/{id}/verification`` (answer ``85`` or the refusal), its final word
to ``POST /api/card-captures/{id}/result`` (saves the card on 85 + approved). Saved cards are
listed by ``GET /api/customers/{id}/payment-methods`` and pay an invoice with ``POST
/api/invoices/{number}/token-payments``, no terminal involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import socket
import string
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler

from harness.backend.faults import Fault, FaultPlan, Route
from harness.backend.openapi import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY_MAX,
    IDEMPOTENCY_KEY_PATTERN,
    KEYED_OPERATIONS,
    MUTATING_METHODS,
    REPLAYED_HEADER,
    RESPONSE_CODE_PATTERN,
    openapi_document,
)
from harness.backend.processor import CVMS, AuthorisationRequest, Processor
from harness.backend.store import (
    AUTHORISATION_HOLD,
    RECEIPT_COPIES,
    TERMINAL_RESULTS,
    BackendError,
    BackendStore,
    CardCapture,
    Customer,
    Invoice,
    Payment,
    Receipts,
    SavedCard,
    Terminal,
    invalid_field,
    redact_pans,
)
from simulator.protocol.carddata import CardDataError
from simulator.protocol.response_codes import ACCOUNT_VERIFIED, response_message

logger = logging.getLogger(__name__)

ERROR_STATUS: Mapping[str, int] = {
    "invalid_json": 400,
    "idempotency_key_required": 400,
    "idempotency_key_invalid": 400,
    "tpe_disabled": 403,
    "not_found": 404,
    "customer_not_found": 404,
    "invoice_not_found": 404,
    "payment_not_found": 404,
    "receipt_not_found": 404,
    "capture_not_found": 404,
    "payment_method_not_found": 404,
    "method_not_allowed": 405,
    "already_authorised": 409,
    "already_verified": 409,
    "not_verified": 409,
    "payment_method_not_for_customer": 409,
    "invoice_already_paid": 409,
    "invoice_payment_in_progress": 409,
    "not_authorised": 409,
    "payment_in_progress": 409,
    "result_conflict": 409,
    "terminal_not_associated": 409,
    "terminal_owned_elsewhere": 409,
    "terminal_not_found": 404,
    "transaction_mismatch": 409,
    "amount_mismatch": 422,
    "idempotency_key_reused": 422,
    "card_data_invalid": 422,
    "invalid_amount": 422,
    "invalid_field": 422,
    "receipt_contains_pan": 422,
    "internal_error": 500,
}
INVOICE_STATUSES = ("unpaid", "paid", "partially_paid")
#: What the app shows once the terminal has given its final word on a card capture.
CAPTURE_MESSAGES: Mapping[str, str] = {
    "saved": "Carte enregistrée sur la fiche client.",
    "duplicate": "Cette carte est déjà enregistrée pour ce client.",
    "declined": "Carte non enregistrée : la prise d'empreinte a été refusée.",
    "aborted": "Carte non enregistrée : la prise d'empreinte a été abandonnée.",
}
LOGGED_BODY_LIMIT = 2000
#: How long the backend remembers an idempotency key's answer (scenario time).
IDEMPOTENCY_TTL = timedelta(hours=24)
#: A key: 1 to 255 visible ASCII characters (the app sends a UUID 4).
IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)


@dataclass(frozen=True)
class RequestRecord:
    """One exchange with the backend, as kept in the request log."""

    method: str
    path: str
    status: int
    request_body: str
    response_body: str
    #: what happened besides the handler: "replayed", "injected 503 before the store", …
    note: str = ""

    def __str__(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.method} {self.path} -> {self.status}{note}\n"
            f"  > {self.request_body or '(no body)'}\n  < {self.response_body}"
        )


@dataclass(frozen=True)
class Fingerprint:
    """What a request with an idempotency key was: the same key must come with the same."""

    method: str
    path: str
    body_sha256: str


@dataclass(frozen=True)
class StoredAnswer:
    """An answer kept under an idempotency key, replayed as it was first sent."""

    fingerprint: Fingerprint
    status: int
    body: bytes
    content_type: str
    charset: str | None
    at: datetime

    def response(self) -> web.Response:
        response = web.Response(
            body=self.body,
            status=self.status,
            content_type=self.content_type,
            charset=self.charset,
        )
        response.headers[REPLAYED_HEADER] = "true"
        return response


@dataclass(frozen=True)
class Answer:
    response: web.StreamResponse
    replayed: bool


class IdempotencyKeys:
    """The backend's memory of keyed requests: key → (method, path, body digest, status,
    answer), kept :data:`IDEMPOTENCY_TTL` of scenario time.

    The first request with a key runs; its answer is kept unless it is a server error (5xx:
    the client may try again for real). A later request with the same key and the same
    method, path and body gets the kept answer back, with ``Idempotent-Replayed: true``,
    without reaching the store; one that arrives while the first is still being handled
    waits for it. The same key with another method, path or body is refused (422
    ``idempotency_key_reused``).
    """

    def __init__(self, ttl: timedelta = IDEMPOTENCY_TTL) -> None:
        self.ttl = ttl
        self.answers: dict[str, StoredAnswer] = {}
        self._running: dict[str, tuple[Fingerprint, asyncio.Future[None]]] = {}

    async def run(
        self,
        key: str,
        fingerprint: Fingerprint,
        handle: Callable[[], Awaitable[web.StreamResponse]],
        *,
        now: datetime,
    ) -> Answer:
        self._forget_older_than(now - self.ttl)
        while key in self._running:  # the same key in flight: wait for its answer
            running, done = self._running[key]
            if running != fingerprint:
                return Answer(_key_reused(), replayed=False)
            await asyncio.shield(done)
        stored = self.answers.get(key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return Answer(_key_reused(), replayed=False)
            return Answer(stored.response(), replayed=True)
        done = asyncio.get_running_loop().create_future()
        self._running[key] = (fingerprint, done)
        try:
            response = await handle()
            if isinstance(response, web.Response) and response.status < 500:
                body = response.body if isinstance(response.body, bytes) else b""
                self.answers[key] = StoredAnswer(
                    fingerprint,
                    response.status,
                    body,
                    response.content_type,
                    response.charset,
                    now,
                )
            return Answer(response, replayed=False)
        finally:
            del self._running[key]
            done.set_result(None)

    def _forget_older_than(self, limit: datetime) -> None:
        for key in [key for key, answer in self.answers.items() if answer.at < limit]:
            del self.answers[key]


def _key_reused() -> web.Response:
    return error_response(
        "idempotency_key_reused",
        f"La clé d'idempotence ({IDEMPOTENCY_HEADER}) a déjà servi pour une autre requête : "
        "chaque nouvelle opération demande une nouvelle clé.",
        field=IDEMPOTENCY_HEADER,
    )


class BackendServer:
    """The invoicing backend and card processor, served over loopback HTTP."""

    def __init__(
        self,
        store: BackendStore,
        processor: Processor,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        host: str = "127.0.0.1",
        port: int = 0,
        request_log_size: int = 50,
    ) -> None:
        self.store = store
        self.processor = processor
        self.request_log: deque[RequestRecord] = deque(maxlen=request_log_size)
        #: called after every request that may have changed the store (any method but GET,
        #: HEAD, OPTIONS), once it is answered: the standalone backend saves its database
        self.after_change: list[Callable[[], None]] = []
        #: per invoice, when its unconfirmed approval lapses (see :meth:`_lapse_later`)
        self._lapse_timers: dict[str, asyncio.TimerHandle] = {}
        self._now = now
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reopening: asyncio.Task[None] | None = None
        self._url: str | None = None
        #: what the middlewares say of requests in flight, for the request log ("replayed",
        #: "injected 503 …"), by ``id(request)``
        self._notes: dict[int, str] = {}
        #: answers kept under their ``Idempotency-Key`` (see :class:`IdempotencyKeys`)
        self.idempotency = IdempotencyKeys()
        self.app = web.Application(
            middlewares=[
                _exchange_middleware,
                _fault_middleware,
                _idempotency_middleware,
                _error_middleware,
            ]
        )
        self.app[BACKEND] = self
        self.app.add_routes(
            [
                _route(web.get, "/api/merchant", self.get_merchant),
                _route(web.get, "/api/terminals/{serial}", self.get_terminal),
                _route(web.get, "/api/billing/settings", self.get_billing_settings),
                _route(web.put, "/api/billing/settings", self.put_billing_settings),
                _route(web.get, "/api/terminals", self.list_terminals),
                _route(web.post, "/api/terminals", self.associate_terminal),
                _route(web.get, "/api/customers", self.list_customers),
                _route(web.get, "/api/customers/{customer_id}", self.get_customer),
                _route(web.get, "/api/invoices", self.list_invoices),
                _route(web.get, "/api/invoices/{number}", self.get_invoice),
                _route(web.post, "/api/invoices/{number}/payments", self.create_payment),
                _route(web.get, "/api/payments/{payment_id}", self.get_payment),
                _route(
                    web.post, "/api/payments/{payment_id}/authorisation", self.authorise_payment
                ),
                _route(web.post, "/api/payments/{payment_id}/result", self.record_result),
                _route(web.get, "/api/payments/{payment_id}/receipts", self.get_receipts),
                _route(web.post, "/api/customers/{customer_id}/card-captures", self.create_capture),
                _route(web.get, "/api/card-captures/{capture_id}", self.get_capture),
                _route(
                    web.post, "/api/card-captures/{capture_id}/verification", self.verify_capture
                ),
                _route(
                    web.post, "/api/card-captures/{capture_id}/result", self.record_capture_result
                ),
                _route(
                    web.get,
                    "/api/customers/{customer_id}/payment-methods",
                    self.list_payment_methods,
                ),
                _route(
                    web.post, "/api/invoices/{number}/token-payments", self.create_token_payment
                ),
                _route(web.get, "/openapi.json", self.get_openapi),
            ]
        )
        #: faults to inject (harness/backend/faults.py): errors, slow or lost answers, a
        #: closed port
        self.faults = FaultPlan(routes=tuple(_routes(self.app)))
        self.faults.on_listening = self._set_listening

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port`` (an ephemeral port by default). One start per instance."""
        if self._runner is not None:
            raise RuntimeError("BackendServer is already started")
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        assert runner.server is not None  # set up
        try:
            listener = await asyncio.get_running_loop().create_server(
                runner.server, self._host, self._port
            )
        except BaseException:
            await runner.cleanup()
            raise
        host, port = listener.sockets[0].getsockname()[:2]
        self._runner, self._listener = runner, listener
        self._loop = asyncio.get_running_loop()
        self._host, self._port = host, port  # a restart of the listener reuses the port
        self._url = f"http://{host}:{port}"
        if not self.faults.listening:
            self._set_listening(False)

    def _lapse_later(self, invoice_number: str) -> None:
        """The issuer lets an approval the terminal never confirmed lapse after
        :data:`AUTHORISATION_HOLD`, whether or not anyone touches the invoice again."""
        delay = AUTHORISATION_HOLD.total_seconds() + 1.0
        earlier = self._lapse_timers.pop(invoice_number, None)
        if earlier is not None:  # one approval held per invoice at a time: the newest counts
            earlier.cancel()
        loop = asyncio.get_running_loop()
        self._lapse_timers[invoice_number] = loop.call_later(delay, self._lapse, invoice_number)

    def _lapse(self, invoice_number: str) -> None:
        self._lapse_timers.pop(invoice_number, None)
        if self.store.release_stale_holds(invoice_number, self._now()):
            for hook in self.after_change:  # the standalone backend saves it
                hook()

    async def stop(self) -> None:
        """Close the listening socket and open connections, then clean the application up."""
        for handle in self._lapse_timers.values():
            handle.cancel()
        self._lapse_timers.clear()
        if self._reopening is not None:
            await asyncio.gather(self._reopening, return_exceptions=True)
            self._reopening = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def _set_listening(self, listening: bool) -> None:
        """Close the port (refused connections; idle keep-alive connections closed too) or
        listen again on the same port. Synchronous, so that a test or a scenario step between
        two loop runs can call it: the new socket listens at once (clients queue in its
        backlog) and the event loop starts accepting on it as soon as it runs."""
        if self._runner is None or self._runner.server is None:
            return  # not started: start() applies the plan
        if not listening:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for connection in self._runner.server.connections:
                connection.close()  # idle ones close now, busy ones after their answer
            return
        if self._listener is not None or self._reopening is not None:
            return
        assert self._loop is not None  # started
        sock = socket.create_server((self._host, self._port))  # SO_REUSEADDR on POSIX
        self._reopening = self._loop.create_task(self._serve(sock, self._runner.server))

    async def _serve(self, sock: socket.socket, handler: web.Server) -> None:
        try:
            listener = await asyncio.get_running_loop().create_server(handler, sock=sock)
        finally:
            self._reopening = None
        if self.faults.listening and self._runner is not None:
            self._listener = listener
        else:  # refused again, or stopped, meanwhile
            listener.close()

    async def __aenter__(self) -> BackendServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``; available once started."""
        if self._url is None:
            raise RuntimeError("BackendServer has not been started")
        return self._url

    def format_request_log(self) -> str:
        """The last exchanges, oldest first, for a failure report."""
        return "\n".join(str(record) for record in self.request_log) or "(no request)"

    async def get_openapi(self, request: web.Request) -> web.Response:
        """This API as an OpenAPI 3.1 document (harness/backend/openapi.py)."""
        return web.json_response(openapi_document())

    # -- billing settings and terminals --------------------------------------------------------

    async def get_billing_settings(self, request: web.Request) -> web.Response:
        return web.json_response({"tpe_enabled": self.store.billing.tpe_enabled})

    async def put_billing_settings(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        enabled = body.get("tpe_enabled")
        if not isinstance(enabled, bool):
            raise invalid_field("tpe_enabled")
        self.store.billing.tpe_enabled = enabled
        return web.json_response({"tpe_enabled": enabled})

    async def list_terminals(self, request: web.Request) -> web.Response:
        terminals = [terminal_json(t) for t in self.store.terminals.values()]
        return web.json_response({"terminals": terminals})

    async def get_merchant(self, request: web.Request) -> web.Response:
        """The merchant configuration a terminal downloads at its first setup."""
        merchant = self.store.merchant
        return web.json_response(
            {
                "id": merchant.id,
                "name": merchant.name,
                "city": merchant.city,
                "contract_number": merchant.contract_number,
            }
        )

    async def get_terminal(self, request: web.Request) -> web.Response:
        """A terminal of this merchant (200), one it may associate (404 terminal_not_found),
        or one another merchant holds (409 terminal_owned_elsewhere): the app asks before
        pairing, so that a refused terminal leaves no bond behind."""
        serial = request.match_info["serial"]
        self.store.check_terminal_available(serial)
        terminal = self.store.terminals.get(serial)
        if terminal is None:
            raise BackendError("terminal_not_found", f"Le terminal {serial} n'est pas associé.")
        return web.json_response(terminal_json(terminal))

    async def associate_terminal(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        terminal, created = self.store.associate_terminal(
            serial=_text(body, "serial"),
            model=_text(body, "model"),
            firmware=_text(body, "firmware"),
            now=self._now(),
        )
        return web.json_response(terminal_json(terminal), status=201 if created else 200)

    # -- customers and invoices ------------------------------------------------------------

    async def list_customers(self, request: web.Request) -> web.Response:
        customers = [customer_json(c) for c in self.store.customers.values()]
        return web.json_response({"customers": customers})

    async def get_customer(self, request: web.Request) -> web.Response:
        customer = self.store.customer(request.match_info["customer_id"])
        invoices = [i.number for i in self.store.invoices.values() if i.customer_id == customer.id]
        methods = [saved_card_json(m) for m in self.store.customer_payment_methods(customer.id)]
        return web.json_response(
            {**customer_json(customer), "invoices": invoices, "payment_methods": methods}
        )

    async def list_invoices(self, request: web.Request) -> web.Response:
        status = request.query.get("status")
        if status is not None and status not in INVOICE_STATUSES:
            raise invalid_field("status")
        invoices = [
            invoice_json(self.store, invoice, self._now())
            for invoice in self.store.invoices.values()
            if status is None or invoice.status == status
        ]
        return web.json_response({"invoices": invoices})

    async def get_invoice(self, request: web.Request) -> web.Response:
        invoice = self.store.invoice(request.match_info["number"])
        return web.json_response(invoice_json(self.store, invoice, self._now()))

    # -- card payments -----------------------------------------------------------------------

    async def create_payment(self, request: web.Request) -> web.Response:
        invoice = self.store.invoice(request.match_info["number"])
        body = await _json_object(request)
        if body.get("method") != "tpe":
            raise invalid_field("method")
        payment = self.store.start_tpe_payment(
            invoice.number,
            amount_cents=body.get("amount_cents"),  # checked by the store: invalid_amount
            terminal_serial=_text(body, "terminal_serial"),
            now=self._now(),
        )
        return web.json_response(
            {
                "payment_id": payment.id,
                "transaction_id": payment.transaction_id,
                "amount_cents": payment.amount_cents,
                "currency": payment.currency,
                "reference": payment.invoice_number,
                "status": payment.status,
            },
            status=201,
        )

    async def get_payment(self, request: web.Request) -> web.Response:
        return web.json_response(payment_json(self.store.payment(request.match_info["payment_id"])))

    async def authorise_payment(self, request: web.Request) -> web.Response:
        payment = self.store.payment(request.match_info["payment_id"])
        body = await _json_object(request)
        authorisation = _authorisation_request(body)
        payment, decision = self.store.authorise(  # CardDataError: see _error_middleware
            payment.id, authorisation, self.processor, now=self._now()
        )
        if payment.status == "authorised":
            self._lapse_later(payment.invoice_number)
        return web.json_response(
            {
                "transaction_id": payment.transaction_id,
                "response_code": decision.response_code,
                "approved": decision.approved,
                "authorisation_code": payment.authorisation_code,
                "message": decision.message,
                "pin_tries_left": decision.pin_tries_left,
                "arpc": decision.arpc,
            }
        )

    async def record_result(self, request: web.Request) -> web.Response:
        payment = self.store.payment(request.match_info["payment_id"])
        body = await _json_object(request)
        terminal_result = _choice(body, "result", TERMINAL_RESULTS)
        transaction_id = _text(body, "transaction_id")
        receipts = None if body.get("receipts") is None else Receipts.from_json(body["receipts"])
        code = body.get("response_code")
        if code is not None and (not isinstance(code, str) or not RESPONSE_CODE.fullmatch(code)):
            raise invalid_field("response_code")
        payment = self.store.record_result(
            payment.id,
            transaction_id,
            terminal_result,
            now=self._now(),
            receipts=receipts,
            response_code=code,
        )
        invoice = self.store.invoice(payment.invoice_number)
        return web.json_response(
            {
                "payment": payment_json(payment),
                "invoice": invoice_json(self.store, invoice, self._now()),
            }
        )

    async def get_receipts(self, request: web.Request) -> web.Response:
        receipts = self.store.receipts(request.match_info["payment_id"])
        return web.json_response({copy: receipts.text(copy) for copy in RECEIPT_COPIES})

    # -- cards saved on the customer record --------------------------------------------------

    async def create_capture(self, request: web.Request) -> web.Response:
        customer = self.store.customer(request.match_info["customer_id"])
        body = await _json_object(request)
        capture = self.store.start_card_capture(
            customer.id, terminal_serial=_text(body, "terminal_serial"), now=self._now()
        )
        return web.json_response(
            {
                "capture_id": capture.id,
                "transaction_id": capture.transaction_id,
                "customer_id": capture.customer_id,
                "status": capture.status,
            },
            status=201,
        )

    async def get_capture(self, request: web.Request) -> web.Response:
        return web.json_response(capture_json(self.store.capture(request.match_info["capture_id"])))

    async def verify_capture(self, request: web.Request) -> web.Response:
        capture = self.store.capture(request.match_info["capture_id"])
        body = await _json_object(request)
        verification = _authorisation_request(body)
        capture, decision = self.store.verify_card(  # CardDataError: see _error_middleware
            capture.id, verification, self.processor, now=self._now()
        )
        return web.json_response(
            {
                "transaction_id": capture.transaction_id,
                "response_code": decision.response_code,
                "approved": decision.response_code == ACCOUNT_VERIFIED,
                "message": decision.message,
                "arpc": decision.arpc,
            }
        )

    async def record_capture_result(self, request: web.Request) -> web.Response:
        capture = self.store.capture(request.match_info["capture_id"])
        body = await _json_object(request)
        terminal_result = _choice(body, "result", TERMINAL_RESULTS)
        capture = self.store.record_capture_result(
            capture.id, _text(body, "transaction_id"), terminal_result, now=self._now()
        )
        method = (
            None
            if capture.payment_method_id is None
            else self.store.payment_method(capture.payment_method_id)
        )
        if capture.status == "saved":
            message = CAPTURE_MESSAGES["duplicate" if capture.duplicate else "saved"]
        elif capture.response_code not in (None, ACCOUNT_VERIFIED):  # the bank's refusal
            message = f"Carte non enregistrée : {response_message(capture.response_code)}."
        else:
            message = CAPTURE_MESSAGES[capture.status]
        return web.json_response(
            {
                "capture": capture_json(capture),
                "duplicate": capture.duplicate,
                "payment_method": None if method is None else saved_card_json(method),
                "message": message,
            }
        )

    async def list_payment_methods(self, request: web.Request) -> web.Response:
        methods = self.store.customer_payment_methods(request.match_info["customer_id"])
        return web.json_response({"payment_methods": [saved_card_json(m) for m in methods]})

    async def create_token_payment(self, request: web.Request) -> web.Response:
        invoice = self.store.invoice(request.match_info["number"])
        body = await _json_object(request)
        payment, decision = self.store.charge_saved_card(
            invoice.number,
            _text(body, "payment_method_id"),
            self.processor,
            now=self._now(),
            amount_cents=body.get("amount_cents"),  # checked by the store: invalid_amount
        )
        return web.json_response(
            {
                "payment": payment_json(payment),
                "invoice": invoice_json(self.store, invoice, self._now()),
                "response_code": decision.response_code,
                "approved": decision.approved,
                "authorisation_code": payment.authorisation_code,
                "message": decision.message,
            },
            status=201,
        )

    # -- request log ---------------------------------------------------------------------------

    async def record_exchange(
        self, request: web.Request, response: web.StreamResponse | None
    ) -> None:
        """Log one exchange; ``response`` None: the connection was cut, no answer (status 0)."""
        try:
            request_body = await request.text() if request.body_exists else ""
        except Exception:  # too large, not UTF-8, or the connection already cut
            request_body = "(unreadable)"
        response_body = ""
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            response_body = response.body.decode("utf-8", errors="replace")
        self.request_log.append(
            RequestRecord(
                method=request.method,
                path=request.path_qs,
                status=0 if response is None else response.status,
                request_body=redact_pans(request_body)[:LOGGED_BODY_LIMIT],
                response_body=redact_pans(response_body)[:LOGGED_BODY_LIMIT],
                note=self._notes.get(id(request), ""),
            )
        )
        logger.debug("backend: %s", self.request_log[-1])


BACKEND = web.AppKey("backend", BackendServer)


def _route(
    verb: Callable[..., web.RouteDef], path: str, handler: Callable[[web.Request], Any]
) -> web.RouteDef:
    """A route named after its handler (``create_payment``): faults name routes that way."""
    return verb(path, handler, name=handler.__name__)


def _routes(app: web.Application) -> Iterator[Route]:
    for route in app.router.routes():
        if route.method != "HEAD" and route.name is not None and route.resource is not None:
            yield Route(route.name, route.method, route.resource.canonical)


RESPONSE_CODE = re.compile(RESPONSE_CODE_PATTERN)  # ISO 8583 field 39
#: How an injected error answers (a real gateway's words); any other status: "http_error".
INJECTED_ERRORS: Mapping[int, tuple[str, str]] = {
    500: ("internal_error", "Erreur interne du serveur."),
    502: ("bad_gateway", "Passerelle en erreur : réessayez dans quelques instants."),
    503: (
        "service_unavailable",
        "Service momentanément indisponible : réessayez dans quelques instants.",
    ),
    504: ("gateway_timeout", "Le serveur n'a pas répondu à temps : réessayez."),
}


@web.middleware
async def _exchange_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log every exchange (outermost: it sees injected faults and replays too), then call the
    ``after_change`` hooks."""
    backend = request.app[BACKEND]
    response: web.StreamResponse
    try:
        try:
            response = await handler(request)
        except (asyncio.CancelledError, ConnectionError):
            # The connection was cut: on purpose (a fault), or the client went away before
            # its request could be read. Log it, then let aiohttp close it, as it does for a
            # client gone mid-request.
            await backend.record_exchange(request, None)
            _after_change(request)
            raise asyncio.CancelledError from None
        except Exception:  # a bug in a middleware: still a JSON answer
            logger.exception("unexpected error on %s %s", request.method, request.path)
            response = error_response("internal_error", "Erreur interne du serveur.")
        await backend.record_exchange(request, response)
    finally:
        backend._notes.pop(id(request), None)
    _after_change(request)
    return response


def _after_change(request: web.Request) -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        for hook in request.app[BACKEND].after_change:
            hook()


@web.middleware
async def _fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the server's :class:`FaultPlan`: delays and errors before the request reaches
    the idempotency keys and the store, lost answers after."""
    plan = request.app[BACKEND].faults
    if not plan.faults:
        return await handler(request)
    name = request.match_info.route.name
    method, path = request.method, request.path
    struck: list[Fault] = []
    while (fault := plan.strike(("fail", "delay"), method, path, name, struck)) is not None:
        struck.append(fault)
        _note(request, fault.describe())
        if fault.kind == "delay":
            # Received in full, then slow to handle: a client that gives up meanwhile does not
            # stop the request from reaching the store (its retry must not apply it twice).
            with contextlib.suppress(web.HTTPException):  # too large: the handler says so
                await request.read()
            await asyncio.sleep(fault.seconds)
            continue  # a fault armed meanwhile may strike too
        return _injected(request, fault.status)
    response = await handler(request)
    fault = plan.strike(("fail_after",), method, path, name)
    if fault is not None:
        _note(request, fault.describe())
        return _injected(request, fault.status)
    return response


def _note(request: web.Request, note: str) -> None:
    notes = request.app[BACKEND]._notes
    previous = notes.get(id(request))
    notes[id(request)] = note if not previous else f"{previous}; {note}"


def _injected(request: web.Request, status: int | None) -> web.Response:
    """An injected error answer, or (``status`` None) the connection cut with no answer."""
    if status is None:
        if request.transport is not None:
            request.transport.close()
        # aiohttp's own path for a client gone mid-request: no answer is written.
        raise asyncio.CancelledError
    code, message = INJECTED_ERRORS.get(status, ("http_error", f"Erreur du serveur ({status})."))
    response = web.json_response({"error": {"code": code, "message": message}}, status=status)
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response


@web.middleware
async def _idempotency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``Idempotency-Key`` on mutating requests: required on the operations of
    :data:`~harness.backend.openapi.KEYED_OPERATIONS`, honoured on the others. A replay gets
    the first answer back; the key reused for another request is a 422."""
    route = request.match_info
    if request.method not in MUTATING_METHODS or route.http_exception is not None:
        return await handler(request)  # reads, and unknown routes or methods (404, 405)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None or not key.strip():
        template = route.route.resource.canonical if route.route.resource is not None else ""
        if (request.method.lower(), template) in KEYED_OPERATIONS:
            return error_response(
                "idempotency_key_required",
                f"En-tête {IDEMPOTENCY_HEADER} manquant : cette opération exige une clé "
                "d'idempotence, la même à chaque nouvel essai de la même opération.",
                field=IDEMPOTENCY_HEADER,
            )
        return await handler(request)
    if not IDEMPOTENCY_KEY.fullmatch(key):
        return error_response(
            "idempotency_key_invalid",
            f"En-tête {IDEMPOTENCY_HEADER} invalide : de 1 à {IDEMPOTENCY_KEY_MAX} caractères "
            "ASCII visibles (un UUID, par exemple).",
            field=IDEMPOTENCY_HEADER,
        )
    backend = request.app[BACKEND]
    try:
        body = await request.read()
    except web.HTTPException:  # too large: let the handler answer it
        return await handler(request)
    request_digest = hashlib.sha256(body).hexdigest()
    answer = await backend.idempotency.run(
        key,
        Fingerprint(request.method, request.path_qs, request_digest),
        lambda: handler(request),
        now=backend._now(),
    )
    if answer.replayed:
        _note(request, "replayed")
    return answer.response


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error."""
    try:
        return await handler(request)
    except BackendError as exc:
        return error_response(exc.code, exc.message, field=exc.field)
    except CardDataError as exc:  # the terminal's sealed card data did not open
        subject = next(iter(request.match_info.values()), request.path)  # payment or capture
        logger.info("card data refused for %s: %s", subject, exc)
        error = _card_data_invalid()
        return error_response(error.code, error.message, field=error.field)
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response("not_found", "Ressource introuvable.")
        if exc.status == 405:
            return error_response("method_not_allowed", "Méthode non autorisée.")
        return web.json_response(
            {"error": {"code": "http_error", "message": exc.reason}}, status=exc.status
        )
    except Exception:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return error_response("internal_error", "Erreur interne du serveur.")


def error_response(code: str, message: str, *, field: str | None = None) -> web.Response:
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=ERROR_STATUS.get(code, 400))


# -- request bodies -------------------------------------------------------------------------


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.text())
    except (ValueError, RecursionError):  # bad JSON or UTF-8, or a number beyond the digit limit
        raise BackendError(
            "invalid_json", "Le corps de la requête n'est pas un JSON valide."
        ) from None
    if not isinstance(body, dict):
        raise BackendError("invalid_json", "Le corps de la requête doit être un objet JSON.")
    return body


def _authorisation_request(body: Mapping[str, Any]) -> AuthorisationRequest:
    """The terminal's authorisation request (a payment's, or a card capture's at 0)."""
    return AuthorisationRequest(
        transaction_id=_text(body, "transaction_id"),
        amount_cents=_integer(body, "amount_cents"),
        currency=_text(body, "currency"),
        entry_mode=_text(body, "entry_mode"),
        brand=_text(body, "brand"),
        card_data=_required(body, "card_data"),
        emv=_emv(body),
        cvm=_choice(body, "cvm", CVMS, default="none"),
    )


def _card_data_invalid() -> BackendError:
    return BackendError(
        "card_data_invalid",
        "Les données de carte sont illisibles ou ont été altérées.",
        field="card_data",
    )


def _required(body: Mapping[str, Any], name: str) -> Any:
    if body.get(name) is None:
        raise invalid_field(name)
    return body[name]


def _text(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise invalid_field(name)
    return value


_Choice = TypeVar("_Choice", bound=str)


def _choice(
    body: Mapping[str, Any], name: str, choices: tuple[_Choice, ...], *, default: str | None = None
) -> _Choice:
    """``body[name]``, one of ``choices`` (``default`` when absent; no default: required)."""
    value = body.get(name, default)
    if value not in choices:
        raise invalid_field(name)
    return choices[choices.index(value)]


def _integer(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if type(value) is not int:
        raise invalid_field(name)
    return value


def _emv(body: Mapping[str, Any]) -> dict[str, str]:
    emv = body.get("emv", {})
    if not isinstance(emv, dict) or not all(
        isinstance(tag, str)
        and isinstance(value, str)
        and len(value) % 2 == 0
        and all(c in string.hexdigits for c in value)
        for tag, value in emv.items()
    ):
        raise invalid_field("emv")
    return emv


# -- JSON views -----------------------------------------------------------------------------


def customer_json(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "address": customer.address,
        "postcode": customer.postcode,
        "city": customer.city,
        "email": customer.email,
        "phone": customer.phone,
    }


def payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "invoice_number": payment.invoice_number,
        "method": payment.method,
        "status": payment.status,
        "amount_cents": payment.amount_cents,
        "currency": payment.currency,
        "transaction_id": payment.transaction_id,
        "terminal_serial": payment.terminal_serial,
        "entry_mode": payment.entry_mode,
        "brand": payment.brand,
        "masked_pan": payment.masked_pan,
        "response_code": payment.response_code,
        "authorisation_code": payment.authorisation_code,
        "cvm": payment.cvm,
        "terminal_result": payment.terminal_result,
        "payment_method_id": payment.payment_method_id,
        "created_at": payment.created_at.isoformat(),
        "updated_at": payment.updated_at.isoformat(),
    }


def saved_card_json(method: SavedCard) -> dict[str, Any]:
    """A saved card as the app shows it ("Visa •••• 4242, 12/29"): never the PAN, nor the
    issuer's card reference."""
    return {
        "id": method.id,
        "brand": method.brand,
        "last4": method.last4,
        "exp_month": method.exp_month,
        "exp_year": method.exp_year,
        "fingerprint": method.fingerprint,
        "created_at": method.created_at.isoformat(),
    }


def capture_json(capture: CardCapture) -> dict[str, Any]:
    return {
        "id": capture.id,
        "customer_id": capture.customer_id,
        "transaction_id": capture.transaction_id,
        "terminal_serial": capture.terminal_serial,
        "status": capture.status,
        "entry_mode": capture.entry_mode,
        "brand": capture.brand,
        "masked_pan": capture.masked_pan,
        "cvm": capture.cvm,
        "response_code": capture.response_code,
        "terminal_result": capture.terminal_result,
        "payment_method_id": capture.payment_method_id,
        "created_at": capture.created_at.isoformat(),
        "updated_at": capture.updated_at.isoformat(),
    }


def invoice_json(store: BackendStore, invoice: Invoice, now: datetime) -> dict[str, Any]:
    """An invoice; ``payment_in_progress``: a card payment of it is under way (waiting for a
    card, or approved and waiting for the terminal's word), so an app can say so before it
    even connects to a terminal."""
    return {
        "number": invoice.number,
        "customer_id": invoice.customer_id,
        "customer": customer_json(store.customer(invoice.customer_id)),
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "amount_cents": invoice.amount_cents,
        "balance_due_cents": invoice.balance_due_cents,
        "currency": invoice.currency,
        "status": invoice.status,
        "payment_in_progress": store.payment_in_progress(invoice.number, now),
        "lines": [
            {
                "label": line.label,
                "quantity": line.quantity,
                "unit_price_cents": line.unit_price_cents,
                "total_cents": line.total_cents,
            }
            for line in invoice.lines
        ],
        "payments": [payment_json(p) for p in invoice.payments],
        "attempts": [
            {
                "payment_id": attempt.payment_id,
                "at": attempt.at.isoformat(),
                "amount_cents": attempt.amount_cents,
                "outcome": attempt.outcome,
                "response_code": attempt.response_code,
            }
            for attempt in invoice.attempts
        ],
    }


def terminal_json(terminal: Terminal) -> dict[str, Any]:
    return {
        "serial": terminal.serial,
        "model": terminal.model,
        "firmware": terminal.firmware,
        "associated_at": terminal.associated_at.isoformat(),
    }
