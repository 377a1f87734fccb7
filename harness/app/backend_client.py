"""The app's HTTP client for the invoicing backend."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import aiohttp


class BackendError(Exception):
    """The backend refused a request; ``message`` is French, for the user."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BackendUnreachable(BackendError):
    def __init__(self, detail: str) -> None:
        super().__init__(0, "backend_unreachable", "Serveur injoignable : vérifiez la connexion.")
        self.detail = detail


class BackendClient:
    """JSON over HTTP; one ``aiohttp.ClientSession`` per app."""

    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        #: every response body received, as received (for the card-number leak scan)
        self.received: list[str] = []

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.request(
                method, f"{self.base_url}{path}", json=body
            ) as response:
                text = await response.text()
                self.received.append(text)
                data = json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnreachable(repr(exc)) from exc
        except ValueError as exc:  # not JSON: a proxy's error page, a crash
            raise BackendError(
                response.status, "invalid_response", "Réponse illisible du serveur."
            ) from exc
        if response.status >= 400:
            error = data.get("error", {}) if isinstance(data, dict) else {}
            raise BackendError(
                response.status,
                str(error.get("code", "http_error")),
                str(error.get("message", f"Erreur du serveur ({response.status})")),
            )
        return data

    # ------------------------------------------------------------------ endpoints
    async def billing_settings(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/api/billing/settings")
        return result

    async def invoice(self, number: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", f"/api/invoices/{quote(number, safe='')}"
        )
        return result

    async def create_payment(self, number: str, terminal_serial: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/invoices/{quote(number, safe='')}/payments",
            {"method": "tpe", "terminal_serial": terminal_serial},
        )
        return result

    async def authorise(self, payment_id: str, request: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", f"/api/payments/{quote(payment_id, safe='')}/authorisation", request
        )
        return result

    async def report_result(
        self,
        payment_id: str,
        transaction_id: str,
        result: str,
        receipts: dict[str, list[str]] | None = None,
        response_code: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"transaction_id": transaction_id, "result": result}
        if receipts:
            body["receipts"] = receipts
        if response_code is not None:
            body["response_code"] = response_code
        answer: dict[str, Any] = await self.request(
            "POST", f"/api/payments/{quote(payment_id, safe='')}/result", body
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

    async def create_capture(self, customer_id: str, terminal_serial: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/customers/{quote(customer_id, safe='')}/card-captures",
            {"terminal_serial": terminal_serial},
        )
        return result

    async def verify_capture(self, capture_id: str, request: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST", f"/api/card-captures/{quote(capture_id, safe='')}/verification", request
        )
        return result

    async def capture_result(
        self, capture_id: str, transaction_id: str, result: str
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await self.request(
            "POST",
            f"/api/card-captures/{quote(capture_id, safe='')}/result",
            {"transaction_id": transaction_id, "result": result},
        )
        return answer

    async def payment_methods(self, customer_id: str) -> list[dict[str, Any]]:
        result: dict[str, Any] = await self.request(
            "GET", f"/api/customers/{quote(customer_id, safe='')}/payment-methods"
        )
        methods: list[dict[str, Any]] = result["payment_methods"]
        return methods

    async def pay_with_token(self, number: str, payment_method_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            f"/api/invoices/{quote(number, safe='')}/token-payments",
            {"payment_method_id": payment_method_id},
        )
        return result
