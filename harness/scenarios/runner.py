"""Play a scenario script on a :class:`~harness.rig.World` and judge it.

The world runs on virtual time: a script with a 60-second card timeout or a phone out of range
for two minutes costs milliseconds. Steps run in order through the world's sync facade;
faults at named moments run inside the terminal's message hooks (``World.at_moment``). The
verdict says ``passed``, ``failed`` (with each expectation that differed) or ``error`` (the
script could not be played: the invoice it names does not exist, a fault this build does not
have, …).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from faker import Faker

from harness.app import CaptureOutcome, PaymentOutcome, PhoneError
from harness.rig import World, WorldConfig, WorldTimeout
from harness.scenarios.model import (
    Action,
    BackendFault,
    CancelFromApp,
    CaptureFlow,
    DropLink,
    EnterPin,
    Insert,
    OutOfRange,
    PayAgain,
    PaymentFlow,
    PhoneOffline,
    PressKey,
    Reboot,
    RemoveCard,
    Scenario,
    SetBattery,
    Tap,
    TimedAction,
    Wait,
)
from simulator.terminal import TerminalError, format_amount

log = logging.getLogger(__name__)

Status = Literal["passed", "failed", "error"]
#: Loop seconds the runner gives the terminal to be back on its welcome screen after the flow.
SETTLE_SECONDS = 120.0


class ScriptCannotRun(Exception):
    """The script names something this world does not have (an invoice, a fault)."""


@dataclass
class Verdict:
    """How a script went: ``outcome`` in one line, ``differences`` (why it failed) or
    ``error`` (why it could not run), and what happened on the way (``notes``)."""

    scenario: Scenario
    status: Status
    outcome: str = ""
    differences: list[str] = field(default_factory=list)
    error: str = ""
    notes: list[str] = field(default_factory=list)
    loop_seconds: float = 0.0
    wall_seconds: float = 0.0
    result: str = "none"  # approved, declined, aborted, or none (no final word)
    charged_cents: int = 0  # captured during the script, every invoice included

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def explain(self) -> str:
        """Every difference (or the error), one a line, for a failing test."""
        if self.status == "error":
            return self.error
        return "\n".join(self.differences) or "as expected"


def run_scenario(
    scenario: Scenario,
    *,
    fixtures: Path | None = None,
    seed: int | None = None,
    fast: bool = True,
) -> Verdict:
    """Build a world as the script says (``seed``: for a script that names none), play the
    script on it, close it, and return the verdict."""
    spec = scenario.world
    config = WorldConfig(
        terminal=spec.terminal,
        seed=spec.seed if spec.seed is not None else seed,
        preconfigured=spec.preconfigured,
        fast=fast,
    )
    if fixtures is not None:
        config = dataclasses.replace(config, fixtures=fixtures)
    try:
        world = World(config)
        world.open()
    except Exception as exc:  # fixtures missing or broken: nothing was played
        return Verdict(scenario, "error", error=f"cannot build the world: {exc}")
    try:
        return play(world, scenario)
    finally:
        world.close()


def play(world: World, scenario: Scenario) -> Verdict:
    """Play ``scenario`` on an open ``world`` (its terminal profile is switched to the
    script's when they differ) and judge the result."""
    return _Player(world, scenario).play()


class _Player:
    def __init__(self, world: World, scenario: Scenario) -> None:
        self.world = world
        self.scenario = scenario
        self.notes: list[str] = []
        self.hook_errors: list[str] = []
        self.outcome: PaymentOutcome | CaptureOutcome | None = None
        self.flow_error: PhoneError | None = None
        self.flow_started = False
        self.invoice_number: str | None = None
        self.customer_id: str | None = None
        #: the captured payments and saved cards there were when the flow started
        self._captured_before: set[str] = set()
        self._methods_before = 0

    def note(self, text: str) -> None:
        self.notes.append(f"[{self.world.loop_elapsed:8.3f} s] {text}")

    # ---------------------------------------------------------------- playing
    def play(self) -> Verdict:
        world = self.world
        loop_start, wall_start = world.loop_elapsed, world.wall_elapsed
        try:
            self._prepare()
            self._run_flow()
        except ScriptCannotRun as exc:
            return self._verdict("error", error=str(exc), loop_start=loop_start, wall=wall_start)
        except _StepRefused as exc:
            return self._verdict(
                "failed", differences=[str(exc)], loop_start=loop_start, wall=wall_start
            )
        except Exception as exc:  # a fault this world cannot arm, a bug: say so, go on
            log.exception("scenario %s could not be played", self.scenario.name)
            return self._verdict(
                "error",
                error=f"{type(exc).__name__}: {exc}",
                loop_start=loop_start,
                wall=wall_start,
            )
        differences = self._judge()
        return self._verdict(
            "failed" if differences else "passed",
            differences=differences,
            loop_start=loop_start,
            wall=wall_start,
        )

    def _verdict(
        self,
        status: Status,
        *,
        loop_start: float,
        wall: float,
        differences: list[str] | None = None,
        error: str = "",
    ) -> Verdict:
        return Verdict(
            self.scenario,
            status,
            outcome=self._outcome_line(),
            differences=differences or [],
            error=error,
            notes=self.notes,
            loop_seconds=self.world.loop_elapsed - loop_start,
            wall_seconds=self.world.wall_elapsed - wall,
            result=self.outcome.result if self.outcome else "none",
            charged_cents=self._charged(),
        )

    def _prepare(self) -> None:
        world, scenario = self.world, self.scenario
        if scenario.world.terminal != world.config.terminal:
            world.use_terminal(scenario.world.terminal)
        if scenario.world.associated:
            try:
                world.associate()
            except PhoneError as exc:
                raise ScriptCannotRun(f"the association failed: {exc.message}") from None
            self.note("terminal associated")
        flow = scenario.flow
        if isinstance(flow, PaymentFlow):
            self.invoice_number = self._invoice(flow)
        else:
            self.customer_id = self._customer(flow)
        for fault in scenario.faults:
            if fault.moment == "start":
                self.note(f"fault (line {fault.line}) at start: {_describe(fault.action)}")
                self._fault_now(fault.action)
            else:
                world.at_moment(
                    fault.moment, self._fault_at_moment(fault.action, fault.line), fault.occurrence
                )
        self._captured_before = {
            p.id for p in world.store.payments.values() if p.status == "captured"
        }
        self._methods_before = len(world.store.payment_methods)

    def _invoice(self, flow: PaymentFlow) -> str:
        store = self.world.store
        if flow.invoice is not None:
            if flow.invoice not in store.invoices:
                raise ScriptCannotRun(
                    f"{self.scenario.source}:{flow.line}: flow.payment.invoice: no invoice "
                    f"{flow.invoice!r} in this world"
                )
            return flow.invoice
        if flow.amount_cents is not None:
            fake = Faker("fr_FR")
            fake.seed_instance(self.world.seed + len(store.customers))
            customer = store.add_customer(fake.name(), city=fake.city(), email=fake.email())
            today = self.world.calendar().date()
            return store.add_invoice(
                customer.id,
                flow.amount_cents,
                issue_date=today,
                due_date=today + dt.timedelta(days=30),
            ).number
        for invoice in store.invoices.values():
            due = invoice.balance_due_cents
            if (
                invoice.status == "unpaid"
                and (flow.at_most_cents is None or due <= flow.at_most_cents)
                and (flow.at_least_cents is None or due >= flow.at_least_cents)
            ):
                return invoice.number
        raise ScriptCannotRun(
            f"{self.scenario.source}:{flow.line}: flow.payment: no unpaid invoice in that range "
            "in this world (try another seed, or 'amount:')"
        )

    def _customer(self, flow: CaptureFlow) -> str:
        store = self.world.store
        if flow.customer is not None:
            if flow.customer not in store.customers:
                raise ScriptCannotRun(
                    f"{self.scenario.source}:{flow.line}: flow.capture.customer: no customer "
                    f"{flow.customer!r} in this world"
                )
            return flow.customer
        fake = Faker("fr_FR")
        fake.seed_instance(self.world.seed + 1000 + len(store.customers))
        return store.add_customer(fake.name(), city=fake.city(), email=fake.email()).id

    def _run_flow(self) -> None:
        world = self.world
        try:
            if self.invoice_number is not None:
                self.note(f"payment of invoice {self.invoice_number} started")
                world.start_payment(self.invoice_number)
            else:
                assert self.customer_id is not None
                self.note(f"card capture for customer {self.customer_id} started")
                world.start_capture(self.customer_id)
            self.flow_started = True
        except PhoneError as exc:
            self.flow_started = True
            self.flow_error = exc
            self.note(f"the flow ended at once: {exc.message}")
        for index, step in enumerate(self.scenario.steps):
            self._step(index, step)
        self._finish()
        try:
            world.run(
                world.wait_until(
                    lambda: world.terminal.engine.state.value == "idle",
                    "the terminal to be back on its welcome screen",
                    SETTLE_SECONDS,
                )
            )
        except WorldTimeout:
            self.note(f"terminal not idle after {SETTLE_SECONDS:g} s")

    def _step(self, index: int, step: Action) -> None:
        world = self.world
        where = f"steps[{index}] (line {step.line})"
        self.note(f"{where}: {_describe(step)}")
        try:
            match step:
                case Tap():
                    world.tap(step.card, brand=step.brand)
                case Insert():
                    world.insert(step.card, brand=step.brand)
                case EnterPin():
                    world.enter_pin(step.pin)
                case PressKey():
                    if step.key == "red":
                        world.press_red_key()
                    else:  # outside pairing the green key only confirms a typed PIN
                        world.terminal.press_key("green")
                case RemoveCard():
                    world.remove_card()
                case Wait():
                    world.wait(step.seconds)
                case CancelFromApp():
                    world.cancel_from_app()
                case PayAgain():
                    self._pay_again()
                case _:
                    self._fault_now(step)
        except TerminalError as exc:
            raise _StepRefused(f"{where}: the terminal refused it: {exc}") from None
        except PhoneError as exc:  # the app said no (nothing to cancel, …): shown, go on
            self.note(f"  the app says: {exc.message}")

    def _pay_again(self) -> None:
        """While the first flow runs, the app refuses a second one at once; once it has
        ended, this is the technician's next payment, judged at the end in its place."""
        number = self.invoice_number or self.world.unpaid_invoice()
        if number is None:
            raise ScriptCannotRun("pay_again: no invoice to pay")
        if self.world.flow_in_progress:
            self.world.run(self.world.app.pay_invoice(number))
            return
        self._finish()  # the first flow's end, noted
        self.outcome, self.flow_error = None, None
        self.world.start_payment(number)

    def _fault_now(self, fault: Action) -> None:
        world = self.world
        match fault:
            case DropLink():
                world.drop_link()
            case OutOfRange():
                world.out_of_range(fault.seconds)
            case SetBattery():
                world.set_battery(fault.level)
            case Reboot():
                world.restart_terminal()
            case BackendFault():
                world.backend_fault(
                    fault.kind,
                    fault.route,
                    status=fault.status,
                    seconds=fault.seconds,
                    times=fault.times,
                )
            case PhoneOffline():
                world.phone_offline(fault.on)
            case CancelFromApp():
                world.cancel_from_app()
            case _:  # pragma: no cover - the model's faults are all matched
                raise AssertionError(f"not a fault: {fault!r}")

    def _fault_at_moment(self, fault: TimedAction, line: int) -> Callable[[], Awaitable[None]]:
        world = self.world

        async def strike() -> None:
            self.note(f"fault (line {line}): {_describe(fault)}")
            try:
                match fault:
                    case DropLink():
                        await world.terminal.drop_links()
                    case OutOfRange():
                        await world.out_of_range_now(fault.seconds)
                    case Reboot():
                        world.reboot_soon()
                    case CancelFromApp():  # its write needs the terminal: not from its hook
                        world.spawn(self._cancel())
                    case PressKey(key=key):  # on the keypad: no write, safe from the hook
                        world.terminal.press_key(key)
                    case _:
                        self._fault_now(fault)
            except Exception as exc:  # the terminal's hook runner would only log it
                self.hook_errors.append(f"fault at line {line} failed: {exc!r}")
                raise

        return strike

    async def _cancel(self) -> None:
        try:
            await self.world.app.cancel()
        except PhoneError as exc:
            self.note(f"  the app says: {exc.message}")

    def _finish(self) -> None:
        world = self.world
        if self.flow_error is not None:
            return
        try:
            if self.invoice_number is not None:
                self.outcome = world.finish_payment()
            else:
                self.outcome = world.finish_capture()
            self.note(f"the flow ended: {self.outcome.result} — {self.outcome.message}")
        except PhoneError as exc:
            self.flow_error = exc
            self.note(f"the flow ended without a result: {exc.message} ({exc.code})")

    # ---------------------------------------------------------------- judging
    def _judge(self) -> list[str]:
        world, expect = self.world, self.scenario.expect
        differences: list[str] = []

        def differ(name: str, text: str) -> None:
            line = expect.lines.get(name)
            differences.append(f"expect.{name} (line {line}): {text}" if line else text)

        differences += self.hook_errors
        struck = {(m, n) for m, n, _ in world.moments_struck}
        for fault in self.scenario.faults:
            if fault.moment != "start" and (fault.moment, fault.occurrence) not in struck:
                differences.append(
                    f"faults (line {fault.line}): moment {fault.moment!r} "
                    f"(occurrence {fault.occurrence}) never came: the fault did not strike"
                )
        result = self.outcome.result if self.outcome else "none"
        if expect.result is not None and result != expect.result:
            why = f" ({self.flow_error.message})" if self.flow_error else ""
            differ("result", f"expected {expect.result}, got {result}{why}")
        if expect.response_code is not None:
            code = self.outcome.response_code if self.outcome else None
            if code != expect.response_code:
                differ("response_code", f"expected {expect.response_code!r}, got {code!r}")
        if expect.error is not None:
            code = self.flow_error.code if self.flow_error else None
            if code != expect.error:
                differ("error", f"expected the app's error {expect.error!r}, got {code!r}")
        if self.invoice_number is not None:
            invoice = world.store.invoice(self.invoice_number)
            if expect.invoice is not None and invoice.status != expect.invoice:
                differ("invoice", f"expected {expect.invoice}, got {invoice.status}")
            captured = [p for p in invoice.payments if p.status == "captured"]
            if expect.captured_payments is not None and len(captured) != expect.captured_payments:
                differ(
                    "captured_payments",
                    f"expected {expect.captured_payments}, got {len(captured)}: "
                    f"{[(p.id, p.status) for p in invoice.payments]}",
                )
        if expect.charged_cents is not None:
            charged = self._charged()
            if charged != expect.charged_cents:
                differ(
                    "charged",
                    f"expected {format_amount(expect.charged_cents, '€')}, "
                    f"got {format_amount(charged, '€')}",
                )
        if expect.card_saved is not None:
            saved = len(world.store.payment_methods) > self._methods_before
            if saved != expect.card_saved:
                differ("card_saved", f"expected {expect.card_saved}, got {saved}")
        shown = [text for app in world.apps for text in app.screen]
        for text in expect.app_says:
            if not any(text in line for line in shown):
                differ("app_says", f"the app never said « {text} »; it said {shown[-5:]!r}")
        if expect.terminal_idle is not None:
            state = world.terminal.engine.state.value
            if (state == "idle") != expect.terminal_idle:
                differ("terminal_idle", f"expected {expect.terminal_idle}, terminal is {state!r}")
        differences += [f"invariant: {problem}" for problem in world.store.check_invariants()]
        return differences

    def _charged(self) -> int:
        return sum(
            p.amount_cents
            for p in self.world.store.payments.values()
            if p.status == "captured" and p.id not in self._captured_before
        )

    def _outcome_line(self) -> str:
        if not self.flow_started:
            return "not started"
        parts = [self.outcome.result if self.outcome else f"no result ({self._error_code()})"]
        if self.invoice_number is not None:
            status = self.world.store.invoice(self.invoice_number).status
            parts.append(f"invoice {status}")
            parts.append(f"charged {format_amount(self._charged(), '€')}")
        else:
            saved = len(self.world.store.payment_methods) > self._methods_before
            parts.append("card saved" if saved else "no card saved")
        return ", ".join(parts)

    def _error_code(self) -> str:
        return self.flow_error.code if self.flow_error else "?"


class _StepRefused(Exception):
    pass


def _describe(action: Action) -> str:
    match action:
        case Tap(card=card, brand=brand) | Insert(card=card, brand=brand):
            verb = "tap" if isinstance(action, Tap) else "insert"
            return f"{verb} {card}" + (f" ({brand})" if brand else "")
        case EnterPin():
            return "PIN typed"
        case PressKey(key=key):
            return f"{key} key"
        case RemoveCard():
            return "card removed"
        case Wait(seconds=seconds):
            return f"wait {seconds:g} s"
        case CancelFromApp():
            return "cancel in the app"
        case PayAgain():
            return "another payment triggered"
        case DropLink():
            return "link dropped"
        case OutOfRange(seconds=seconds):
            return f"phone out of range for {seconds:g} s"
        case SetBattery(level=level):
            return f"battery at {level} %"
        case Reboot():
            return "terminal reboots"
        case BackendFault(kind=kind, route=route):
            return f"backend {kind}" + (f" {route}" if route else "")
        case PhoneOffline(on=on):
            return "phone offline" if on else "phone back online"
