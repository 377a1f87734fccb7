"""A fleet: N terminals and N phones on one link, one backend and one event loop.

The same building blocks as :class:`harness.rig.World` (``BleTerminal``, ``TerminalEngine``,
``VirtualPhone``, ``InvoicingApp``, ``BackendServer``, one ``LocalLink``), multiplied: every
terminal runs its own copy of a profile with a distinct serial, BLE name and address (and so
its own DUKPT initial key, derived from the serial as ``keys.yaml`` says); every phone has its
own address and app, and associates *its* terminal by name among all those in range. One
backend holds one unpaid invoice per pair. :meth:`Fleet.pay_all` has every technician pay at
once: scan, pair (codes compared), register the terminal, create the payment, the customer
taps, authorisation, result.

Used by the benchmark (``make bench``) to measure throughput and memory per terminal; the
test suite runs a small one::

    with Fleet(FleetConfig(size=3)) as fleet:
        outcomes = fleet.pay_all()
        assert all(o.invoice["status"] == "paid" for o in outcomes)
        assert fleet.store.check_invariants() == []

Terminals and phones are built by a :data:`DeviceFactory`; the default puts them on the
fleet's ``LocalLink``. The benchmark's realistic lane passes one that opens a transport to a
RootCanal controller instead (``fast=False``: RootCanal runs on the wall clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import looptime
from bumble.device import Device
from bumble.link import LocalLink

from harness.app import AppTimeouts, BackendClient, InvoicingApp, PaymentOutcome, VirtualPhone
from harness.backend import BackendServer, BackendStore
from harness.backend.seed import empty_store, load_seed_settings, processor_from
from harness.fixtures import fixtures_dir
from harness.keys import load_keys
from harness.rig import close_loop, factory_setup, inject_card_data_key, local_device
from simulator.ble import BleTerminal
from simulator.cards import CardProfile, Catalogue, EntryMode, VirtualCard
from simulator.terminal import (
    ProfileError,
    TerminalEngine,
    TerminalProfile,
    Timeouts,
    load_profiles,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Builds one Bumble device (name, address) inside the fleet's running loop.
DeviceFactory = Callable[[str, str], Awaitable[Device]]

#: Static random addresses (two top bits set): terminals C1:…, phones C2:…, numbered from 1.
TERMINAL_ADDRESS_PREFIX = 0xC1
PHONE_ADDRESS_PREFIX = 0xC2
MAX_FLEET_SIZE = 0xFFFFFF


class FleetTimeout(AssertionError):
    """A member waited too long (in loop time) for something; the message says what."""


@dataclass
class FleetConfig:
    size: int = 3
    fixtures: Path = field(default_factory=fixtures_dir)
    terminal: str = "standard"  # the profile every terminal is a copy of
    #: The catalogue card every customer's own card is a copy of (a PAN of its own, so that
    #: the issuer keeps one ATC and one set of PSD2 counters per customer), tapped.
    card: str = "visa"
    amount_cents: int = 2500  # every invoice; at most 50 € stays contactless for any card
    seed: int | None = None  # None: the seed in fixtures/merchant.yaml
    scenario_date: dt.datetime | None = None  # None: the date in fixtures/merchant.yaml
    fast: bool = True  # virtual time (looptime); False: the wall clock
    #: terminals configured at the factory (no first setup at association), as
    #: ``WorldConfig(preconfigured=True)``; False: each runs its first setup
    preconfigured: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)
    app_timeouts: AppTimeouts = field(default_factory=AppTimeouts)


def member_address(prefix: int, index: int) -> str:
    """``index`` (1-based) under ``prefix``: ``C1:00:00:00:00:01`` for terminal 1."""
    if not 1 <= index <= MAX_FLEET_SIZE:
        raise ValueError(f"fleet member index {index} out of range 1..{MAX_FLEET_SIZE}")
    octets = [prefix, 0, 0, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF]
    return ":".join(f"{octet:02X}" for octet in octets)


def luhn_digit(body: str) -> str:
    """The check digit that makes ``body`` + digit pass the Luhn test."""
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:  # doubled: every second digit from the check digit's left
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return str((10 - total % 10) % 10)


def customer_card(base: CardProfile, index: int) -> CardProfile:
    """Customer ``index``'s card: ``base`` with a PAN of its own (same BIN and length, a
    valid Luhn digit) and the key ``<base key>-0001``."""
    width = len(base.pan) - 7  # BIN (6 digits) + index + check digit
    if index >= 10**width:
        raise ValueError(f"card {base.key!r}: no room for customer {index} in its PAN")
    body = f"{base.pan[:6]}{index:0{width}d}"
    return dataclasses.replace(base, key=f"{base.key}-{index:04d}", pan=body + luhn_digit(body))


def terminal_profile(base: TerminalProfile, index: int) -> TerminalProfile:
    """Copy ``index`` of ``base``: serial ``<base serial>-0001`` (so its own BLE name and
    DUKPT initial key ID, see ``harness/keys.py``) and its own address."""
    return dataclasses.replace(
        base,
        key=f"{base.key}-{index:04d}",
        serial=f"{base.serial}-{index:04d}",
        address=member_address(TERMINAL_ADDRESS_PREFIX, index),
    )


@dataclass(eq=False)
class FleetMember:
    """One shop counter: a terminal, the technician's phone and app, a customer's card."""

    index: int
    profile: TerminalProfile
    terminal: BleTerminal
    phone: VirtualPhone
    app: InvoicingApp
    card: VirtualCard
    invoice: str
    changed: asyncio.Event
    outcome: PaymentOutcome | None = None
    error: BaseException | None = None


class Fleet:
    """N terminal + phone pairs sharing one link, one backend and one loop."""

    def __init__(
        self, config: FleetConfig | None = None, device_factory: DeviceFactory | None = None
    ) -> None:
        self.config = config or FleetConfig()
        if not 1 <= self.config.size <= MAX_FLEET_SIZE:
            raise ValueError(f"fleet size must be 1..{MAX_FLEET_SIZE}, not {self.config.size}")
        fixtures = self.config.fixtures
        settings = load_seed_settings(fixtures)
        self.scenario_date = self.config.scenario_date or settings.scenario_date
        self.seed = settings.faker_seed if self.config.seed is None else self.config.seed
        self.keys = load_keys(fixtures)
        self.catalogue = Catalogue.load(fixtures / "cards.yaml")
        if self.config.card not in self.catalogue:
            raise KeyError(f"no card {self.config.card!r} in cards.yaml")
        profiles = load_profiles(fixtures / "terminals.yaml")
        if self.config.terminal not in profiles:
            raise ProfileError(
                f"no terminal profile {self.config.terminal!r} in terminals.yaml "
                f"(known: {', '.join(profiles) or 'none'})"
            )
        base = profiles[self.config.terminal]
        self.profiles = [terminal_profile(base, i) for i in range(1, self.config.size + 1)]
        self.loop: asyncio.AbstractEventLoop = (
            looptime.new_event_loop(start=0.0) if self.config.fast else asyncio.new_event_loop()
        )
        self._device_factory = device_factory or self._local_device
        self.members: list[FleetMember] = []
        #: Run (in order) at the end of :meth:`close`, inside the loop: e.g. closing the
        #: transports a device factory opened.
        self.cleanups: list[Callable[[], Awaitable[None]]] = []
        self.teardown_errors: list[Exception] = []
        self._loop_start = 0.0
        self._wall_start = 0.0
        self._open = False

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Fleet:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        self._wall_start = time.perf_counter()
        self._open = True  # close() tears down whatever a failed build left
        self.run(self._build())

    async def _build(self) -> None:
        self._loop_start = asyncio.get_running_loop().time()
        self.store: BackendStore = empty_store(self.config.fixtures, seed=self.seed)
        base_card = self.catalogue[self.config.card]
        self.cards = [customer_card(base_card, i) for i in range(1, self.config.size + 1)]
        catalogue_pans = {card.pan for card in self.catalogue.values()}
        if any(card.pan in catalogue_pans for card in self.cards):
            raise ValueError(f"a copy of card {base_card.key!r} has a catalogue card's PAN")
        # the catalogue's cards, as load_processor builds it, plus the customers' cards
        processor = processor_from(self.keys, [*self.catalogue.values(), *self.cards])
        self.backend = BackendServer(self.store, processor, now=self.calendar)
        await self.backend.start()
        self.link = LocalLink()  # type: ignore[no-untyped-call]
        today = self.scenario_date.date()
        for index, profile in enumerate(self.profiles, start=1):
            customer = self.store.add_customer(f"Client {index:04d}")
            invoice = self.store.add_invoice(
                customer.id,
                self.config.amount_cents,
                issue_date=today,
                due_date=today + dt.timedelta(days=30),
            )
            preconfigured = self.config.preconfigured
            setup, firmware = factory_setup(self.store.merchant, profile)
            engine = TerminalEngine(
                profile,
                setup if preconfigured else None,
                self.config.timeouts,
                firmware=firmware if preconfigured else None,
            )
            inject = functools.partial(inject_card_data_key, self.keys, None)
            if preconfigured:  # its key was injected with its configuration, at the factory
                inject(engine)
            device = await self._device_factory(profile.name, profile.address)
            terminal = BleTerminal(  # no data folder: bonds and counters kept in memory
                device, engine, self.calendar, on_setup_complete=inject
            )
            changed = asyncio.Event()
            terminal.listeners.append(changed.set)
            await terminal.start()
            phone = VirtualPhone(
                await self._device_factory(
                    f"Téléphone {index:04d}", member_address(PHONE_ADDRESS_PREFIX, index)
                )
            )
            await phone.start()
            app = InvoicingApp(phone, BackendClient(self.backend.url), self.config.app_timeouts)
            app.listeners.append(_waker(changed))
            member = FleetMember(
                index=index,
                profile=profile,
                terminal=terminal,
                phone=phone,
                app=app,
                card=self.keys.personalise(self.cards[index - 1]),
                invoice=invoice.number,
                changed=changed,
            )
            phone.confirm_code = self._compares_codes(member)
            phone.type_passkey = self._types_passkey(member)
            self.members.append(member)

    async def _local_device(self, name: str, address: str) -> Device:
        return local_device(self.link, name, address)

    def close(self) -> None:
        if self._open:
            self._open = False
            self.run(self._teardown())
        close_loop(self.loop)

    async def _teardown(self) -> None:
        """Disconnect, then stop every app, phone and terminal, then the backend. A step that
        fails is logged and kept in :attr:`teardown_errors`; the others still run."""
        steps: list[Callable[[], Awaitable[None]]] = []
        for member in self.members:
            if member.app.link is not None:
                steps.append(member.app.link.disconnect)
        for member in self.members:
            steps += [member.app.backend.close, member.phone.stop, member.terminal.stop]
        if hasattr(self, "backend"):
            steps.append(self.backend.stop)
        steps += self.cleanups
        for step in steps:
            try:
                await step()
            except Exception as exc:
                log.warning("fleet teardown: %s failed: %r", step, exc)
                self.teardown_errors.append(exc)

    # ------------------------------------------------------------------ time and running
    def calendar(self) -> dt.datetime:
        """The scenario's date and time: start date plus elapsed loop time."""
        return self.scenario_date + dt.timedelta(seconds=self.loop.time() - self._loop_start)

    @property
    def loop_elapsed(self) -> float:
        return self.loop.time() - self._loop_start

    @property
    def wall_elapsed(self) -> float:
        return time.perf_counter() - self._wall_start

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the fleet's loop until it completes."""
        return self.loop.run_until_complete(coro)

    # ------------------------------------------------------------------ the people
    def _compares_codes(self, member: FleetMember) -> Callable[[str], Awaitable[bool]]:
        """Member's technician reads the code on the phone and on the terminal, confirms."""

        async def compare(code: str) -> bool:
            await _wait_until(
                member,
                lambda: member.terminal.awaiting_code_confirmation,
                "its terminal to show the pairing code",
                self.config.timeouts.pairing_code_display,
            )
            same = f"CODE {code}" in member.terminal.engine.screen.lines
            member.terminal.press_key("green" if same else "red")
            return same

        return compare

    def _types_passkey(self, member: FleetMember) -> Callable[[], Awaitable[str | None]]:
        """Member's technician types the passkey its terminal shows (``display_only``)."""

        def shown() -> str | None:
            lines = member.terminal.engine.screen.lines
            return next((line for line in lines if line.startswith("CODE ")), None)

        async def type_passkey() -> str | None:
            await _wait_until(
                member,
                lambda: shown() is not None,
                "its terminal to show the passkey",
                self.config.timeouts.pairing_code_display,
            )
            line = shown()
            return None if line is None else line.removeprefix("CODE ")

        return type_passkey

    async def pay(self, member: FleetMember) -> PaymentOutcome:
        """Member's technician associates its terminal (by name, among all in range) and pays
        its invoice; the customer taps when the terminal asks for the card."""
        try:
            await member.app.associate_terminal(member.profile.name)
            flow = asyncio.ensure_future(member.app.pay_invoice(member.invoice))
            flow.add_done_callback(lambda _t: member.changed.set())
            try:
                await _wait_until(
                    member,
                    lambda: flow.done() or member.terminal.engine.state.value == "waiting_for_card",
                    "its terminal to ask for the card",
                    self.config.app_timeouts.terminal_reply + 30.0,
                )
                if not flow.done():
                    member.terminal.present_card(member.card, EntryMode.CONTACTLESS)
                member.outcome = await flow
            finally:
                if not flow.done():
                    flow.cancel()
        except BaseException as exc:
            member.error = exc
            raise
        return member.outcome

    async def pay_all_async(self, *, strict: bool = True) -> list[PaymentOutcome]:
        """Every member pays at once; the outcomes of those that ended, in member order.

        A member whose flow raised keeps the exception in :attr:`FleetMember.error`. With
        ``strict`` (the default) the first such error is raised once all have ended."""
        await asyncio.gather(*(self.pay(member) for member in self.members), return_exceptions=True)
        if strict:
            for member in self.failed:
                raise RuntimeError(
                    f"member {member.index} ({member.profile.name}) failed: {member.error!r}; "
                    f"app says {member.app.screen[-3:]!r}"
                ) from member.error
        return [m.outcome for m in self.members if m.outcome is not None]

    def pay_all(self, *, strict: bool = True) -> list[PaymentOutcome]:
        return self.run(self.pay_all_async(strict=strict))

    @property
    def failed(self) -> list[FleetMember]:
        """Members whose payment flow raised."""
        return [m for m in self.members if m.error is not None]


def _waker(event: asyncio.Event) -> Callable[[str, str], None]:
    """An app stage listener that sets ``event``."""

    def wake(_stage: str, _text: str) -> None:
        event.set()

    return wake


async def _wait_until(
    member: FleetMember, predicate: Callable[[], bool], what: str, timeout: float
) -> None:
    """Wait (loop time) until ``predicate()`` holds; woken by the member's change event."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        member.changed.clear()
        remaining = deadline - loop.time()
        if remaining <= 0:
            engine = member.terminal.engine
            raise FleetTimeout(
                f"member {member.index} waited {timeout:g} s of loop time for {what}; "
                f"terminal state {engine.state.value!r}, screen {list(engine.screen.lines)!r}, "
                f"app says {member.app.screen[-3:]!r}"
            )
        try:
            await asyncio.wait_for(member.changed.wait(), remaining)
        except TimeoutError:
            continue
