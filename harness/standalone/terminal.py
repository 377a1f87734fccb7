"""``tpe-sim terminal``: one virtual terminal on the wall clock, until Ctrl-C or SIGTERM.

The terminal is the same :class:`~simulator.ble.BleTerminal` a world builds, on any Bumble
transport instead of an in-process link:

- ``--transport tcp-client:127.0.0.1:6402``: a RootCanal (or any HCI server) already running;
- ``--transport android-netsim``: the Android emulator's Bluetooth (netsim), so that an app in
  the emulator sees the terminal as a real BLE device (needs ``pip install 'bumble[android]'``);
- ``--transport usb:0``: a USB Bluetooth dongle, on the air for a real phone;
- ``--link rootcanal``: starts a RootCanal of its own on free ports, attaches to it and prints
  its HCI port so that other processes (``tpe-sim app``, ``bumble-gatt-dump``) can attach.

Its data folder (``--data``) keeps bonds, configuration, the DUKPT counter, the journal and
the cardholders' cards' counters (``wallet.json``: each card's ATC and PIN tries, so that a
restarted terminal's cards do not replay an ATC the issuer has already seen) across runs.
The control API and web panel (:class:`harness.standalone.control.ControlServer`) play the
cardholder and the merchant: present a card, type the PIN, press the keys.
``--snoop FILE`` writes the HCI traffic as btsnoop for Wireshark.

What it prints is for a human, in French; lines a script may wait for start with a fixed
word (``Radio``, ``Contrôle``, ``Prêt``) — see :data:`READY_LINE`. What stops it from
starting (a bad option, data folder, journal, counter file, port) is one French line with the
technical detail after a dash, and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from bumble.device import Device
from bumble.hci import Address
from bumble.snoop import BtSnooper
from bumble.transport import open_transport
from bumble.transport.common import Transport

from harness.backend.seed import FixtureError, empty_store
from harness.fixtures import fixtures_dir
from harness.keys import KeyFixture, KeyFixtureError, load_keys
from harness.rig import factory_setup, inject_card_data_key
from harness.rootcanal import RootCanal, RootCanalUnavailable, start_rootcanal
from harness.scenarios.model import Known
from harness.standalone.process import (
    READY_LINE,
    LockHeld,
    Printer,
    hold_lock,
    print_line,
    serve_until_signal,
)
from harness.standalone.wallet import WALLET_FILE, CardWallet, WalletError
from simulator.ble import BleTerminal, TerminalDataFolder
from simulator.ble.storage import JournalError
from simulator.cards import Catalogue, CatalogueError, VirtualCard
from simulator.terminal import (
    ProfileError,
    TerminalEngine,
    TerminalProfile,
    Timeouts,
    load_profiles,
)

if TYPE_CHECKING:
    from harness.standalone.control import ControlServer

log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = Path("tpe-sim-data")
#: messages kept in memory for inspection: a terminal runs for days (its control panel keeps
#: its own bounded log)
MESSAGE_LOG_SIZE = 1000
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOCK_FILE = "terminal.lock"


class StartError(Exception):
    """The terminal cannot start; the message (French, then the technical detail) says why
    and what to do."""


@dataclass
class TerminalOptions:
    """What ``tpe-sim terminal`` was asked for."""

    transport: str | None = None  # a Bumble transport name; None with link="rootcanal"
    link: str | None = None  # "rootcanal": start one and attach to it
    profile: str = "standard"
    data: Path | None = None  # None: tpe-sim-data/terminal-<serial> in the current folder
    fixtures: Path = field(default_factory=fixtures_dir)
    control_host: str = "127.0.0.1"
    control_port: int = 0
    snoop: Path | None = None
    #: configured at the factory for the fixtures' merchant: no first setup at association
    preconfigured: bool = False


class StandaloneTerminal:
    """One virtual terminal on a Bumble transport, with its control API."""

    def __init__(self, options: TerminalOptions) -> None:
        if (options.transport is None) == (options.link is None):
            raise StartError("indiquez --transport NOM ou --link rootcanal (l'un des deux)")
        if options.link not in (None, "rootcanal"):
            raise StartError(f"--link {options.link} inconnu : le seul est rootcanal")
        self.options = options
        try:
            profiles = load_profiles(options.fixtures / "terminals.yaml")
            self.catalogue = Catalogue.load(options.fixtures / "cards.yaml")
            self.keys: KeyFixture = load_keys(options.fixtures)
            self.merchant = empty_store(options.fixtures).merchant
        except (ProfileError, CatalogueError, KeyFixtureError, FixtureError, OSError) as exc:
            raise StartError(
                f"données de départ illisibles dans {options.fixtures} — {exc}"
            ) from exc
        if options.profile not in profiles:
            raise StartError(
                f"profil de terminal « {options.profile} » absent de terminals.yaml "
                f"(profils : {', '.join(profiles)})"
            )
        self.profile: TerminalProfile = profiles[options.profile]
        #: what scenario scripts posted to the panel may name: these fixtures' cards and profiles
        self.known = Known.of(self.catalogue, profiles)
        self.data_dir = options.data or DEFAULT_DATA_ROOT / f"terminal-{self.profile.serial}"
        self.rootcanal: RootCanal | None = None
        self.transport: Transport | None = None
        self.terminal: BleTerminal | None = None
        self.control: ControlServer | None = None
        self._snoop_file: IO[bytes] | None = None
        self._lock_fd: int | None = None
        try:
            self.wallet = CardWallet(
                self.data_dir / WALLET_FILE, self.keys.personalise, self.catalogue
            )
        except WalletError as exc:
            raise StartError(
                f"compteurs des cartes illisibles — {exc}; déplacez le fichier pour repartir "
                "des compteurs du catalogue (l'émetteur refusera alors ces cartes comme "
                "rejouées)"
            ) from exc

    @property
    def transport_name(self) -> str:
        if self.rootcanal is not None:
            return self.rootcanal.transport
        assert self.options.transport is not None
        return self.options.transport

    def card(self, key: str) -> VirtualCard:
        """The cardholder's card ``key`` (one physical card per key, its counters moving on
        and kept in the data folder's ``wallet.json`` across restarts)."""
        return self.wallet.card(key)

    async def start(self) -> None:
        """Attach to the radio, power the terminal on from its data folder, start the
        control API. :class:`StartError` says what went wrong (and nothing is left running)."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    def _open_data(self) -> TerminalDataFolder:
        """The data folder, checked before anything starts: a folder (created if missing)
        with a readable journal and DUKPT counter."""
        where = self.data_dir
        try:
            data = TerminalDataFolder(where, self.profile.serial)
            self._lock(where)
            data.load_journal()
            data.load_counter()
        except JournalError as exc:
            raise StartError(
                f"journal des transactions inutilisable — {exc}. Déplacez le fichier pour "
                "repartir d'un journal vide (son historique est alors perdu)"
            ) from exc
        except ValueError as exc:  # dukpt.json
            raise StartError(f"compteur DUKPT illisible — {exc}") from exc
        except OSError as exc:  # a file where the folder should be, no permission, …
            raise StartError(f"dossier de données {where} inutilisable — {exc}") from exc
        return data

    def _lock(self, where: Path) -> None:
        """One terminal per data folder: two would write the same journal, DUKPT counter and
        cards' counters (and replay them). An exclusive ``flock`` on ``terminal.lock``, held
        while the terminal runs; the kernel drops it when the process ends, even killed."""
        if self._lock_fd is not None:
            return
        path = where / LOCK_FILE
        try:
            self._lock_fd = hold_lock(path)
        except LockHeld:
            raise StartError(
                f"le dossier de données {where} est déjà utilisé par un autre tpe-sim terminal "
                f"(verrou {path}) : arrêtez-le, ou choisissez un autre --data"
            ) from None

    def _check_control_port(self) -> None:
        """Refuse a control port already taken before the radio starts (the server's own
        bind below still reports a port taken in between)."""
        options = self.options
        if options.control_port == 0:
            return
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
            try:
                probe.bind((options.control_host, options.control_port))
            except OSError as exc:
                raise StartError(self._port_taken(exc)) from exc

    def _port_taken(self, exc: OSError) -> str:
        options = self.options
        return (
            f"port de contrôle {options.control_host}:{options.control_port} indisponible "
            f"(déjà pris ?) : choisissez-en un autre avec --control-port, ou 0 — {exc}"
        )

    async def _start(self) -> None:
        data = self._open_data()
        self._check_control_port()
        if self.options.link == "rootcanal":
            try:
                self.rootcanal = start_rootcanal()
            except RootCanalUnavailable as exc:
                raise StartError(f"RootCanal ne démarre pas — {exc}") from exc
        name = self.transport_name
        try:
            self.transport = await open_transport(name)
        except ImportError as exc:
            raise StartError(
                f"le transport {name} demande un paquet absent (pour android-netsim : pip "
                f"install 'bumble[android]') — {exc}"
            ) from exc
        except Exception as exc:  # Bumble raises several kinds (spec, init, OS errors)
            raise StartError(f"impossible d'ouvrir le transport {name} — {exc}") from exc
        profile = self.profile
        device = Device.with_hci(
            profile.name, Address(profile.address), self.transport.source, self.transport.sink
        )
        if self.options.snoop is not None and device.host is not None:
            try:
                self.options.snoop.parent.mkdir(parents=True, exist_ok=True)
                self._snoop_file = self.options.snoop.open("wb")
            except OSError as exc:
                raise StartError(
                    f"impossible d'écrire la capture {self.options.snoop} — {exc}"
                ) from exc
            device.host.snooper = BtSnooper(self._snoop_file)
        merchant, firmware = data.load_configuration()
        if self.options.preconfigured and merchant is None:
            merchant, firmware = factory_setup(self.merchant, profile)
            data.save_configuration(merchant, firmware)
        engine = TerminalEngine(profile, merchant, Timeouts(), firmware=firmware)
        inject = functools.partial(inject_card_data_key, self.keys, data)
        if engine.configured:  # its key was injected at its first setup, kept since
            inject(engine)
        self.terminal = BleTerminal(
            device,
            engine,
            data=data,
            on_setup_complete=inject,
            message_log_size=MESSAGE_LOG_SIZE,
        )
        self.wallet.watch(self.terminal)  # the cards' counters saved after every step
        await self.terminal.start()
        from harness.standalone.control import ControlServer  # the panel is optional to load

        self.control = ControlServer(
            self.terminal,
            self.card,
            list(self.catalogue),
            known=self.known,
            host=self.options.control_host,
            port=self.options.control_port,
        )
        try:
            await self.control.start()
        except OSError as exc:
            raise StartError(self._port_taken(exc)) from exc

    async def stop(self) -> None:
        """Stop everything started (idempotent); the data folder keeps bonds and setup."""
        if self.control is not None:
            control, self.control = self.control, None
            await control.stop()
        if self.terminal is not None:
            terminal, self.terminal = self.terminal, None
            try:
                await terminal.stop()
            except Exception:  # the radio may already be gone (RootCanal stopped, USB out)
                log.debug("terminal stop failed", exc_info=True)
            self.wallet.unwatch()
            try:
                self.wallet.save()
            except WalletError as exc:
                log.error("%s", exc)
        if self.transport is not None:
            transport, self.transport = self.transport, None
            with contextlib.suppress(Exception):
                await transport.close()
        if self.rootcanal is not None:
            rootcanal, self.rootcanal = self.rootcanal, None
            rootcanal.stop()
        if self._snoop_file is not None:
            self._snoop_file.close()
            self._snoop_file = None
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # the only descriptor: the flock goes with it

    def describe(self) -> list[str]:
        """What a human needs to know once it runs (French)."""
        profile = self.profile
        lines = [
            f"tpe-sim terminal — {profile.name} ({profile.manufacturer} {profile.model}, "
            f"numéro de série {profile.serial}, adresse {profile.address})",
        ]
        if self.rootcanal is not None:
            lines.append(
                f"Radio : RootCanal, port HCI {self.rootcanal.hci_port} — autres processus : "
                f"--transport {self.rootcanal.transport}"
            )
        else:
            lines.append(f"Radio : transport {self.transport_name}")
        lines.append(f"Données : {self.data_dir.resolve()}")
        if self.control is not None:
            lines.append(f"Contrôle : {self.control.url}/ (panneau web et API)")
        if self.options.snoop is not None:
            lines.append(f"Capture : {self.options.snoop.resolve()} (btsnoop, Wireshark)")
        lines.append(f"{READY_LINE} le terminal émet ses annonces. Ctrl-C pour l'arrêter.")
        return lines


async def serve(options: TerminalOptions, out: Printer = print_line) -> int:
    """Run the terminal until SIGINT, SIGTERM or SIGHUP; 0 after a clean stop, 2 if it cannot
    start."""

    async def start() -> StandaloneTerminal:
        terminal = StandaloneTerminal(options)
        await terminal.start()
        return terminal

    return await serve_until_signal(
        start,
        StartError,
        command="terminal",
        stopping="Arrêt du terminal…",
        stopped=lambda t: f"Terminal arrêté ; ses données restent dans {t.data_dir.resolve()}",
        out=out,
        signals=STOP_SIGNALS,  # Ctrl-C, kill, a closed terminal window or SSH session
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tpe-sim terminal``."""
    radio = parser.add_mutually_exclusive_group(required=True)
    radio.add_argument(
        "--transport",
        metavar="NAME",
        help="any Bumble transport: tcp-client:HOST:PORT (RootCanal or another HCI server), "
        "android-netsim (Android emulator), usb:0 (USB dongle), serial:…, vhci, …",
    )
    radio.add_argument(
        "--link",
        choices=["rootcanal"],
        help="start a RootCanal virtual controller on free ports and attach to it (its HCI "
        "port is printed for other processes)",
    )
    parser.add_argument(
        "--profile",
        default="standard",
        help="terminal profile of terminals.yaml (default: standard)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="the terminal's data folder: bonds, configuration, DUKPT counter, journal, the "
        "cards' counters (default: tpe-sim-data/terminal-SERIAL)",
    )
    parser.add_argument(
        "--fixtures", type=Path, default=None, help="folder of cards.yaml, terminals.yaml, …"
    )
    parser.add_argument(
        "--control-port",
        type=_port,
        default=0,
        help="port of the control API and web panel on 127.0.0.1 (default 0: a free one, "
        "printed at start)",
    )
    parser.add_argument(
        "--snoop", type=Path, metavar="FILE", help="write the HCI traffic to FILE (btsnoop)"
    )
    parser.add_argument(
        "--preconfigured",
        action="store_true",
        help="configured at the factory for the fixtures' merchant: no first setup (its "
        "minutes of configuration download) when an app associates it",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0 to 65535)")
    return value


def terminal_command(args: argparse.Namespace) -> int:
    """``tpe-sim terminal``: see the module docstring."""
    options = TerminalOptions(
        transport=args.transport,
        link=args.link,
        profile=args.profile,
        data=args.data,
        fixtures=args.fixtures or fixtures_dir(),
        control_port=args.control_port,
        snoop=args.snoop,
        preconfigured=args.preconfigured,
    )
    return asyncio.run(serve(options))
