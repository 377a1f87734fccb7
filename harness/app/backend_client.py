"""The app's HTTP client for the invoicing backend: JSON, idempotency keys, retries.

Every mutating request (POST, PUT) carries an ``Idempotency-Key``: one UUID 4 per logical
operation (one call of an endpoint method), the same on every retry of it, so that the backend
answers a retry with the answer it already gave instead of applying the request twice. A caller
that must repeat an operation across an app restart passes its own ``idempotency_key``.

Retries follow a :class:`RetryPolicy`: only where it is safe (reads, and keyed writes: all of
them here), only on transport failures (connection refused or reset, no answer in time) and
gateway errors (502, 503, 504), never on a 4xx. Waits grow exponentially with jitter from a
seedable :class:`random.Random` and are ``asyncio.sleep``: on the World's virtual clock they
cost no wall time. When every attempt failed, :class:`BackendUnreachable` says in French what
failed and how many attempts were made.

:attr:`BackendClient.offline` is a phone with no network: every request fails at once.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

IDEMPOTENCY_HEADER = "Idempotency-Key"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Gateway errors: the backend (or what stands before it) could not answer; worth a retry.
RETRYABLE_STATUSES = frozenset({502, 503, 504})
OFFLINE_MESSAGE = (
    "Pas de connexion Internet sur le téléphone : activez les données mobiles ou le Wi-Fi, "
    "puis réessayez."
)


class BackendError(Exception):
    """The backend refused a request; ``message`` is French, for the user."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BackendUnreachable(BackendError):
    """No answer from the backend: no network, or every attempt failed. ``attempts``: HTTP
    attempts made (0 when the phone is offline); ``detail``: the last failure, for logs."""

    def __init__(
        self,
        detail: str,
        message: str = "Serveur injoignable : vérifiez la connexion.",
        *,
        attempts: int = 1,
        code: str = "backend_unreachable",
    ) -> None:
        super().__init__(0, code, message)
        self.detail = detail
        self.attempts = attempts


@dataclass(frozen=True)
class RetryPolicy:
    """When and how the client tries a request again.

    - ``attempts`` (4): HTTP attempts at most, the first included;
    - ``base_delay`` (0.5 s), ``max_delay`` (8 s): the wait before retry *n* is
      ``min(max_delay, base_delay * 2 ** (n - 1))``, shortened by a random share of up to
      ``jitter`` (0.5: between half and all of it), so that phones do not retry in step;
    - ``request_timeout`` (10 s): one attempt's budget, connection and answer included;
    - ``deadline`` (25 s): the whole operation's budget, waits included; no attempt starts
      after it and the last one is cut at it. 25 s keeps an authorisation relay within the
      terminal's 30-second wait for the bank's answer. None: no overall budget.

    All in loop seconds.
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    request_timeout: float = 10.0
    deadline: float | None = 25.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if min(self.base_delay, self.max_delay) < 0 or self.request_timeout <= 0:
            raise ValueError("RetryPolicy: delays must be >= 0 and the timeout > 0")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")
        if self.deadline is not None and self.deadline <= 0:
            raise ValueError("RetryPolicy.deadline must be > 0 (or None)")

    def backoff(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number ``retry`` (1: the second attempt)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return ceiling * (1 - self.jitter * rng.random())


#: No retry at all (tests, or an operation that must fail fast).
NO_RETRY = RetryPolicy(attempts=1)


class BackendClient:
    """JSON over HTTP; one ``aiohttp.ClientSession`` per app.

    ``policy``: the :class:`RetryPolicy` (documented defaults); ``rng``: the jitter's random
    generator (seed it for a reproducible run; the default is seeded with 0).
    """

    def __init__(
        self,
        base_url: str,
        policy: RetryPolicy | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random(0)
        #: the phone has no network: every request fails at once with BackendUnreachable
        self.offline = False
        self._session: aiohttp.ClientSession | None = None
        #: every response body received, as received (for the card-number leak scan)
        self.received: list[str] = []
        #: HTTP attempts made, retries included (what the backend may have seen)
        self.attempts = 0

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send one logical request, retried per the policy; its decoded JSON answer.

        Raises :class:`BackendError` on the backend's refusal (4xx, or a 5xx not worth a
        retry) and :class:`BackendUnreachable` when offline or when every attempt failed.
        """
        if self.offline:
            raise _offline()
        headers = {}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body).encode()  # once: every retry sends the same bytes
            headers["Content-Type"] = "application/json"
        if method.upper() in MUTATING_METHODS:
            headers[IDEMPOTENCY_HEADER] = idempotency_key or str(uuid.uuid4())
        # Every request here may be retried: reads, and writes that carry their key.
        loop = asyncio.get_running_loop()
        policy = self.policy
        give_up = None if policy.deadline is None else loop.time() + policy.deadline
        failure = detail = ""
        made = 0
        for attempt in range(1, policy.attempts + 1):
            if attempt > 1:
                wait = policy.backoff(attempt - 1, self.rng)
                if give_up is not None and loop.time() + wait >= give_up:
                    break
                await asyncio.sleep(wait)
                if self.offline:
                    raise _offline()
            timeout = policy.request_timeout
            if give_up is not None:
                timeout = min(timeout, give_up - loop.time())
            made += 1
            self.attempts += 1
            try:
                status, text = await self._send(method, path, data, headers, timeout)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                failure = _describe(exc, timeout)
                detail = repr(exc)
                continue
            except aiohttp.ClientError as exc:  # a bad URL, a malformed answer: no retry
                raise BackendUnreachable(repr(exc), attempts=made) from exc
            if status in RETRYABLE_STATUSES:
                failure = f"erreur {status} du serveur"
                detail = f"HTTP {status}: {text[:200]}"
                continue
            return _decode(status, text)
        raise BackendUnreachable(
            detail,
            f"Serveur injoignable ({failure}, {made} tentative{'s' if made > 1 else ''}) : "
            "vérifiez la connexion du téléphone, puis réessayez.",
            attempts=made,
        )

    async def _send(
        self,
        method: str,
        path: str,
        data: bytes | None,
        headers: dict[str, str],
        timeout: float,
    ) -> tuple[int, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        async with self._session.request(
            method,
            f"{self.base_url}{path}",
            data=data,
            headers=headers,
            # exact, in loop time (aiohttp rounds timeouts above ceil_threshold up to a second)
            timeout=aiohttp.ClientTimeout(total=timeout, ceil_threshold=timeout + 1),
        ) as response:
            text = await response.text()
        self.received.append(text)
        return response.status, text

    # ------------------------------------------------------------------ endpoints
    async def billing_settings(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/api/billing/settings")
        return result

    async def invoice(self, number: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", f"/api/invoices/{quote(number, safe='')}"
        )
        return result

    async def create_payment(
        self, number: str, terminal_serial: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/invoices/{quote(number, safe='')}/payments",
            {"method": "tpe", "terminal_serial": terminal_serial},
            idempotency_key=idempotency_key,
        )
        return result

    async def authorise(
        self, payment_id: str, request: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/payments/{quote(payment_id, safe='')}/authorisation",
            request,
            idempotency_key=idempotency_key,
        )
        return result

    async def report_result(
        self,
        payment_id: str,
        transaction_id: str,
        result: str,
        receipts: dict[str, list[str]] | None = None,
        response_code: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"transaction_id": transaction_id, "result": result}
        if receipts:
            body["receipts"] = receipts
        if response_code is not None:
            body["response_code"] = response_code
        answer: dict[str, Any] = await self.request(
            "POST",
            f"/api/payments/{quote(payment_id, safe='')}/result",
            body,
            idempotency_key=idempotency_key,
        )
        return answer

    async def receipts(self, payment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", f"/api/payments/{quote(payment_id, safe='')}/receipts"
        )
        return result

    async def merchant(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/api/merchant")
        return result

    async def check_terminal(self, serial: str) -> None:
        """Raises :class:`BackendError` (409) when another merchant account holds it."""
        try:
            await self.request("GET", f"/api/terminals/{quote(serial, safe='')}")
        except BackendError as error:
            if error.code != "terminal_not_found":
                raise

    async def register_terminal(self, serial: str, model: str, firmware: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", "/api/terminals", {"serial": serial, "model": model, "firmware": firmware}
        )
        return result

    # ------------------------------------------------------------------ card capture
    async def customer(self, customer_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", f"/api/customers/{quote(customer_id, safe='')}"
        )
        return result

    async def create_capture(
        self, customer_id: str, terminal_serial: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/customers/{quote(customer_id, safe='')}/card-captures",
            {"terminal_serial": terminal_serial},
            idempotency_key=idempotency_key,
        )
        return result

    async def verify_capture(
        self, capture_id: str, request: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/card-captures/{quote(capture_id, safe='')}/verification",
            request,
            idempotency_key=idempotency_key,
        )
        return result

    async def capture_result(
        self,
        capture_id: str,
        transaction_id: str,
        result: str,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request(
            "POST",
            f"/api/card-captures/{quote(capture_id, safe='')}/result",
            {"transaction_id": transaction_id, "result": result},
            idempotency_key=idempotency_key,
        )
        return answer

    async def payment_methods(self, customer_id: str) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self.request(
            "GET", f"/api/customers/{quote(customer_id, safe='')}/payment-methods"
        )
        methods: list[dict[str, Any]] = result["payment_methods"]
        return methods

    async def pay_with_token(
        self, number: str, payment_method_id: str, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/invoices/{quote(number, safe='')}/token-payments",
            {"payment_method_id": payment_method_id},
            idempotency_key=idempotency_key,
        )
        return result


def _offline() -> BackendUnreachable:
    return BackendUnreachable(
        "the phone is offline", OFFLINE_MESSAGE, attempts=0, code="no_network"
    )


def _describe(exc: BaseException, timeout: float) -> str:
    """One failed attempt, in the user's words (French)."""
    if isinstance(exc, TimeoutError):
        return f"pas de réponse en {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(
        exc.os_error, ConnectionRefusedError
    ):
        return "connexion refusée"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connexion coupée par le serveur"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "réponse interrompue"
    return "connexion impossible"


def _decode(status: int, text: str) -> Any:
    """The answer's JSON; a :class:`BackendError` for an error status or a body that is not
    JSON (a proxy's error page, a crash)."""
    try:
        data = json.loads(text) if text else None
    except ValueError:
        raise BackendError(status, "invalid_response", "Réponse illisible du serveur.") from None
    if status >= 400:
        error = data.get("error", {}) if isinstance(data, dict) else {}
        raise BackendError(
            status,
            str(error.get("code", "http_error")),
            str(error.get("message", f"Erreur du serveur ({status})")),
        )
    return data
