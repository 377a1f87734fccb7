"""Typed messages: the JSON envelope, the registries, and what decode refuses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.protocol.errors import (
    MessageError,
    ProtocolError,
    UnknownMessageType,
    UnsupportedVersion,
)
from simulator.protocol.messages import (
    COMMANDS,
    EVENTS,
    PROTOCOL_VERSION,
    AbortRequest,
    AuthorisationRequest,
    AuthorisationResponse,
    CardAcquisitionRequest,
    CardAcquisitionResponse,
    CommandAccepted,
    DiagnosisRequest,
    DiagnosisResponse,
    DisplayUpdate,
    Error,
    Message,
    PaymentRequest,
    PaymentResponse,
    SetupProgress,
    SetupRequest,
    SetupResponse,
    TransactionStatusRequest,
    TransactionStatusResponse,
    decode,
    encode,
)

# One message of each type, with every optional field set away from its default.
SAMPLES: list[Message] = [
    PaymentRequest(
        id=3, transaction_id="T-0001", amount=4250, currency="EUR", reference="FA-2026-0042"
    ),
    CardAcquisitionRequest(id=4, transaction_id="T-0002", reference="C-0003"),
    SetupRequest(
        id=6,
        merchant_id="M-0001",
        merchant_name="Plomberie Durand",
        city="Lyon",
        contract_number="1234567",
    ),
    SetupProgress(id=7, phase="firmware", percent=40, message="Mise à jour du logiciel : 40 %"),
    SetupResponse(id=8, result="completed", firmware="1.4.2", message="Terminal configuré"),
    CardAcquisitionResponse(
        id=5,
        transaction_id="T-0002",
        result="approved",
        response_code="85",
        brand="CB",
        masked_pan="************1001",
        entry_mode="contactless",
        message="Carte vérifiée",
    ),
    AuthorisationResponse(
        id=4,
        transaction_id="T-0001",
        response_code="00",
        authorisation_code="A1B2C3",
        message="Paiement accepté",
    ),
    AbortRequest(id=5, transaction_id="T-0001"),
    TransactionStatusRequest(id=6, transaction_id="T-0001"),
    DiagnosisRequest(id=7),
    Error(id=1, code="busy", message="Terminal occupé", in_reply_to=3, reason="state waiting"),
    CommandAccepted(id=2, in_reply_to=3, transaction_id="T-0001"),
    DisplayUpdate(id=8, lines=["42,50 EUR", "PRÉSENTEZ OU", "INSÉREZ LA CARTE"]),
    AuthorisationRequest(
        id=9,
        transaction_id="T-0001",
        amount=4250,
        currency="EUR",
        entry_mode="contactless",
        brand="VISA",
        masked_pan="************4242",
        application_label="VISA",
        aid="A0000000031010",
        card_data={"scheme": "AESGCM-TK1", "key_id": "SIM0001", "nonce": "n", "ciphertext": "c"},
        emv={"9F02": "000000004250", "9F36": "002A"},
    ),
    PaymentResponse(
        id=10,
        transaction_id="T-0001",
        result="approved",
        amount=4250,
        currency="EUR",
        response_code="00",
        authorisation_code="A1B2C3",
        brand="VISA",
        masked_pan="************4242",
        entry_mode="contactless",
        message="Paiement accepté",
        receipt=["PLOMBERIE DURAND", "MONTANT = 42,50 EUR"],
    ),
    TransactionStatusResponse(
        id=11,
        in_reply_to=6,
        transaction_id="T-0001",
        state="approved",
        result="approved",
        response_code="00",
        authorisation_code="A1B2C3",
    ),
    DiagnosisResponse(
        id=12, in_reply_to=7, state="idle", serial="SIM0001", model="M", firmware="1", battery=87
    ),
]


def registry_of(message: Message) -> dict[str, Any]:
    return COMMANDS if message.DIRECTION == "command" else EVENTS


def decode_command(data: bytes) -> Message:
    return decode(data, COMMANDS)


def decode_event(data: bytes) -> Message:
    return decode(data, EVENTS)


DECODERS: tuple[Callable[[bytes], Message], ...] = (decode_command, decode_event)


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_samples_cover_every_registered_type() -> None:
    assert {type(m) for m in SAMPLES} == set(COMMANDS.values()) | set(EVENTS.values())
    assert not set(COMMANDS) & set(EVENTS)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_type_round_trips(message: Message) -> None:
    assert decode(encode(message), registry_of(message)) == message


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_envelope(message: Message) -> None:
    wire = json.loads(encode(message))
    assert wire["v"] == PROTOCOL_VERSION == 1
    assert wire["type"] == type(message).__name__
    assert wire["id"] == message.id


def test_defaults_round_trip_too() -> None:
    minimal = PaymentResponse(transaction_id="T", result="aborted", amount=1, currency="EUR")
    assert decode(encode(minimal), EVENTS) == minimal
    error = Error(code="framing_error", message="m")
    wire = json.loads(encode(error))
    assert wire["in_reply_to"] is None
    assert decode(encode(error), EVENTS) == error


def test_encoding_is_utf8_without_escapes() -> None:
    wire = encode(DisplayUpdate(lines=["INSÉREZ"]))
    assert "INSÉREZ".encode() in wire


@given(
    id=st.integers(0, 2**53),
    transaction_id=st.text(),
    amount=st.integers(-(2**53), 2**53),
    currency=st.text(max_size=5),
    reference=st.text(),
)
def test_payment_request_round_trips_any_text_and_ints(
    id: int, transaction_id: str, amount: int, currency: str, reference: str
) -> None:
    message = PaymentRequest(
        id=id, transaction_id=transaction_id, amount=amount, currency=currency, reference=reference
    )
    assert decode(encode(message), COMMANDS) == message


# ------------------------------------------------------------------------------ refusals
REFUSALS: dict[str, tuple[bytes, type[ProtocolError], str]] = {
    "not utf-8": (b'{"v":1,"type":"DiagnosisRequest","x":"\xff"}', MessageError, "not UTF-8"),
    "not json": (b'{"v":1,', MessageError, "not JSON"),
    "empty": (b"", MessageError, "not JSON"),
    "array": (b"[1, 2]", MessageError, "must be a JSON object, not list"),
    "string": (b'"PaymentRequest"', MessageError, "must be a JSON object, not str"),
    "missing version": (body(type="DiagnosisRequest"), UnsupportedVersion, "None"),
    "version 2": (body(v=2, type="DiagnosisRequest"), UnsupportedVersion, "version 2"),
    "version as string": (body(v="1", type="DiagnosisRequest"), UnsupportedVersion, "'1'"),
    "missing type": (body(v=1), UnknownMessageType, "None"),
    "type not a string": (body(v=1, type=3), UnknownMessageType, "3"),
    "unknown type": (body(v=1, type="Refund"), UnknownMessageType, "'Refund'"),
    "base class": (body(v=1, type="Command"), UnknownMessageType, "'Command'"),
    "event sent to the terminal": (
        body(v=1, type="PaymentResponse", transaction_id="T", result="approved", amount=1),
        UnknownMessageType,
        "'PaymentResponse'",
    ),
    "missing field": (
        body(v=1, type="PaymentRequest", transaction_id="T", amount=1, reference="r"),
        MessageError,
        "PaymentRequest: missing field 'currency'",
    ),
    "string for int": (
        body(
            v=1,
            type="PaymentRequest",
            transaction_id="T",
            amount="42",
            currency="EUR",
            reference="r",
        ),
        MessageError,
        "PaymentRequest.amount",
    ),
    "bool for int": (
        body(
            v=1,
            type="PaymentRequest",
            transaction_id="T",
            amount=True,
            currency="EUR",
            reference="r",
        ),
        MessageError,
        "PaymentRequest.amount: True is not int",
    ),
    "float for int": (
        body(
            v=1,
            type="PaymentRequest",
            transaction_id="T",
            amount=42.5,
            currency="EUR",
            reference="r",
        ),
        MessageError,
        "PaymentRequest.amount",
    ),
    "int for str": (
        body(v=1, type="AbortRequest", transaction_id=17),
        MessageError,
        "AbortRequest.transaction_id",
    ),
    "null for str": (
        body(v=1, type="AbortRequest", transaction_id=None),
        MessageError,
        "AbortRequest.transaction_id",
    ),
    "wrong optional type": (
        body(
            v=1,
            type="AuthorisationResponse",
            transaction_id="T",
            response_code="00",
            authorisation_code=5,
        ),
        MessageError,
        "AuthorisationResponse.authorisation_code",
    ),
    "bool id": (body(v=1, type="DiagnosisRequest", id=True), MessageError, "DiagnosisRequest.id"),
    "negative id": (
        body(v=1, type="DiagnosisRequest", id=-1),
        MessageError,
        "DiagnosisRequest.id must not be negative",
    ),
}
EVENT_REFUSALS: dict[str, tuple[bytes, type[ProtocolError], str]] = {
    "command sent to the phone": (body(v=1, type="DiagnosisRequest"), UnknownMessageType, "Diag"),
    "list item type": (body(v=1, type="DisplayUpdate", lines=["a", 2]), MessageError, "lines"),
    "list not a list": (body(v=1, type="DisplayUpdate", lines="abc"), MessageError, "lines"),
    "dict value type": (
        body(
            v=1,
            type="AuthorisationRequest",
            transaction_id="T",
            amount=1,
            currency="EUR",
            entry_mode="contactless",
            brand="VISA",
            masked_pan="****",
            application_label="VISA",
            aid="A0",
            card_data={"nonce": 1},
            emv={},
        ),
        MessageError,
        "AuthorisationRequest.card_data",
    ),
    "literal outside its values": (
        body(
            v=1,
            type="PaymentResponse",
            transaction_id="T",
            result="maybe",
            amount=1,
            currency="EUR",
        ),
        MessageError,
        "PaymentResponse.result",
    ),
    "null for required reply id": (
        body(v=1, type="CommandAccepted", in_reply_to=None),
        MessageError,
        "CommandAccepted.in_reply_to",
    ),
}


@pytest.mark.parametrize(("data", "error", "reason"), REFUSALS.values(), ids=REFUSALS.keys())
def test_terminal_refuses(data: bytes, error: type[ProtocolError], reason: str) -> None:
    with pytest.raises(error) as info:
        decode(data, COMMANDS)
    assert type(info.value) is error
    assert reason in info.value.reason
    assert info.value.code == error.code


@pytest.mark.parametrize(
    ("data", "error", "reason"), EVENT_REFUSALS.values(), ids=EVENT_REFUSALS.keys()
)
def test_phone_refuses(data: bytes, error: type[ProtocolError], reason: str) -> None:
    with pytest.raises(error) as info:
        decode(data, EVENTS)
    assert type(info.value) is error
    assert reason in info.value.reason


def test_error_codes_are_the_documented_ones() -> None:
    assert MessageError("x").code == "invalid_message"
    assert UnsupportedVersion("x").code == "unsupported_version"
    assert UnknownMessageType("x").code == "unknown_message_type"
    assert isinstance(UnknownMessageType("x"), MessageError)
    assert isinstance(MessageError("x"), ValueError)


def test_unknown_fields_are_ignored() -> None:
    data = body(v=1, type="AbortRequest", id=9, transaction_id="T-1", priority="high", x=[1])
    assert decode(data, COMMANDS) == AbortRequest(id=9, transaction_id="T-1")


def test_missing_id_defaults_to_zero() -> None:
    assert decode(body(v=1, type="DiagnosisRequest"), COMMANDS) == DiagnosisRequest(id=0)


def test_deep_nesting_is_refused_as_a_message_error() -> None:
    data = b'{"v":1,"type":"DisplayUpdate","lines":' + b"[" * 4000 + b"]" * 4000 + b"}"
    with pytest.raises(MessageError):
        decode(data, EVENTS)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_protocol_errors(data: bytes) -> None:
    for decode_as in DECODERS:
        try:
            message = decode_as(data)
        except ProtocolError:
            continue
        assert isinstance(message, Message)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@given(
    name=st.sampled_from(sorted(COMMANDS) + sorted(EVENTS) + ["Nope"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "id",
                "transaction_id",
                "amount",
                "currency",
                "reference",
                "lines",
                "result",
                "in_reply_to",
                "code",
                "message",
                "receipt",
                "emv",
                "card_data",
                "battery",
            ]
        ),
        json_values,
    ),
)
def test_arbitrary_objects_decode_or_raise_protocol_errors(
    name: str, fields: dict[str, object]
) -> None:
    data = json.dumps({"v": 1, "type": name, **fields}).encode()
    for decode_as in DECODERS:
        try:
            message = decode_as(data)
        except ProtocolError:
            continue
        assert type(message).__name__ == name
        assert decode_as(encode(message)) == message


# ------------------------------------------------------------------------------ known bugs
def test_huge_integer_is_a_message_error() -> None:
    data = b'{"v":1,"type":"DiagnosisRequest","id":' + b"9" * 5000 + b"}"
    with pytest.raises(MessageError):
        decode(data, COMMANDS)


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_must_be_the_integer_1(version: object) -> None:
    with pytest.raises(UnsupportedVersion):
        decode(body(v=version, type="DiagnosisRequest"), COMMANDS)
