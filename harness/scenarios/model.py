"""Scenario scripts (``scenarios/*.yaml``): the schema as typed dataclasses, and their loader.

A script says what world to build, which flow the technician starts (a payment or a card
capture), what the cardholder does, which faults strike and when, and what should come of it.
``docs/scenarios.md`` documents the format. This module is pure (no world, no Bumble, no
event loop): the world's runner (:mod:`harness.scenarios.runner`) and the standalone terminal
both load scripts through it.

Every value is validated on load, with an error naming the file, the line and the field::

    scenarios/x.yaml:14: steps[2].tap: unknown card 'vsia' (cards: amex, cb_visa, …)

The loader reads YAML through PyYAML's node API (:func:`yaml.compose`), so every value keeps
the line it was written on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from simulator.cards import CardProfile, Catalogue
from simulator.protocol.messages import (
    AbortRequest,
    AuthorisationRequest,
    AuthorisationResponse,
    CardAcquisitionRequest,
    CardAcquisitionResponse,
    CommandAccepted,
    DisplayUpdate,
    Message,
    PaymentRequest,
    PaymentResponse,
    TransactionStatusRequest,
)
from simulator.terminal import load_profiles

HookPoint = Literal["received", "sending", "sent"]


class ScenarioError(ValueError):
    """A script that cannot be used: ``str()`` is ``file:line: field: what is wrong``."""

    def __init__(self, file: str, line: int, where: str, problem: str) -> None:
        self.file = file
        self.line = line
        self.field = where
        self.problem = problem
        prefix = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{prefix}{where + ': ' if where else ''}{problem}")


# --------------------------------------------------------------------------------------------
# Moments: named points of the protocol where a fault may strike
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Moment:
    """A named point of the protocol, seen from the terminal's message hooks
    (``BleTerminal.message_hooks``): ``point`` and the message types that mark it."""

    name: str
    point: HookPoint | None  # None: not a protocol moment (``start``)
    messages: tuple[type[Message], ...]
    description: str
    screen: str | None = None  # a DisplayUpdate moment: a line the screen must show


#: Every moment a fault may name, in the order a payment meets them.
MOMENTS: dict[str, Moment] = {
    m.name: m
    for m in (
        Moment(
            "start",
            None,
            (),
            "before the technician starts the flow (after the world is built and the terminal "
            "associated): the fault is in place from the first request on",
        ),
        Moment(
            "request_received",
            "received",
            (PaymentRequest, CardAcquisitionRequest),
            "the PaymentRequest / CardAcquisitionRequest reached the terminal, before the "
            "engine handles it (a link cut here loses the command)",
        ),
        Moment(
            "card_requested",
            "sent",
            (CommandAccepted,),
            "the terminal accepted the PaymentRequest / CardAcquisitionRequest and told the "
            "phone (CommandAccepted sent): it waits for the card",
        ),
        Moment(
            "pin_requested",
            "sent",
            (DisplayUpdate,),
            "the terminal asks for the PIN (DisplayUpdate « SAISISSEZ VOTRE CODE » sent)",
            screen="SAISISSEZ VOTRE CODE",
        ),
        Moment(
            "authorisation_request_ready",
            "sending",
            (AuthorisationRequest,),
            "the card was read and sealed: the AuthorisationRequest is about to leave the "
            "terminal (a link cut here: the phone never gets it)",
        ),
        Moment(
            "authorisation_request_sent",
            "sent",
            (AuthorisationRequest,),
            "the AuthorisationRequest left the terminal (its frames are notified to the phone)",
        ),
        Moment(
            "authorisation_received",
            "received",
            (AuthorisationResponse,),
            "the bank's answer (AuthorisationResponse relayed by the phone) reached the "
            "terminal, before the engine handles it (a link cut here loses the answer)",
        ),
        Moment(
            "abort_received",
            "received",
            (AbortRequest,),
            "the app's AbortRequest reached the terminal, before the engine handles it",
        ),
        Moment(
            "result_ready",
            "sending",
            (PaymentResponse, CardAcquisitionResponse),
            "the terminal decided (approved, declined or aborted): its PaymentResponse / "
            "CardAcquisitionResponse is about to leave, the phone does not have it yet",
        ),
        Moment(
            "result_sent",
            "sent",
            (PaymentResponse, CardAcquisitionResponse),
            "the PaymentResponse / CardAcquisitionResponse left the terminal",
        ),
        Moment(
            "status_requested",
            "received",
            (TransactionStatusRequest,),
            "the app asks what became of a transaction (TransactionStatusRequest, after a "
            "reconnection), before the engine answers",
        ),
    )
}


class MomentTracker:
    """Tells which moments a message marks, fed every hook call in order (pure; one per
    terminal). It remembers the ids of payment and capture requests so that the
    ``CommandAccepted`` answering them, and only those, is ``card_requested``."""

    def __init__(self) -> None:
        self._flow_requests: set[int] = set()

    def moments(self, point: HookPoint, message: Message) -> list[str]:
        found = []
        if point == "received" and isinstance(message, PaymentRequest | CardAcquisitionRequest):
            self._flow_requests.add(message.id)
        for moment in MOMENTS.values():
            if moment.point != point or not isinstance(message, moment.messages):
                continue
            if isinstance(message, CommandAccepted) and (
                message.in_reply_to not in self._flow_requests
            ):
                continue
            if moment.screen is not None and (
                not isinstance(message, DisplayUpdate) or moment.screen not in message.lines
            ):
                continue
            found.append(moment.name)
        return found


# --------------------------------------------------------------------------------------------
# The script
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorldSpec:
    terminal: str = "standard"
    seed: int | None = None
    #: the terminal left the factory configured (no first setup at association)
    preconfigured: bool = True
    #: the app is associated with the terminal before the flow starts (False: the flow
    #: associates it at payment time)
    associated: bool = True


@dataclass(frozen=True)
class PaymentFlow:
    """Pay an invoice: ``invoice`` (a number), or a new invoice of ``amount_cents``, or the
    first unpaid invoice due between ``at_least_cents`` and ``at_most_cents``."""

    invoice: str | None = None
    amount_cents: int | None = None
    at_most_cents: int | None = None
    at_least_cents: int | None = None
    line: int = 0


@dataclass(frozen=True)
class CaptureFlow:
    """Save a card on a customer record: ``customer`` (an id), or ``None`` for a new
    customer with no saved card."""

    customer: str | None = None
    line: int = 0


Flow: TypeAlias = PaymentFlow | CaptureFlow


# Cardholder and technician actions --------------------------------------------------------
@dataclass(frozen=True)
class Tap:
    card: str
    brand: str | None = None
    line: int = 0


@dataclass(frozen=True)
class Insert:
    card: str
    brand: str | None = None
    line: int = 0


@dataclass(frozen=True)
class EnterPin:
    pin: str
    line: int = 0


@dataclass(frozen=True)
class PressKey:
    key: Literal["red", "green"]
    line: int = 0


@dataclass(frozen=True)
class RemoveCard:
    line: int = 0


@dataclass(frozen=True)
class Wait:
    seconds: float
    line: int = 0


@dataclass(frozen=True)
class CancelFromApp:
    line: int = 0


@dataclass(frozen=True)
class PayAgain:
    """The technician triggers another card payment while this one runs (from the same app)."""

    line: int = 0


# Faults -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DropLink:
    line: int = 0


@dataclass(frozen=True)
class OutOfRange:
    """The phone goes out of range: the link drops and it hears nothing for ``seconds``."""

    seconds: float
    line: int = 0


@dataclass(frozen=True)
class SetBattery:
    level: int
    line: int = 0


@dataclass(frozen=True)
class Reboot:
    """The terminal restarts (same data folder: bonds, configuration, journal kept)."""

    line: int = 0


BackendFaultKind = Literal[
    "fail", "fail_after", "delay", "refuse_connections", "accept_connections", "clear"
]
#: Backend routes a fault may name (the handlers of ``harness/backend/server.py``, as its
#: fault plan knows them); a fault may also name ``METHOD /path`` with ``*`` segments, or ``*``.
BACKEND_ROUTES = (
    "get_merchant",
    "get_terminal",
    "get_billing_settings",
    "put_billing_settings",
    "list_terminals",
    "associate_terminal",
    "list_customers",
    "get_customer",
    "list_invoices",
    "get_invoice",
    "create_payment",
    "get_payment",
    "authorise_payment",
    "record_result",
    "get_receipts",
    "create_capture",
    "get_capture",
    "verify_capture",
    "record_capture_result",
    "list_payment_methods",
    "create_token_payment",
    "get_openapi",
)


@dataclass(frozen=True)
class BackendFault:
    """A fault of the backend's fault plan (``harness/backend/faults.py``): ``fail`` (answer
    ``status`` before the store sees the request), ``fail_after`` (the store applies it, the
    answer is lost), ``delay`` (``seconds`` of loop time), or the port refusing / accepting
    connections, or ``clear``. ``status`` None cuts the connection; ``times`` None: until
    cleared."""

    kind: BackendFaultKind
    route: str | None = None
    status: int | None = 503
    seconds: float = 0.0
    times: int | None = 1
    line: int = 0


@dataclass(frozen=True)
class PhoneOffline:
    on: bool = True
    line: int = 0


Action: TypeAlias = (
    Tap
    | Insert
    | EnterPin
    | PressKey
    | RemoveCard
    | Wait
    | CancelFromApp
    | PayAgain
    | DropLink
    | OutOfRange
    | SetBattery
    | Reboot
    | BackendFault
    | PhoneOffline
)
FaultAction: TypeAlias = DropLink | OutOfRange | SetBattery | Reboot | BackendFault | PhoneOffline
#: What may happen at a named moment: a fault, or the technician's cancel in the app.
TimedAction: TypeAlias = FaultAction | CancelFromApp | PressKey


@dataclass(frozen=True)
class TimedFault:
    """A fault that strikes at a named moment (the ``occurrence``-th time it comes)."""

    moment: str
    action: TimedAction
    occurrence: int = 1
    line: int = 0


Result = Literal["approved", "declined", "aborted", "none"]
InvoiceState = Literal["paid", "unpaid", "partially_paid"]


@dataclass(frozen=True)
class Expectation:
    """What should come of the script; unset fields are not checked. The backend's
    bookkeeping invariants (``BackendStore.check_invariants``) are always checked."""

    result: Result | None = None
    response_code: str | None = None
    error: str | None = None  # the app's error code when the flow ends without a result
    invoice: InvoiceState | None = None
    captured_payments: int | None = None
    charged_cents: int | None = None
    card_saved: bool | None = None
    app_says: tuple[str, ...] = ()
    terminal_idle: bool | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    world: WorldSpec
    flow: Flow
    steps: tuple[Action, ...]
    faults: tuple[TimedFault, ...]
    expect: Expectation
    path: Path | None = None

    @property
    def source(self) -> str:
        return str(self.path) if self.path else self.name


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
_CONSTRUCTOR = SafeConstructor()
_AMOUNT = re.compile(r"^(\d{1,3}(?:[   ]?\d{3})*|\d+)(?:[,.](\d{1,2}))?\s*(?:€|EUR)?$", re.ASCII)
_PIN = re.compile(r"^[0-9]{4,12}$")  # ASCII digits: what the terminal's PIN pad has
#: the largest amount a terminal takes (simulator.terminal.engine.MAX_AMOUNT), in cents
MAX_AMOUNT_CENTS = 99_999_999
_KEYS = ("red", "green")
_BRANDS = ("CB", "VISA", "MASTERCARD", "AMEX")


@dataclass(frozen=True)
class Known:
    """What a script may name: the catalogue's cards (with their brands) and the terminal
    profiles."""

    cards: dict[str, tuple[str, ...]]
    terminals: tuple[str, ...]

    @classmethod
    def from_fixtures(cls, fixtures: Path) -> Known:
        catalogue = Catalogue.load(fixtures / "cards.yaml")
        return cls.of(catalogue, load_profiles(fixtures / "terminals.yaml"))

    @classmethod
    def of(cls, cards: Mapping[str, CardProfile], terminals: Iterable[str]) -> Known:
        """What scripts may name with these cards (a catalogue) and terminal profile keys,
        already loaded."""
        brands = {key: tuple(app.brand for app in card.applications) for key, card in cards.items()}
        return cls(brands, tuple(terminals))


class _At:
    """A YAML node and the field path that leads to it, for errors."""

    def __init__(self, node: Node, where: str, file: str) -> None:
        self.node = node
        self.where = where
        self.file = file

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def error(self, problem: str) -> ScenarioError:
        return ScenarioError(self.file, self.line, self.where, problem)

    def child(self, node: Node, name: str | int) -> _At:
        if isinstance(name, int):
            return _At(node, f"{self.where}[{name}]", self.file)
        return _At(node, f"{self.where}.{name}" if self.where else name, self.file)

    # scalars
    def scalar(self) -> Any:
        if not isinstance(self.node, ScalarNode):
            raise self.error(f"expected a single value, not a {_kind(self.node)}")
        return _CONSTRUCTOR.construct_object(self.node, deep=True)

    def string(self) -> str:
        value = self.scalar()
        if not isinstance(value, str):
            raise self.error(f"expected text, not {_describe(value)}")
        if not value.strip():
            raise self.error("must not be empty")
        return value

    def boolean(self) -> bool:
        value = self.scalar()
        if not isinstance(value, bool):
            raise self.error(f"expected true or false, not {_describe(value)}")
        return value

    def integer(self, low: int | None = None, high: int | None = None) -> int:
        value = self.scalar()
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"expected a whole number, not {_describe(value)}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(f"{value} is out of range ({_range(low, high)})")
        return value

    def seconds(self, high: float = 86_400.0) -> float:
        value = self.scalar()
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.error(f"expected a number of seconds, not {_describe(value)}")
        if not math.isfinite(value) or value < 0:
            raise self.error(f"{value} seconds: must be 0 or more")
        if value > high:
            raise self.error(f"{value} seconds: at most {high:g}")
        return float(value)

    def choice(self, choices: Iterable[str], what: str) -> str:
        options = tuple(choices)
        value = self.scalar()
        if not isinstance(value, str) or value not in options:
            raise self.error(f"unknown {what} {value!r} ({what}s: {', '.join(options)})")
        return value

    def amount(self) -> int:
        """Euros: a number (``42.5``) or French text (``42,50 €``); returns cents, at most
        what a terminal takes (999 999,99 €)."""
        cents = self._amount()
        if cents > MAX_AMOUNT_CENTS:
            raise self.error(f"{cents / 100:.2f} €: more than a terminal takes (999 999,99 €)")
        return cents

    def _amount(self) -> int:
        value = self.scalar()
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value) or value < 0:
                raise self.error(f"{value}: an amount must be 0 or more")
            cents = round(value * 100)
            if abs(cents - value * 100) > 1e-6:
                raise self.error(f"{value}: an amount has at most two decimals")
            return int(cents)
        if isinstance(value, str) and (match := _AMOUNT.match(value.strip())):
            euros = re.sub(r"\D", "", match.group(1))
            return int(euros) * 100 + int((match.group(2) or "0").ljust(2, "0"))
        raise self.error(f"{value!r} is not an amount in euros (e.g. 42.50 or « 42,50 € »)")

    # collections
    def mapping(self, allowed: Iterable[str]) -> dict[str, _At]:
        if not isinstance(self.node, MappingNode):
            raise self.error(f"expected a mapping of keys, not a {_kind(self.node)}")
        names = tuple(allowed)
        found: dict[str, _At] = {}
        for key_node, value_node in self.node.value:
            key = _At(key_node, self.where, self.file)
            name = key.scalar()
            if not isinstance(name, str):
                raise key.error(f"key {name!r} must be text")
            if name not in names:
                raise key.child(key_node, name).error(
                    f"unknown key {name!r} (keys here: {', '.join(names)})"
                )
            if name in found:
                raise key.child(key_node, name).error(
                    f"given twice (first on line {found[name].line})"
                )
            found[name] = self.child(value_node, name)
        return found

    def sequence(self) -> Iterator[_At]:
        if not isinstance(self.node, SequenceNode):
            raise self.error(f"expected a list, not a {_kind(self.node)}")
        for index, item in enumerate(self.node.value):
            yield self.child(item, index)


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "single value"


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{low} to {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


def load(path: Path | str, known: Known | None = None, *, fixtures: Path | None = None) -> Scenario:
    """Read and validate the script at ``path``; :class:`ScenarioError` when it is wrong.
    ``known``: the cards and terminal profiles a script may name (default: from
    ``fixtures``, itself by default the repository's ``fixtures/`` folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), 0, "", f"cannot read the script: {exc}") from exc
    return loads(text, str(path), known, fixtures=fixtures, path=path)


def loads(
    text: str,
    file: str = "<script>",
    known: Known | None = None,
    *,
    fixtures: Path | None = None,
    path: Path | None = None,
) -> Scenario:
    """Validate a script given as text; ``file`` names it in errors."""
    if known is None:
        if fixtures is None:
            from harness.fixtures import fixtures_dir

            fixtures = fixtures_dir()
        known = Known.from_fixtures(fixtures)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            raise ScenarioError(file, 1, "", "the script is empty")
        # reading values may construct YAML features the schema has no use for (e.g. a
        # merge key «<<»): the parser's own error, with its line, as for broken YAML
        return _Reader(file, known).scenario(_At(root, "", file), path or Path(file))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise ScenarioError(file, line, "", f"not valid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(file, 0, "", f"not valid YAML: {exc}") from None


_TOP = ("name", "description", "world", "flow", "steps", "faults", "expect")


class _Reader:
    def __init__(self, file: str, known: Known) -> None:
        self.file = file
        self.known = known

    def scenario(self, at: _At, path: Path | None) -> Scenario:
        top = at.mapping(_TOP)
        if "flow" not in top:
            raise at.error("missing 'flow' (payment or capture)")
        default_name = path.stem if path else "script"
        flow = self.flow(top["flow"])
        expect = self.expect(top["expect"]) if "expect" in top else Expectation()
        only = {"invoice": PaymentFlow, "captured_payments": PaymentFlow, "card_saved": CaptureFlow}
        for name, kind in only.items():
            if name in expect.lines and not isinstance(flow, kind):
                other = "a payment" if kind is PaymentFlow else "a card capture"
                raise ScenarioError(
                    self.file, expect.lines[name], f"expect.{name}", f"only {other} has this"
                )
        return Scenario(
            name=top["name"].string() if "name" in top else default_name,
            description=top["description"].string() if "description" in top else "",
            world=self.world(top["world"]) if "world" in top else WorldSpec(),
            flow=flow,
            steps=tuple(self.action(s) for s in top["steps"].sequence()) if "steps" in top else (),
            faults=tuple(self.timed(f) for f in top["faults"].sequence())
            if "faults" in top
            else (),
            expect=expect,
            path=path,
        )

    def world(self, at: _At) -> WorldSpec:
        keys = at.mapping(("terminal", "seed", "preconfigured", "associated"))
        return WorldSpec(
            terminal=keys["terminal"].choice(self.known.terminals, "terminal profile")
            if "terminal" in keys
            else "standard",
            seed=keys["seed"].integer(0) if "seed" in keys else None,
            preconfigured=keys["preconfigured"].boolean() if "preconfigured" in keys else True,
            associated=keys["associated"].boolean() if "associated" in keys else True,
        )

    def flow(self, at: _At) -> Flow:
        keys = at.mapping(("payment", "capture"))
        if len(keys) != 1:
            raise at.error("give exactly one of 'payment' or 'capture'")
        ((kind, body),) = keys.items()
        if kind == "capture":
            if isinstance(body.node, ScalarNode) and body.scalar() is None:
                return CaptureFlow(line=body.line)
            fields = body.mapping(("customer",))
            customer = fields["customer"].string() if "customer" in fields else "new"
            return CaptureFlow(None if customer == "new" else customer, line=body.line)
        fields = body.mapping(("invoice", "amount", "at_most", "at_least"))
        chosen = [k for k in ("invoice", "amount") if k in fields]
        if len(chosen) > 1 or (chosen and ("at_most" in fields or "at_least" in fields)):
            raise body.error("choose the invoice one way: invoice, amount, or at_most/at_least")
        if not fields:
            raise body.error("say which invoice: invoice, amount, at_most or at_least")
        flow = PaymentFlow(
            invoice=fields["invoice"].string() if "invoice" in fields else None,
            amount_cents=fields["amount"].amount() if "amount" in fields else None,
            at_most_cents=fields["at_most"].amount() if "at_most" in fields else None,
            at_least_cents=fields["at_least"].amount() if "at_least" in fields else None,
            line=body.line,
        )
        if flow.amount_cents == 0:
            raise fields["amount"].error("an invoice of 0 € has nothing to pay")
        if (
            flow.at_most_cents is not None
            and flow.at_least_cents is not None
            and flow.at_least_cents > flow.at_most_cents
        ):
            raise fields["at_least"].error("above at_most: no invoice can match")
        return flow

    # ---------------------------------------------------------------- steps and faults
    def action(self, at: _At) -> Action:
        """One step: a bare word (``remove_card``) or a one-key mapping (``tap: visa``)."""
        if isinstance(at.node, ScalarNode):
            word = at.choice(_BARE_ACTIONS, "step")
            return _BARE_ACTIONS[word](at.line)
        keys = at.mapping(_ACTION_KEYS)
        if len(keys) != 1:
            raise at.error(f"one action per step, not {len(keys)} ({', '.join(keys)})")
        ((name, value),) = keys.items()
        return self._action(name, value)

    def _action(self, name: str, at: _At) -> Action:
        line = at.line
        match name:
            case "tap" | "insert":
                card, brand = self.card(at)
                return Tap(card, brand, line) if name == "tap" else Insert(card, brand, line)
            case "pin":
                value = at.scalar()
                if not isinstance(value, str):
                    raise at.error(f'write the PIN in quotes (pin: "1234"), not {_describe(value)}')
                if not _PIN.match(value):
                    raise at.error(f"{value!r}: the PIN pad takes 4 to 12 digits")
                return EnterPin(value, line)
            case "key":
                key = at.choice(_KEYS, "key")
                return PressKey("red" if key == "red" else "green", line)
            case "wait":
                return Wait(at.seconds(), line)
            case _:
                return self._fault(name, at)

    def _fault(self, name: str, at: _At) -> FaultAction:
        line = at.line
        match name:
            case "drop_link":
                self._flag(at)
                return DropLink(line)
            case "reboot":
                self._flag(at)
                return Reboot(line)
            case "out_of_range":
                return OutOfRange(at.seconds(), line)
            case "battery":
                return SetBattery(at.integer(0, 100), line)
            case "phone_offline":
                return PhoneOffline(at.boolean(), line)
            case "backend":
                return self.backend(at)
        raise at.error(f"{name!r} is not a fault")  # pragma: no cover - keys are checked

    def _flag(self, at: _At) -> None:
        value = at.scalar()
        if value is not True and value is not None:
            raise at.error(f"takes no value (write it alone, or 'true'), not {_describe(value)}")

    def backend(self, at: _At) -> BackendFault:
        if isinstance(at.node, ScalarNode):
            word = at.choice(("refuse_connections", "accept_connections", "clear"), "backend fault")
            kind: BackendFaultKind = (
                "clear"
                if word == "clear"
                else "refuse_connections"
                if word == "refuse_connections"
                else "accept_connections"
            )
            return BackendFault(kind, line=at.line)
        keys = at.mapping(("fail", "fail_after", "delay", "status", "seconds", "times"))
        kinds = [k for k in ("fail", "fail_after", "delay") if k in keys]
        if len(kinds) != 1:
            raise at.error("give one of 'fail: ROUTE', 'fail_after: ROUTE' or 'delay: ROUTE'")
        name = kinds[0]
        route = _route(keys[name])
        if name != "delay" and "seconds" in keys:
            raise keys["seconds"].error("only a 'delay' takes seconds")
        if name == "delay" and "status" in keys:
            raise keys["status"].error("a 'delay' answers normally: no status")
        if name == "delay" and "seconds" not in keys:
            raise at.error("a 'delay' needs 'seconds'")
        return BackendFault(
            "fail" if name == "fail" else "fail_after" if name == "fail_after" else "delay",
            route=route,
            status=_status(keys["status"]) if "status" in keys else 503,
            seconds=keys["seconds"].seconds(3600.0) if "seconds" in keys else 0.0,
            times=_times(keys["times"]) if "times" in keys else 1,
            line=at.line,
        )

    def card(self, at: _At) -> tuple[str, str | None]:
        if isinstance(at.node, MappingNode):
            keys = at.mapping(("card", "brand"))
            if "card" not in keys:
                raise at.error("missing 'card'")
            card_at, brand_at = keys["card"], keys.get("brand")
        else:
            card_at, brand_at = at, None
        card = card_at.string()
        if card not in self.known.cards:
            raise card_at.error(
                f"unknown card {card!r} (cards: {', '.join(sorted(self.known.cards))})"
            )
        if brand_at is None:
            return card, None
        brand = brand_at.choice(_BRANDS, "brand")
        if brand not in self.known.cards[card]:
            have = ", ".join(self.known.cards[card]) or "none"
            raise brand_at.error(f"card {card!r} has no {brand} application (it has {have})")
        return card, brand

    def timed(self, at: _At) -> TimedFault:
        timed = (*_FAULT_KEYS, "cancel", "key")
        keys = at.mapping(("at", "occurrence", *timed))
        if "at" not in keys:
            raise at.error(f"missing 'at' (a moment: {', '.join(MOMENTS)})")
        moment = keys["at"].choice(MOMENTS, "moment")
        actions = [k for k in keys if k in timed]
        if len(actions) != 1:
            raise at.error(f"one fault per entry ({', '.join(timed)}), not {len(actions)}")
        occurrence = keys["occurrence"].integer(1, 100) if "occurrence" in keys else 1
        if moment == "start" and occurrence != 1:
            raise keys["occurrence"].error("'start' comes once")
        name, value = actions[0], keys[actions[0]]
        if moment == "start" and name in ("cancel", "key"):
            raise value.error(
                f"at 'start' no payment or capture runs yet: {name} needs a moment of the flow"
            )
        action: TimedAction
        if name == "cancel":
            self._flag(value)
            action = CancelFromApp(value.line)
        elif name == "key":  # e.g. the red key while the bank decides
            key = value.choice(_KEYS, "key")
            action = PressKey("red" if key == "red" else "green", value.line)
        else:
            action = self._fault(name, value)
        return TimedFault(moment, action, occurrence, at.line)

    # ---------------------------------------------------------------- expectation
    def expect(self, at: _At) -> Expectation:
        keys = at.mapping(_EXPECT_KEYS)
        get: dict[str, Callable[[_At], Any]] = {
            "result": lambda a: a.choice(("approved", "declined", "aborted", "none"), "result"),
            "response_code": lambda a: _code(a),
            "error": lambda a: a.string(),
            "invoice": lambda a: a.choice(("paid", "unpaid", "partially_paid"), "invoice state"),
            "captured_payments": lambda a: a.integer(0, 1),
            "charged": lambda a: a.amount(),
            "card_saved": lambda a: a.boolean(),
            "app_says": lambda a: _texts(a),
            "terminal_idle": lambda a: a.boolean(),
        }
        values = {name: get[name](value) for name, value in keys.items()}
        if "charged" in values:
            values["charged_cents"] = values.pop("charged")
        if "app_says" in values:
            values["app_says"] = tuple(values["app_says"])
        return Expectation(**values, lines={name: value.line for name, value in keys.items()})


def _route(at: _At) -> str:
    value = at.string()
    if value == "*" or value in BACKEND_ROUTES or "/" in value:
        return value  # a path spec is checked against the server's routes when armed
    raise at.error(
        f"unknown route {value!r} (routes: {', '.join(BACKEND_ROUTES)}; or 'METHOD /path')"
    )


def _status(at: _At) -> int | None:
    value = at.scalar()
    if value == "cut":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    raise at.error(f"expected an HTTP error status (400-599) or 'cut', not {value!r}")


def _times(at: _At) -> int | None:
    if at.scalar() == "always":
        return None
    return at.integer(1, 1000)


def _code(at: _At) -> str:
    value = at.scalar()
    if not isinstance(value, str) or not re.fullmatch(r"[0-9A-Z]{2}", value):
        raise at.error(f'write a response code as two characters in quotes ("51"), not {value!r}')
    return value


def _texts(at: _At) -> list[str]:
    if isinstance(at.node, SequenceNode):
        return [item.string() for item in at.sequence()]
    return [at.string()]


_BARE_ACTIONS: dict[str, Callable[[int], Action]] = {
    "remove_card": lambda line: RemoveCard(line),
    "cancel": lambda line: CancelFromApp(line),
    "pay_again": lambda line: PayAgain(line),
    "drop_link": lambda line: DropLink(line),
    "reboot": lambda line: Reboot(line),
}
_FAULT_KEYS = ("drop_link", "out_of_range", "battery", "reboot", "backend", "phone_offline")
_ACTION_KEYS = ("tap", "insert", "pin", "key", "wait", *_FAULT_KEYS)
_EXPECT_KEYS = (
    "result",
    "response_code",
    "error",
    "invoice",
    "captured_payments",
    "charged",
    "card_saved",
    "app_says",
    "terminal_idle",
)


def script_paths(targets: Iterable[Path]) -> list[Path]:
    """The scripts named by ``targets``: files as given, folders' ``*.yaml`` and ``*.yml``
    sorted by name (not their sub-folders: ``scenarios/pending/`` is not run)."""
    found: list[Path] = []
    for target in targets:
        if target.is_dir():
            found += sorted(p for p in target.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            found.append(target)
    return found
