"""The world: one link, one clock, a terminal, a phone and a backend on one event loop.

In the default *fast* mode the loop runs on virtual time (looptime): every timer fires in
order but no real time is waited, so advertising intervals and a 60-second card timeout cost
microseconds of wall time. Calendar time (receipts, invoice dates, card expiry) is the
scenario date plus the loop time elapsed since the world was built.

The world is usable from pytest (the plugin's ``world`` fixture), from the CLI
(``tpe-sim demo``) and from a plain script::

    with World(WorldConfig()) as world:
        world.associate()
        world.start_payment("F-2026-0001")
        world.tap("visa")
        outcome = world.finish_payment()

pytest-bdd steps are synchronous: the methods above run the loop until the thing asked for
has happened (or a loop-time timeout passes); background tasks (GATT server, HTTP server)
run meanwhile.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, TypeVar

import looptime
from bumble.controller import Controller
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.snoop import BtSnooper
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

from harness.app import (
    AppTimeouts,
    BackendClient,
    CaptureOutcome,
    InvoicingApp,
    PaymentOutcome,
    PhoneError,
    VirtualPhone,
)
from harness.backend import BackendServer, BackendStore
from harness.backend.seed import load_seed_settings, processor_from, seed_store
from harness.backend.store import Merchant
from harness.fixtures import fixtures_dir
from harness.keys import KeyFixture, load_keys
from harness.rootcanal import RootCanal, start_rootcanal
from harness.scenarios.model import MOMENTS, MomentTracker
from simulator.ble import BleTerminal, TerminalDataFolder
from simulator.ble.terminal import HookPoint
from simulator.cards import Catalogue, EntryMode, VirtualCard
from simulator.protocol.messages import Command, Event
from simulator.terminal import (
    MerchantSetup,
    ProfileError,
    TerminalEngine,
    TerminalProfile,
    Timeouts,
    load_profiles,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
PHONE_ADDRESS = "C0:99:88:77:66:01"
#: Loop seconds a flow may take before the terminal asks for the card: it may have to
#: associate the terminal first, first setup and firmware update included.
FLOW_START_TIMEOUT = 900.0
PairingAnswer = Literal["confirm", "refuse_on_phone", "refuse_on_terminal"]
#: ``local``: Bumble's in-process LocalLink (fast, virtual time); ``rootcanal``: one RootCanal
#: virtual controller started for the world (wall clock only), each device on its own
#: ``tcp-client`` transport to it.
LinkKind = Literal["local", "rootcanal"]
LINKS: tuple[LinkKind, ...] = ("local", "rootcanal")


def local_device(link: LocalLink, name: str, address: str) -> Device:
    """A Bumble device with its own virtual controller on ``link`` (call inside the loop)."""
    controller = Controller(name, link=link, public_address=address)
    return Device(
        name=name, address=Address(address), host=Host(controller, AsyncPipeSink(controller))
    )


def inject_card_data_key(
    keys: KeyFixture, data: TerminalDataFolder | None, engine: TerminalEngine
) -> None:
    """The key-injection host's part of first setup (over the terminal's own secure channel,
    never through the phone): the terminal's AES DUKPT initial key from ``keys.yaml``, and the
    transaction counter its previous power-on reached, from its data folder (a counter is
    never used twice, even across processes); 0 for a terminal without a data folder (a
    fleet's, kept in memory). Shared by worlds, fleets and the standalone terminal."""
    initial_key, initial_key_id = keys.terminal_keys(engine.profile.serial)
    counter = 0 if data is None else data.load_counter()
    engine.load_initial_key(initial_key, initial_key_id, counter)


def factory_setup(merchant: Merchant, profile: TerminalProfile) -> tuple[MerchantSetup, str]:
    """The configuration a terminal leaves the factory with for ``merchant``: its merchant
    setup, and the newest firmware its profile knows (the update if there is one)."""
    setup = MerchantSetup(merchant.name, merchant.city, merchant.contract_number)
    return setup, profile.firmware_update or profile.firmware


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending on ``loop``, let it finish, and close the loop."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


class WorldTimeout(AssertionError):
    """What the world was waiting for did not happen; the message says what it saw instead."""


@dataclass
class WorldConfig:
    fixtures: Path = field(default_factory=fixtures_dir)
    terminal: str = "standard"
    seed: int | None = None  # None: the seed in fixtures/merchant.yaml
    scenario_date: dt.datetime | None = None  # None: the date in fixtures/merchant.yaml
    fast: bool = True  # virtual time (looptime); False: the wall clock
    phone_mitm: bool = True  # False: the phone pairs Just Works
    pairing_answer: PairingAnswer = "confirm"
    timeouts: Timeouts = field(default_factory=Timeouts)
    app_timeouts: AppTimeouts = field(default_factory=AppTimeouts)
    #: where the terminal and the phone keep their bonds, configuration and state across
    #: restarts; None: a temporary folder removed when the world closes
    data_dir: Path | None = None
    #: the terminal was configured at the factory (skips first setup); False: a terminal
    #: fresh out of its box, set up at its first association
    preconfigured: bool = False
    link: LinkKind = "local"
    #: a folder where every device of the world writes its HCI traffic (btsnoop, one file per
    #: device, named after it); None: no capture
    snoop_dir: Path | None = None


class World:
    """One simulated shop: see the module docstring."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        settings = load_seed_settings(self.config.fixtures)
        self.scenario_date = self.config.scenario_date or settings.scenario_date
        self.seed = settings.faker_seed if self.config.seed is None else self.config.seed
        self.catalogue = Catalogue.load(self.config.fixtures / "cards.yaml")
        self.keys = load_keys(self.config.fixtures)  # test keys: DUKPT, issuers' master keys
        #: the terminal profiles of ``terminals.yaml``, parsed once
        self.profiles = profiles = load_profiles(self.config.fixtures / "terminals.yaml")
        if self.config.terminal not in profiles:
            raise ProfileError(
                f"no terminal profile {self.config.terminal!r} in terminals.yaml "
                f"(known: {', '.join(profiles) or 'none'})"
            )
        self.profile = profiles[self.config.terminal]
        if self.config.link not in LINKS:
            raise ValueError(f"unknown link {self.config.link!r} (known: {', '.join(LINKS)})")
        if self.config.link == "rootcanal" and self.config.fast:
            raise ValueError("RootCanal runs on the wall clock: use fast=False with it")
        self.rootcanal: RootCanal | None = None
        self._transports: dict[int, Transport] = {}  # id(device) -> its RootCanal transport
        self._snoopers: dict[str, tuple[IO[bytes], BtSnooper]] = {}  # device name -> capture
        self.loop: asyncio.AbstractEventLoop = (
            looptime.new_event_loop(start=0.0) if self.config.fast else asyncio.new_event_loop()
        )
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: the app flow in progress (a payment or a card capture) started by the facade
        self._payment: asyncio.Task[Any] | None = None
        self._cards: dict[str, VirtualCard] = {}
        self._extra_apps: list[InvoicingApp] = []  # every app started, to close them all
        #: terminals added with :meth:`add_terminal` (the main one is :attr:`terminal`)
        self.other_terminals: list[BleTerminal] = []
        #: faults waiting for a named moment (:meth:`at_moment`), and those that struck
        self._moment_actions: list[tuple[str, int, Callable[[], Awaitable[object]]]] = []
        self._moment_tracker = MomentTracker()
        self._moment_counts: dict[str, int] = {}
        self.moments_struck: list[tuple[str, int, float]] = []
        self._loop_start = 0.0
        self._wall_start = 0.0
        self._open = False
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.config.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="tpe-sim-")
            self.data_dir = Path(self._tmp.name)
        else:
            self.data_dir = self.config.data_dir

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> World:
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
        if self.config.link == "rootcanal":
            self.rootcanal = start_rootcanal()
        try:
            self.run(self._build())
        except BaseException:
            self._stop_rootcanal()
            raise
        self._open = True

    async def _build(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_start = loop.time()
        self.store: BackendStore = seed_store(
            self.config.fixtures, seed=self.seed, scenario_date=self.scenario_date
        )
        self.backend = BackendServer(
            self.store, processor_from(self.keys, self.catalogue.values()), now=self.calendar
        )
        await self.backend.start()

        self.link = LocalLink()  # type: ignore[no-untyped-call]
        self.terminal_data = TerminalDataFolder(
            self.data_dir / f"terminal-{self.profile.serial}", self.profile.serial
        )
        if self.config.preconfigured:
            self.terminal_data.save_configuration(*factory_setup(self.store.merchant, self.profile))
        await self._start_terminal()
        await self._start_phone()

    async def _start_terminal(self) -> None:
        """Power the terminal on from its data folder (bonds, configuration)."""
        merchant, firmware = self.terminal_data.load_configuration()
        engine = TerminalEngine(self.profile, merchant, self.config.timeouts, firmware=firmware)
        if engine.configured:  # its key was injected at its first setup, kept since
            self._inject_card_data_key(engine)
        self.terminal = BleTerminal(
            await self._device(self.profile.name, self.profile.address),
            engine,
            self.calendar,
            self.terminal_data,
            on_setup_complete=self._inject_card_data_key,
        )
        self.terminal.listeners.append(self._changed.set)
        self.terminal.message_hooks.append(self._on_moment)  # faults at named moments
        await self.terminal.start()

    async def _start_phone(self) -> None:
        """Start the phone and the app from the phone's data folder (bonds, association)."""
        self.phone, self.app = await self._new_phone(
            "Téléphone du technicien", PHONE_ADDRESS, self.data_dir / "phone"
        )

    async def _new_phone(
        self, name: str, address: str, folder: Path
    ) -> tuple[VirtualPhone, InvoicingApp]:
        phone = VirtualPhone(
            await self._device(name, address),
            mitm=self.config.phone_mitm,
            keystore_file=folder / "bonds.json",
        )
        phone.confirm_code = self._user_compares_codes
        phone.type_passkey = self._user_types_passkey
        await phone.start()
        app = InvoicingApp(
            phone,
            BackendClient(self.backend.url),
            self.config.app_timeouts,
            state_file=folder / "app.json",
        )
        app.listeners.append(lambda _stage, _text: self._changed.set())
        self._extra_apps.append(app)
        return phone, app

    @property
    def apps(self) -> list[InvoicingApp]:
        """Every app this world started (the technician's, colleagues', restarted ones)."""
        return list(self._extra_apps)

    def add_phone(self, number: int) -> InvoicingApp:
        """Another phone of the same merchant (a colleague's), with its own app and data."""
        address = f"C0:99:88:77:66:{number + 1:02X}"
        _, app = self.run(
            self._new_phone(f"Téléphone {number}", address, self.data_dir / f"phone-{number}")
        )
        return app

    async def _restart_terminal(self) -> None:
        await self.terminal.stop()
        await self._remove_controller(self.terminal.device)
        await self._start_terminal()

    async def _restart_phone(self) -> None:
        if self.app.link is not None:
            await self.app.link.disconnect()
            self.app.link = None
        await self.app.backend.close()
        await self.phone.stop()
        await self._remove_controller(self.phone.device)
        await self._start_phone()

    async def _remove_controller(self, device: Device) -> None:
        transport = self._transports.pop(id(device), None)
        if transport is not None:  # RootCanal: its controller goes with the connection
            await transport.close()
            return
        # the host talks to its controller through an AsyncPipeSink: the controller is behind
        controller = getattr(device.host.controller, "sink", None) if device.host else None
        if isinstance(controller, Controller) and controller in self.link.controllers:
            self.link.remove_controller(controller)

    async def _device(self, name: str, address: str) -> Device:
        if self.rootcanal is not None:
            transport = await open_transport(self.rootcanal.transport)
            device = Device.with_hci(name, Address(address), transport.source, transport.sink)
            self._transports[id(device)] = transport
        else:
            device = local_device(self.link, name, address)
        if self.config.snoop_dir is not None and device.host is not None:
            device.host.snooper = self._snooper(name)
        return device

    def _snooper(self, name: str) -> BtSnooper:
        """The capture of the device called ``name`` (one file, kept across its restarts)."""
        if name not in self._snoopers:
            assert self.config.snoop_dir is not None
            self.config.snoop_dir.mkdir(parents=True, exist_ok=True)
            slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "device"
            output = (self.config.snoop_dir / f"{slug}.btsnoop").open("wb")
            self._snoopers[name] = (output, BtSnooper(output))
        return self._snoopers[name][1]

    def _stop_rootcanal(self) -> None:
        if self.rootcanal is not None:
            self.rootcanal.stop()
            self.rootcanal = None

    def close(self) -> None:
        if self._open:
            self._open = False
            self.run(self._teardown())
        close_loop(self.loop)
        self._stop_rootcanal()
        for output, _snooper in self._snoopers.values():
            output.close()
        self._snoopers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _teardown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for app in self._extra_apps:
            if app.link is not None:
                await app.link.disconnect()
            await app.backend.close()
            if app.phone.device.powered_on:
                await app.phone.stop()
        await self.terminal.stop()
        for terminal in self.other_terminals:
            await terminal.stop()
        await self.backend.stop()
        for transport in list(self._transports.values()):
            await transport.close()
        self._transports.clear()

    # ------------------------------------------------------------------ time
    def calendar(self) -> dt.datetime:
        """The scenario's wall-clock date and time: start date plus elapsed loop time."""
        return self.scenario_date + dt.timedelta(seconds=self.loop.time() - self._loop_start)

    @property
    def loop_elapsed(self) -> float:
        """Seconds of loop time since the world was built."""
        return self.loop.time() - self._loop_start

    @property
    def wall_elapsed(self) -> float:
        return time.perf_counter() - self._wall_start

    # ------------------------------------------------------------------ running
    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the world's loop until it completes (sync facade for steps)."""
        if timeout is not None:
            coro = asyncio.wait_for(coro, timeout)
        return self.loop.run_until_complete(coro)

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _t: self._changed.set())
        return task

    async def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float) -> None:
        """Wait (in loop time) until ``predicate()`` holds; :class:`WorldTimeout` otherwise."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise WorldTimeout(
                    f"waited {timeout:g} s of loop time for {what}; {self.describe()}"
                )
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue

    def describe(self) -> str:
        """A snapshot for error messages: terminal state and screen, app's last words."""
        engine = self.terminal.engine
        return (
            f"terminal state {engine.state.value!r}, screen {list(engine.screen.lines)!r}, "
            f"app says {self.app.screen[-3:]!r}"
        )

    # ------------------------------------------------------------------ the people
    async def _user_compares_codes(self, code: str) -> bool:
        """The technician reads the code on the phone and on the terminal, and answers both."""
        terminals = [self.terminal, *self.other_terminals]
        await self.wait_until(
            lambda: any(t.awaiting_code_confirmation for t in terminals),
            "the terminal to show its code",
            30.0,
        )
        terminal = next(t for t in terminals if t.awaiting_code_confirmation)
        same = f"CODE {code}" in terminal.engine.screen.lines
        answer = self.config.pairing_answer
        terminal.press_key("green" if same and answer != "refuse_on_terminal" else "red")
        return same and answer != "refuse_on_phone"

    def add_terminal(self, profile: str) -> BleTerminal:
        """A second terminal in the shop (a colleague's), on the same air, already set up for
        this merchant. The facade's cardholder acts on :attr:`terminal`; on this one, call its
        own ``present_card`` / ``enter_pin``. A phone picks it by name at association."""
        return self.run(self._add_terminal(profile))

    async def _add_terminal(self, key: str) -> BleTerminal:
        profiles = self.profiles
        if key not in profiles:
            raise ProfileError(f"no terminal profile {key!r} in terminals.yaml")
        profile = profiles[key]
        in_the_shop = [self.terminal, *self.other_terminals]
        if any(t.engine.profile.serial == profile.serial for t in in_the_shop):
            raise ProfileError(f"terminal {profile.serial} is already in the shop")
        data = TerminalDataFolder(self.data_dir / f"terminal-{profile.serial}", profile.serial)
        setup, firmware = factory_setup(self.store.merchant, profile)
        data.save_configuration(setup, firmware)
        engine = TerminalEngine(profile, setup, self.config.timeouts, firmware=firmware)
        inject_card_data_key(self.keys, data, engine)
        terminal = BleTerminal(
            await self._device(profile.name, profile.address), engine, self.calendar, data
        )
        terminal.listeners.append(self._changed.set)
        await terminal.start()
        self.other_terminals.append(terminal)
        return terminal

    def unpaid_invoice(self, at_most_cents: int | None = None) -> str | None:
        """The number of the first unpaid invoice (due at most ``at_most_cents``), if any."""
        return next(
            (
                inv.number
                for inv in self.store.invoices.values()
                if inv.status == "unpaid"
                and (at_most_cents is None or inv.balance_due_cents <= at_most_cents)
            ),
            None,
        )

    async def _user_types_passkey(self) -> str | None:
        """The technician reads the passkey on the terminal's screen and types it."""
        terminals = [self.terminal, *self.other_terminals]

        def shown_codes() -> list[str]:
            lines = [line for t in terminals for line in t.engine.screen.lines]
            return [line for line in lines if line.startswith("CODE ")]

        await self.wait_until(lambda: bool(shown_codes()), "the terminal to show its passkey", 30.0)
        shown = shown_codes()[0]
        code = shown.removeprefix("CODE ")
        if self.config.pairing_answer == "refuse_on_phone":
            return None
        if self.config.pairing_answer == "refuse_on_terminal":  # a typo: the wrong passkey
            return f"{(int(code) + 1) % 1_000_000:06d}"
        return code

    def use_terminal(self, profile: str) -> None:
        """Put another terminal (a profile of terminals.yaml) in the shop instead."""
        profiles = self.profiles
        if profile not in profiles:
            raise ProfileError(
                f"no terminal profile {profile!r} in terminals.yaml (known: {', '.join(profiles)})"
            )
        self.profile = profiles[profile]
        self.terminal_data = TerminalDataFolder(
            self.data_dir / f"terminal-{self.profile.serial}", self.profile.serial
        )
        self.run(self._restart_terminal())

    def switch_off_terminal(self) -> None:
        """The terminal is switched off: nothing answers on the air any more."""
        self.run(self.terminal.stop())
        self.run(self._remove_controller(self.terminal.device))

    def drop_link(self) -> None:
        """The Bluetooth link between the phone and the terminal breaks (both stay on)."""
        self.run(self.terminal.drop_links())

    def restart_terminal(self) -> None:
        """Switch the terminal off and on (same data folder: bonds and setup are kept)."""
        self.run(self._restart_terminal())

    def restart_app(self) -> None:
        """Kill and restart the phone's app (same data folder: bond and association kept)."""
        self.run(self._restart_phone())

    def factory_reset_terminal(self) -> None:
        """The merchant's factory reset: no bond, no configuration."""
        self.run(self.terminal.factory_reset())

    def forget_terminal(self) -> None:
        """ "Oublier ce terminal" in the app."""
        self.run(self.app.forget_terminal())

    def card(self, key: str) -> VirtualCard:
        """The cardholder's card ``key`` from the catalogue (one physical card per key),
        personalised with its issuer's keys (``keys.yaml``) so that it makes real ARQCs."""
        if key not in self._cards:
            self._cards[key] = self.keys.personalise(self.catalogue[key])
        return self._cards[key]

    def _inject_card_data_key(self, engine: TerminalEngine) -> None:
        """The key-injection host's part of first setup (over the terminal's own secure
        channel, never through the phone): the terminal's AES DUKPT initial key from
        ``keys.yaml``, and the transaction counter its
        previous power-on reached, from its data folder (a counter is never used twice, even
        across processes)."""
        inject_card_data_key(self.keys, self.terminal_data, engine)

    # ------------------------------------------------------------------ sync facade
    def associate(self) -> None:
        """Menu "Terminaux de Paiement (TPE)": scan, pair, register the terminal."""
        self.run(self.app.associate_terminal())

    def start_payment(self, invoice_number: str) -> None:
        """Trigger the card payment from the invoice; returns once the terminal asks for it."""
        self._start_flow(self.app.pay_invoice(invoice_number))

    def start_capture(self, customer_id: str) -> None:
        """ "Prise d'empreinte via lecteur de cartes bancaires" from the customer record;
        returns once the terminal asks for the card."""
        self._start_flow(self.app.capture_card(customer_id))

    def _start_flow(self, flow: Coroutine[Any, Any, Any]) -> None:
        if self._payment is not None and not self._payment.done():
            flow.close()
            raise PhoneError(
                "payment_in_progress", "Un paiement est déjà en cours sur le terminal."
            )
        self._payment = task = self.spawn(flow)
        self.run(
            self.wait_until(
                lambda: task.done() or self.terminal.engine.state.value == "waiting_for_card",
                "the terminal to ask for the card",
                FLOW_START_TIMEOUT,
            )
        )
        if task.done():
            task.result()  # raises what went wrong

    def cancel_from_app(self) -> None:
        """The technician presses "Annuler" in the app."""
        self.run(self.app.cancel())
        self._settle()

    def press_red_key(self) -> None:
        """Someone presses the terminal's red key."""
        self.terminal.press_key("red")
        self._settle()

    def tap(self, card_key: str, brand: str | None = None) -> None:
        """The customer taps the card on the terminal (choosing ``brand`` if co-badged)."""
        self.terminal.present_card(self.card(card_key), EntryMode.CONTACTLESS, brand)
        self._settle()

    def insert(self, card_key: str, brand: str | None = None) -> None:
        """The customer inserts the card in the terminal's chip reader."""
        self.terminal.present_card(self.card(card_key), EntryMode.CHIP, brand)
        self._settle()

    def enter_pin(self, pin: str) -> None:
        """The customer types the PIN and presses the green key."""
        self.terminal.enter_pin(pin)
        self._settle()

    def remove_card(self) -> None:
        """The customer pulls the card out of the reader."""
        self.terminal.remove_card()
        self._settle()

    def _settle(self) -> None:
        """Let what the cardholder's action set off run until the terminal waits for someone:
        the cardholder (card, PIN), or nobody (the payment is over)."""
        payment = self._payment
        waiting_for_cardholder = ("waiting_for_card", "pin_entry")
        self.run(
            self.wait_until(
                lambda: (
                    (payment is None or payment.done())
                    or (
                        self.terminal.engine.state.value in waiting_for_cardholder
                        and not self.app_busy
                    )
                ),
                "the terminal to wait for the cardholder or the payment to end",
                self.config.app_timeouts.payment,
            )
        )

    @property
    def flow_in_progress(self) -> bool:
        """A payment or capture started by the facade has not ended yet."""
        return self._payment is not None and not self._payment.done()

    @property
    def app_busy(self) -> bool:
        """The app has events from the terminal it has not handled yet."""
        link = self.app.link
        return link is not None and not link.events.empty()

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of loop time pass (the customer hesitates, the technician waits)."""
        self.run(asyncio.sleep(seconds))

    def finish_payment(self) -> PaymentOutcome:
        """Wait for the payment flow started by :meth:`start_payment` to end; its outcome."""
        outcome = self._finish_flow()
        if not isinstance(outcome, PaymentOutcome):
            raise RuntimeError("the flow in progress is not a payment")
        return outcome

    def finish_capture(self) -> CaptureOutcome:
        """Wait for the capture started by :meth:`start_capture` to end; its outcome."""
        outcome = self._finish_flow()
        if not isinstance(outcome, CaptureOutcome):
            raise RuntimeError("the flow in progress is not a card capture")
        return outcome

    def _finish_flow(self) -> object:
        if self._payment is None:
            raise RuntimeError("no payment or capture was started")
        task = self._payment
        self.run(self.wait_until(task.done, "the flow to end", self.config.app_timeouts.payment))
        return task.result()

    # ------------------------------------------------------------------ faults
    # The fault facade of scenario scripts (harness/scenarios, docs/scenarios.md).
    def out_of_range(self, seconds: float) -> None:
        """The technician's phone goes out of range for ``seconds`` of loop time: the link
        drops and the phone hears nothing (no advertising, no connection) until it is back.
        Returns at once: the cardholder may go on acting on the terminal meanwhile."""
        self.run(self.out_of_range_now(seconds))

    async def out_of_range_now(self, seconds: float) -> None:
        """:meth:`out_of_range` from inside the loop (a fault at a named moment)."""
        if not seconds >= 0:  # NaN too
            raise ValueError(f"out of range for {seconds!r} s: must be 0 or more")
        link = self.link
        if not isinstance(link, LocalLink):
            raise NotImplementedError("out of range needs the local link (LocalLink)")
        await self.terminal.drop_links()
        host = self.phone.device.host
        # the host talks to its controller through an AsyncPipeSink: the controller is behind
        controller = getattr(host.controller, "sink", None) if host else None
        if isinstance(controller, Controller) and controller in link.controllers:
            # the terminate PDU is already on its way: the phone still learns of the loss
            link.remove_controller(controller)
            log.info("phone out of range for %g s", seconds)
            self.loop.call_later(seconds, self._back_in_range, link, controller)

    def _back_in_range(self, link: LocalLink, controller: Controller) -> None:
        if controller not in link.controllers:
            link.add_controller(controller)
            log.info("phone back in range")
        self._changed.set()

    def reboot_soon(self) -> None:
        """Restart the terminal (as :meth:`restart_terminal`) in a task of its own: the way
        to reboot it from a moment's action, which runs inside the terminal's own hooks."""
        self.spawn(self._restart_terminal())

    def set_battery(self, level: int) -> None:
        """The terminal's battery is at ``level`` percent (0-100) from now on."""
        self.terminal.set_battery(level)
        self._changed.set()

    def phone_offline(self, on: bool = True) -> None:
        """The technician's phone loses (``on``) or gets back its network: the app's
        backend calls fail as unreachable; Bluetooth is unaffected."""
        self.app.backend.offline = on
        self._changed.set()

    def backend_fault(
        self,
        kind: str,
        route: str | None = None,
        *,
        status: int | None = 503,
        seconds: float = 0.0,
        times: int | None = 1,
    ) -> None:
        """Arm the backend's fault plan (``self.backend.faults``, see
        ``harness/backend/faults.py``): ``fail`` or ``fail_after`` ``route`` with ``status``
        (None: cut the connection), ``delay`` it ``seconds`` of loop time, each ``times``
        times (None: until cleared); or ``refuse_connections``, ``accept_connections``,
        ``clear``. An unknown route is a ``ValueError`` listing the known ones."""
        faults = self.backend.faults
        if kind == "fail":
            faults.fail(route or "*", status, times)
        elif kind == "fail_after":
            faults.fail_after(route or "*", status, times)
        elif kind == "delay":
            faults.delay(route or "*", seconds, times)
        elif kind == "refuse_connections":
            faults.refuse_connections()
        elif kind == "accept_connections":
            faults.accept_connections()
        elif kind == "clear":
            faults.clear()
        else:
            raise ValueError(f"unknown backend fault {kind!r}")
        self._changed.set()

    def at_moment(
        self, moment: str, action: Callable[[], Awaitable[object]], occurrence: int = 1
    ) -> None:
        """Run ``action`` (a coroutine function) when the protocol reaches ``moment`` (a name
        of :data:`harness.scenarios.model.MOMENTS`) for the ``occurrence``-th time. It runs
        inside the terminal's message hook: a link dropped at a ``sending`` moment keeps the
        event off the air. While it runs the terminal handles nothing else, so an action that
        restarts the terminal or waits for the app (``app.cancel()``: its command must reach
        the terminal) must spawn a task (:meth:`spawn`), not await it.
        :attr:`moments_struck` lists the moments whose action ran."""
        if moment not in MOMENTS or MOMENTS[moment].point is None:
            protocol = [name for name, m in MOMENTS.items() if m.point is not None]
            raise ValueError(f"unknown moment {moment!r} (moments: {', '.join(protocol)})")
        self._moment_actions.append((moment, occurrence, action))

    async def _on_moment(self, point: HookPoint, message: Command | Event) -> None:
        """The terminal's message hook: run the actions waiting for the moment reached."""
        pending = self._moment_actions
        for moment in self._moment_tracker.moments(point, message):
            count = self._moment_counts[moment] = self._moment_counts.get(moment, 0) + 1
            for entry in list(pending):
                name, occurrence, action = entry
                if name == moment and occurrence == count:
                    pending.remove(entry)
                    self.moments_struck.append((moment, count, self.loop_elapsed))
                    log.info("moment %s (#%d): fault strikes", moment, count)
                    await action()
        if pending:
            self._changed.set()
