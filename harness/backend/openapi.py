"""The backend's HTTP API as an OpenAPI 3.1 document, served at ``GET /openapi.json``.

Written by hand next to the handlers of :mod:`harness.backend.server` and kept honest by the
test suite: every route of the application has its operation here and every operation here
has its route (``tests/harness/backend/test_openapi.py``), and Schemathesis sends generated
requests to the real server and checks every answer against this document (status codes
listed, JSON bodies of the documented shape, never a 5xx).

Responses are closed (``additionalProperties: false``): a field added to a handler's answer
must be added here. Request bodies are open: the backend ignores fields it does not know.

Mutating operations take an ``Idempotency-Key`` header (docs/backend.md); the operations of
:data:`KEYED_OPERATIONS`, which move money or card data, require it.
"""

from __future__ import annotations

import copy
import typing
from typing import Any

from harness.backend.processor import CVMS
from harness.backend.store import (
    RECEIPT_COPIES,
    TERMINAL_RESULTS,
    CaptureStatus,
    InvoiceStatus,
    PaymentMethod,
    PaymentStatus,
)

Schema = dict[str, Any]

#: What every error answer looks like (the server's ``error_response``).
ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "description": "stable, English, snake_case"},
                "message": {"type": "string", "description": "French, for the user"},
                "field": {"type": "string", "description": "the request field at fault"},
            },
        }
    },
}
ERROR_MEANINGS = {
    400: "The body is not a JSON object (invalid_json), or the Idempotency-Key header is "
    "missing where required or malformed (idempotency_key_required, idempotency_key_invalid).",
    403: "Card payments by terminal are disabled in the billing settings (tpe_disabled).",
    404: "No such resource or route (not_found, invoice_not_found, payment_not_found, …).",
    405: "Method not allowed on this route (method_not_allowed).",
    409: "The request conflicts with the resource's state (already_authorised, …).",
    422: "A field is missing or invalid (invalid_field, invalid_amount, card_data_invalid, …), "
    "or the Idempotency-Key was already used for another request (idempotency_key_reused).",
}

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX = 255
#: An idempotency key: 1 to 255 printable ASCII characters, no space.
IDEMPOTENCY_KEY_PATTERN = rf"^[\x21-\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}$"
#: Set on an answer replayed from an idempotency key.
REPLAYED_HEADER = "Idempotent-Replayed"
#: The HTTP methods that change something: they take an idempotency key.
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: A response code the terminal reports: ISO 8583 field 39, two characters.
RESPONSE_CODE_PATTERN = "^[0-9A-Z]{2}$"
#: The operations that move money or card data: they require an Idempotency-Key (400
#: idempotency_key_required without one). The server's other mutating operations honour one.
KEYED_OPERATIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("post", "/api/invoices/{number}/payments"),
        ("post", "/api/payments/{payment_id}/authorisation"),
        ("post", "/api/payments/{payment_id}/result"),
        ("post", "/api/customers/{customer_id}/card-captures"),
        ("post", "/api/card-captures/{capture_id}/verification"),
        ("post", "/api/card-captures/{capture_id}/result"),
        ("post", "/api/invoices/{number}/token-payments"),
    }
)


def _string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def _nullable(schema: Schema) -> Schema:
    """``schema`` or JSON null (OpenAPI 3.1: JSON Schema's own types)."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    nullable = {**schema, "type": [schema["type"], "null"]}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]
    return nullable


def _integer(**extra: Any) -> Schema:
    return {"type": "integer", **extra}


def _enum(values: tuple[str, ...] | Any) -> Schema:
    return {"type": "string", "enum": list(values)}


def _closed(properties: dict[str, Schema]) -> Schema:
    """A response object: every property always present, nothing else."""
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


TEXT = _string(pattern=r"\S", description="a non-blank string")
DATE_TIME = _string(format="date-time")
HEX = _string(pattern="^([0-9A-Fa-f]{2})*$")
RESPONSE_CODE = _string(description="ISO 8583 field 39 (two characters)")

SCHEMAS: dict[str, Schema] = {
    "Error": ERROR_SCHEMA,
    "Merchant": _closed(
        {"id": _string(), "name": _string(), "city": _string(), "contract_number": _string()}
    ),
    "BillingSettings": _closed({"tpe_enabled": {"type": "boolean"}}),
    "Terminal": _closed(
        {"serial": _string(), "model": _string(), "firmware": _string(), "associated_at": DATE_TIME}
    ),
    "Customer": _closed(
        {
            name: _string()
            for name in ("id", "name", "address", "postcode", "city", "email", "phone")
        }
    ),
    "SavedCard": _closed(
        {
            "id": _string(pattern="^pm_"),
            "brand": _string(),
            "last4": _string(pattern="^[0-9]{4}$"),
            "exp_month": _integer(minimum=1, maximum=12),
            "exp_year": _integer(),
            "fingerprint": _string(pattern="^[0-9a-f]{64}$"),
            "created_at": DATE_TIME,
        }
    ),
    "Payment": _closed(
        {
            "id": _string(),
            "invoice_number": _string(),
            "method": _enum(typing.get_args(PaymentMethod)),
            "status": _enum(typing.get_args(PaymentStatus)),
            "amount_cents": _integer(),
            "currency": _string(),
            "transaction_id": _nullable(_string()),
            "terminal_serial": _nullable(_string()),
            "entry_mode": _nullable(_string()),
            "brand": _nullable(_string()),
            "masked_pan": _nullable(_string()),
            "response_code": _nullable(RESPONSE_CODE),
            "authorisation_code": _nullable(_string()),
            "cvm": _nullable(_string()),
            "terminal_result": _nullable(_enum(TERMINAL_RESULTS)),
            "payment_method_id": _nullable(_string()),
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
        }
    ),
    "Invoice": _closed(
        {
            "number": _string(),
            "customer_id": _string(),
            "customer": _ref("Customer"),
            "issue_date": _string(format="date"),
            "due_date": _string(format="date"),
            "amount_cents": _integer(),
            "balance_due_cents": _integer(),
            "currency": _string(),
            "status": _enum(typing.get_args(InvoiceStatus)),
            "payment_in_progress": {
                "type": "boolean",
                "description": "a card payment of the invoice is under way (on a terminal)",
            },
            "lines": _array(
                _closed(
                    {
                        "label": _string(),
                        "quantity": _integer(),
                        "unit_price_cents": _integer(),
                        "total_cents": _integer(),
                    }
                )
            ),
            "payments": _array(_ref("Payment")),
            "attempts": _array(
                _closed(
                    {
                        "payment_id": _string(),
                        "at": DATE_TIME,
                        "amount_cents": _integer(),
                        "outcome": _enum(typing.get_args(PaymentStatus)),
                        "response_code": _nullable(RESPONSE_CODE),
                    }
                )
            ),
        }
    ),
    "CardCapture": _closed(
        {
            "id": _string(),
            "customer_id": _string(),
            "transaction_id": _string(),
            "terminal_serial": _string(),
            "status": _enum(typing.get_args(CaptureStatus)),
            "entry_mode": _nullable(_string()),
            "brand": _nullable(_string()),
            "masked_pan": _nullable(_string()),
            "cvm": _nullable(_string()),
            "response_code": _nullable(RESPONSE_CODE),
            "terminal_result": _nullable(_enum(TERMINAL_RESULTS)),
            "payment_method_id": _nullable(_string()),
            "created_at": DATE_TIME,
            "updated_at": DATE_TIME,
        }
    ),
    "SealedCardData": {
        "type": "object",
        "description": "The terminal's AES-DUKPT-1 blob (docs/protocol.md, section 7), relayed "
        "unchanged: only the processor can open it.",
        "properties": {
            "scheme": _string(enum=["AES-DUKPT-1"]),
            "ksn": _string(pattern="^[0-9A-Fa-f]{24}$"),
            "nonce": _string(format="byte"),
            "ciphertext": _string(format="byte"),
        },
        "required": ["scheme", "ksn", "nonce", "ciphertext"],
    },
    "AuthorisationRequest": {
        "type": "object",
        "description": "The terminal's AuthorisationRequest as the app relays it.",
        "required": [
            "transaction_id",
            "amount_cents",
            "currency",
            "entry_mode",
            "brand",
            "card_data",
        ],
        "properties": {
            "transaction_id": TEXT,
            "amount_cents": _integer(),
            "currency": TEXT,
            "entry_mode": TEXT,
            "brand": TEXT,
            "masked_pan": _string(),
            "card_data": _ref("SealedCardData"),
            "emv": {
                "type": "object",
                "description": "EMV data elements by tag, hex (9F26 the ARQC, 9F36 the ATC, …)",
                "additionalProperties": HEX,
            },
            "cvm": _enum(CVMS),
        },
    },
    "TerminalResult": {
        "type": "object",
        "required": ["transaction_id", "result"],
        "properties": {"transaction_id": TEXT, "result": _enum(TERMINAL_RESULTS)},
    },
}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    status: int,
    schema: Schema,
    *,
    errors: tuple[int, ...] = (),
    body: Schema | None = None,
    parameters: list[Schema] | None = None,
    also: dict[int, tuple[Schema, str]] | None = None,
) -> dict[str, Any]:
    """One operation: its answer, the errors it may give (as the Error schema), its body."""
    responses: dict[str, Any] = {str(status): _json(schema, "OK")}
    for code, (extra, description) in (also or {}).items():
        responses[str(code)] = _json(extra, description)
    for code in sorted({*errors, 404, 405}):  # any path may be unknown, any method refused
        responses[str(code)] = _json(_ref("Error"), ERROR_MEANINGS[code])
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
        responses.setdefault("400", _json(_ref("Error"), ERROR_MEANINGS[400]))
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path(name: str, description: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": _string(),
    }


SERIAL = _path("serial", "the terminal's serial number")
CUSTOMER = _path("customer_id", "a customer id")
NUMBER = _path("number", "an invoice number")
PAYMENT = _path("payment_id", "a payment id")
CAPTURE = _path("capture_id", "a card capture id")
AUTHORISATION_ANSWER = _closed(
    {
        "transaction_id": _string(),
        "response_code": RESPONSE_CODE,
        "approved": {"type": "boolean"},
        "authorisation_code": _nullable(_string()),
        "message": _string(),
        "pin_tries_left": _nullable(_integer()),
        "arpc": _nullable(
            _string(description="EMV tag 91, hex: the issuer authentication data for the chip")
        ),
    }
)
VERIFICATION_ANSWER = _closed(
    {
        "transaction_id": _string(),
        "response_code": RESPONSE_CODE,
        "approved": {"type": "boolean"},
        "message": _string(),
        "arpc": _nullable(_string()),
    }
)
RESULT_BODY: Schema = {
    **SCHEMAS["TerminalResult"],
    "properties": {
        **SCHEMAS["TerminalResult"]["properties"],
        "receipts": {
            "type": "object",
            "description": "the receipt copies the terminal printed, line by line",
            "properties": {copy: _array(_string()) for copy in RECEIPT_COPIES},
        },
        "response_code": _string(pattern=RESPONSE_CODE_PATTERN),
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/openapi.json": {
        "get": _operation("This document", 200, {"type": "object"}),
    },
    "/api/merchant": {
        "get": _operation("The merchant configuration (first setup)", 200, _ref("Merchant")),
    },
    "/api/billing/settings": {
        "get": _operation("Billing settings", 200, _ref("BillingSettings")),
        "put": _operation(
            "Turn card payments by terminal on or off",
            200,
            _ref("BillingSettings"),
            errors=(422,),
            body={
                "type": "object",
                "required": ["tpe_enabled"],
                "properties": {"tpe_enabled": {"type": "boolean"}},
            },
        ),
    },
    "/api/terminals": {
        "get": _operation(
            "The merchant's terminals", 200, _closed({"terminals": _array(_ref("Terminal"))})
        ),
        "post": _operation(
            "Associate a terminal (200 when it already was)",
            201,
            _ref("Terminal"),
            also={200: (_ref("Terminal"), "Already associated")},
            errors=(409, 422),
            body={
                "type": "object",
                "required": ["serial", "model", "firmware"],
                "properties": {"serial": TEXT, "model": TEXT, "firmware": TEXT},
            },
        ),
    },
    "/api/terminals/{serial}": {
        "get": _operation(
            "A terminal of this merchant; 404 if it may be associated, 409 if another "
            "merchant holds it",
            200,
            _ref("Terminal"),
            errors=(409,),
            parameters=[SERIAL],
        ),
    },
    "/api/customers": {
        "get": _operation("Customers", 200, _closed({"customers": _array(_ref("Customer"))})),
    },
    "/api/customers/{customer_id}": {
        "get": _operation(
            "A customer, their invoice numbers and saved cards",
            200,
            _closed(
                {
                    **SCHEMAS["Customer"]["properties"],
                    "invoices": _array(_string()),
                    "payment_methods": _array(_ref("SavedCard")),
                }
            ),
            parameters=[CUSTOMER],
        ),
    },
    "/api/customers/{customer_id}/card-captures": {
        "post": _operation(
            "Start a card capture (prise d'empreinte)",
            201,
            _closed(
                {
                    "capture_id": _string(),
                    "transaction_id": _string(),
                    "customer_id": _string(),
                    "status": _enum(typing.get_args(CaptureStatus)),
                }
            ),
            errors=(403, 409, 422),
            body={
                "type": "object",
                "required": ["terminal_serial"],
                "properties": {"terminal_serial": TEXT},
            },
            parameters=[CUSTOMER],
        ),
    },
    "/api/customers/{customer_id}/payment-methods": {
        "get": _operation(
            "The customer's saved cards",
            200,
            _closed({"payment_methods": _array(_ref("SavedCard"))}),
            parameters=[CUSTOMER],
        ),
    },
    "/api/invoices": {
        "get": _operation(
            "Invoices, optionally by status",
            200,
            _closed({"invoices": _array(_ref("Invoice"))}),
            errors=(422,),
            parameters=[
                {
                    "name": "status",
                    "in": "query",
                    "required": False,
                    "schema": _enum(typing.get_args(InvoiceStatus)),
                }
            ],
        ),
    },
    "/api/invoices/{number}": {
        "get": _operation("An invoice", 200, _ref("Invoice"), parameters=[NUMBER]),
    },
    "/api/invoices/{number}/payments": {
        "post": _operation(
            "Start a card payment by terminal for the balance due (or amount_cents)",
            201,
            _closed(
                {
                    "payment_id": _string(),
                    "transaction_id": _string(),
                    "amount_cents": _integer(),
                    "currency": _string(),
                    "reference": _string(),
                    "status": _enum(typing.get_args(PaymentStatus)),
                }
            ),
            errors=(403, 409, 422),
            body={
                "type": "object",
                "required": ["method", "terminal_serial"],
                "properties": {
                    "method": _string(enum=["tpe"]),
                    "terminal_serial": TEXT,
                    "amount_cents": _integer(minimum=1),
                },
            },
            parameters=[NUMBER],
        ),
    },
    "/api/invoices/{number}/token-payments": {
        "post": _operation(
            "Charge a saved card (merchant-initiated)",
            201,
            _closed(
                {
                    "payment": _ref("Payment"),
                    "invoice": _ref("Invoice"),
                    "response_code": RESPONSE_CODE,
                    "approved": {"type": "boolean"},
                    "authorisation_code": _nullable(_string()),
                    "message": _string(),
                }
            ),
            errors=(409, 422),
            body={
                "type": "object",
                "required": ["payment_method_id"],
                "properties": {"payment_method_id": TEXT, "amount_cents": _integer(minimum=1)},
            },
            parameters=[NUMBER],
        ),
    },
    "/api/payments/{payment_id}": {
        "get": _operation("A payment", 200, _ref("Payment"), parameters=[PAYMENT]),
    },
    "/api/payments/{payment_id}/authorisation": {
        "post": _operation(
            "Relay the terminal's authorisation request to the processor",
            200,
            AUTHORISATION_ANSWER,
            errors=(409, 422),
            body=_ref("AuthorisationRequest"),
            parameters=[PAYMENT],
        ),
    },
    "/api/payments/{payment_id}/result": {
        "post": _operation(
            "The terminal's final word on a payment (and its receipts)",
            200,
            _closed({"payment": _ref("Payment"), "invoice": _ref("Invoice")}),
            errors=(409, 422),
            body=RESULT_BODY,
            parameters=[PAYMENT],
        ),
    },
    "/api/payments/{payment_id}/receipts": {
        "get": _operation(
            "The receipts of a payment, one text per copy",
            200,
            _closed({copy: _nullable(_string()) for copy in RECEIPT_COPIES}),
            parameters=[PAYMENT],
        ),
    },
    "/api/card-captures/{capture_id}": {
        "get": _operation("A card capture", 200, _ref("CardCapture"), parameters=[CAPTURE]),
    },
    "/api/card-captures/{capture_id}/verification": {
        "post": _operation(
            "Relay the terminal's zero-amount verification (85 or the refusal)",
            200,
            VERIFICATION_ANSWER,
            errors=(409, 422),
            body=_ref("AuthorisationRequest"),
            parameters=[CAPTURE],
        ),
    },
    "/api/card-captures/{capture_id}/result": {
        "post": _operation(
            "The terminal's final word on a card capture",
            200,
            _closed(
                {
                    "capture": _ref("CardCapture"),
                    "duplicate": {"type": "boolean"},
                    "payment_method": _nullable(_ref("SavedCard")),
                    "message": _string(),
                }
            ),
            errors=(409, 422),
            body=SCHEMAS["TerminalResult"],
            parameters=[CAPTURE],
        ),
    },
}


def _idempotency_key(required: bool) -> Schema:
    return {
        "name": IDEMPOTENCY_HEADER,
        "in": "header",
        "required": required,
        "description": "one key per logical operation (a UUID 4), the same on every retry of "
        "it: a replay gets the first answer back (header Idempotent-Replayed: true)",
        "schema": _string(pattern=IDEMPOTENCY_KEY_PATTERN),
    }


def _declare_idempotency(paths: dict[str, dict[str, Any]]) -> None:
    """Every mutating operation takes the Idempotency-Key header; the keyed ones require it."""
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method.upper() not in MUTATING_METHODS:
                continue
            keyed = (method, path) in KEYED_OPERATIONS
            operation["parameters"] = [*operation.get("parameters", []), _idempotency_key(keyed)]
            responses = operation["responses"]
            for code in (400, 422):
                responses.setdefault(str(code), _json(_ref("Error"), ERROR_MEANINGS[code]))
            for answer in responses.values():  # a kept error is replayed as well
                answer["headers"] = {REPLAYED_HEADER: REPLAYED_HEADER_DOC}


REPLAYED_HEADER_DOC: Schema = {
    "description": "true when this is the answer first given to the same Idempotency-Key",
    "schema": _string(enum=["true"]),
}
_declare_idempotency(PATHS)


def openapi_document() -> dict[str, Any]:
    """The whole document (a fresh copy: callers may change it)."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "tpe-sim invoicing backend and card processor",
                "version": "1",
                "description": "The mock backend the virtual app talks to (harness/backend). "
                'Every error is JSON: {"error": {"code", "message", "field"?}}.',
            },
            "paths": PATHS,
            "components": {"schemas": SCHEMAS},
        }
    )
