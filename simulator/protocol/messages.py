"""Typed, versioned messages between the phone and the terminal.

Every message is one JSON object, UTF-8 encoded::

    {"v": 1, "type": "PaymentRequest", "id": 7, ...fields}

``v`` is the protocol version, ``type`` names the message class, ``id`` is the sender's
message number (per connection, counting up). Responses carry ``in_reply_to``: the ``id`` of
the command they answer. The semantics follow the nexo retailer protocol as public terminal
APIs use it (Payment, Abort, TransactionStatus, Diagnosis, Display).

Commands go from the phone to the terminal; events from the terminal to the phone. Each side
decodes only what the other side may send: a terminal receiving an event type gets an
:class:`UnknownMessageType`. Unknown fields are ignored (forward compatibility within a
version); missing fields and fields of the wrong type are refused with the field named.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar, Union

from simulator.protocol.errors import MessageError, UnknownMessageType, UnsupportedVersion

PROTOCOL_VERSION = 1

Direction = Literal["command", "event"]
#: How the cardholder was verified: not at all, by the phone (wallet), by the chip, by the issuer.
Cvm = Literal["none", "cdcvm", "offline_pin", "online_pin"]


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every message. ``id`` is assigned by the sending endpoint when it is 0."""

    DIRECTION: ClassVar[Direction]
    id: int = 0


# --------------------------------------------------------------------------------------------
# Commands: phone -> terminal
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Command(Message):
    DIRECTION: ClassVar[Direction] = "command"


@dataclass(frozen=True, kw_only=True)
class PaymentRequest(Command):
    """Start a payment of ``amount`` minor units (cents) for an invoice (nexo Payment)."""

    transaction_id: str
    amount: int
    currency: str
    reference: str


@dataclass(frozen=True, kw_only=True)
class CardAcquisitionRequest(Command):
    """Read a card with no amount to save it on a customer record (nexo CardAcquisition).
    ``reference`` names the customer record."""

    transaction_id: str
    reference: str


@dataclass(frozen=True, kw_only=True)
class AuthorisationResponse(Command):
    """The processor's answer to an :class:`AuthorisationRequest`, relayed by the phone."""

    transaction_id: str
    response_code: str
    authorisation_code: str | None = None
    message: str = ""
    #: the issuer authentication data (EMV tag 91, hex): ARPC and CSU or ARC, for the chip
    arpc: str | None = None


@dataclass(frozen=True, kw_only=True)
class AbortRequest(Command):
    """Cancel the transaction in progress (nexo Abort)."""

    transaction_id: str


@dataclass(frozen=True, kw_only=True)
class TransactionStatusRequest(Command):
    """Ask what became of a transaction, e.g. after a link loss (nexo TransactionStatus)."""

    transaction_id: str


@dataclass(frozen=True, kw_only=True)
class SetupRequest(Command):
    """First-time setup of the terminal (nexo Login): the merchant configuration the app got
    from the backend. The terminal downloads the rest (keys, a pending firmware update)."""

    merchant_id: str
    merchant_name: str
    city: str
    contract_number: str


@dataclass(frozen=True, kw_only=True)
class DiagnosisRequest(Command):
    """Ask the terminal's state, battery and firmware (nexo Diagnosis)."""


# --------------------------------------------------------------------------------------------
# Events: terminal -> phone
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Event(Message):
    DIRECTION: ClassVar[Direction] = "event"


@dataclass(frozen=True, kw_only=True)
class Error(Event):
    """A command refused, or bytes the terminal could not read. ``message`` is for users."""

    code: str
    message: str
    in_reply_to: int | None = None
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class CommandAccepted(Event):
    """The command ``in_reply_to`` was accepted; its outcome follows in later events."""

    in_reply_to: int
    transaction_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class DisplayUpdate(Event):
    """What the terminal's screen shows now, line by line (nexo Display)."""

    lines: list[str]


@dataclass(frozen=True, kw_only=True)
class AuthorisationRequest(Event):
    """The card was read: the phone must relay this to the processor and answer with an
    :class:`AuthorisationResponse`. ``card_data`` is sealed for the processor."""

    transaction_id: str
    amount: int
    currency: str
    entry_mode: str
    brand: str
    masked_pan: str
    application_label: str
    aid: str
    card_data: dict[str, str]
    emv: dict[str, str]
    cvm: Cvm = "none"


@dataclass(frozen=True, kw_only=True)
class PaymentResponse(Event):
    """The transaction's final outcome on the terminal (nexo Payment response)."""

    transaction_id: str
    result: Literal["approved", "declined", "aborted"]
    amount: int
    currency: str
    response_code: str | None = None
    authorisation_code: str | None = None
    brand: str | None = None
    masked_pan: str | None = None
    entry_mode: str | None = None
    message: str = ""
    receipt: list[str] = field(default_factory=list)
    merchant_receipt: list[str] = field(default_factory=list)
    cardholder_verification: str | None = None


@dataclass(frozen=True, kw_only=True)
class CardAcquisitionResponse(Event):
    """The outcome of a card acquisition: the card was verified (approved) or not. Only the
    masked PAN and brand reach the phone; the processor keeps the rest."""

    transaction_id: str
    result: Literal["approved", "declined", "aborted"]
    response_code: str | None = None
    brand: str | None = None
    masked_pan: str | None = None
    entry_mode: str | None = None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class TransactionStatusResponse(Event):
    """What the terminal's journal knows of a transaction (kept across power cycles):
    ``state`` is a terminal state name or ``unknown`` (never received); ``result`` is set once
    the transaction ended, with what its final event carried, so that a phone whose link
    dropped before that event can finish the flow (receipts included)."""

    in_reply_to: int
    transaction_id: str
    state: str
    result: str | None = None
    response_code: str | None = None
    authorisation_code: str | None = None
    kind: str | None = None  # payment | capture
    amount: int | None = None
    currency: str | None = None
    brand: str | None = None
    masked_pan: str | None = None
    entry_mode: str | None = None
    message: str = ""
    receipt: list[str] = field(default_factory=list)
    merchant_receipt: list[str] = field(default_factory=list)
    cardholder_verification: str | None = None


@dataclass(frozen=True, kw_only=True)
class DiagnosisResponse(Event):
    in_reply_to: int
    state: str
    serial: str
    model: str
    firmware: str
    battery: int
    configured: bool = True
    setup_percent: int = 100


@dataclass(frozen=True, kw_only=True)
class SetupProgress(Event):
    """How far first-time setup has gone: ``phase`` is configuration or firmware."""

    phase: Literal["configuration", "firmware"]
    percent: int
    message: str


@dataclass(frozen=True, kw_only=True)
class SetupResponse(Event):
    """First-time setup is over: completed, or interrupted (it resumes on the next request)."""

    result: Literal["completed", "interrupted"]
    firmware: str
    message: str


COMMANDS: dict[str, type[Command]] = {
    cls.__name__: cls
    for cls in (
        PaymentRequest,
        CardAcquisitionRequest,
        AuthorisationResponse,
        AbortRequest,
        TransactionStatusRequest,
        DiagnosisRequest,
        SetupRequest,
    )
}
EVENTS: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        Error,
        CommandAccepted,
        DisplayUpdate,
        AuthorisationRequest,
        PaymentResponse,
        CardAcquisitionResponse,
        TransactionStatusResponse,
        DiagnosisResponse,
        SetupProgress,
        SetupResponse,
    )
}


# --------------------------------------------------------------------------------------------
# Codec
# --------------------------------------------------------------------------------------------
def encode(message: Message) -> bytes:
    """Serialise a message to its wire form."""
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": type(message).__name__}
    body.update(dataclasses.asdict(message))
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


M = TypeVar("M", bound=Message)


def decode(data: bytes, registry: dict[str, type[M]]) -> M:
    """Parse and validate one message whose type must be in ``registry``."""
    try:
        body = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MessageError(f"message is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise MessageError(f"message is not JSON: {exc.msg} at char {exc.pos}") from exc
    except RecursionError as exc:
        raise MessageError("message nests too deeply") from exc
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise MessageError(f"message has an unreadable value: {exc}") from exc
    if not isinstance(body, dict):
        raise MessageError(f"message must be a JSON object, not {type(body).__name__}")
    version = body.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise UnsupportedVersion(
            f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})"
        )
    name = body.get("type")
    if not isinstance(name, str) or name not in registry:
        raise UnknownMessageType(f"unknown or unexpected message type {name!r}")
    cls = registry[name]
    kwargs: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in body:
            value = body[f.name]
            if not _conforms(value, hints[f.name]):
                raise MessageError(
                    f"{name}.{f.name}: {value!r:.40} is not {_describe(hints[f.name])}"
                )
            kwargs[f.name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MessageError(f"{name}: missing field {f.name!r}")
    if kwargs.get("id", 0) < 0:
        raise MessageError(f"{name}.id must not be negative")
    return cls(**kwargs)


def _conforms(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool):
        return isinstance(value, hint)
    if hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_conforms(value, arm) for arm in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(hint)
        return isinstance(value, dict) and all(
            _conforms(k, key) and _conforms(v, item) for k, v in value.items()
        )
    raise TypeError(f"no wire check for {hint!r}")  # a programming error, not bad input


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
