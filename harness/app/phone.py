"""The phone: a Bumble central that finds, pairs with and talks to the terminal.

Bumble is imported on this side only here (and in the rig that wires links).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bumble import att, core, gatt
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.hci import Address
from bumble.keys import JsonKeyStore
from bumble.pairing import PairingConfig, PairingDelegate

from simulator.ble import PAYMENT_SERVICE_UUID, PaymentServiceProxy, set_aside_if_unreadable
from simulator.protocol import PhoneEndpoint, ProtocolError
from simulator.protocol.messages import Command, Event

log = logging.getLogger(__name__)

PREFERRED_MTU = 517
ENCRYPTION_TIMEOUT = 10.0
PASSKEY_ENTRY_TIMEOUT = 60.0
TERMINAL_NAME_PREFIX = "TPE-"
MESSAGE_LOG_SIZE = 64

#: The user's answer to "does this code match the terminal's screen?"
CodeConfirmer = Callable[[str], Awaitable[bool]]
#: The user types the passkey the terminal shows (None: gives up).
PasskeyTyper = Callable[[], Awaitable[str | None]]


class PhoneError(Exception):
    """Something the app tells its user, in French (``str(error)``); ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class FoundTerminal:
    address: Address
    name: str
    rssi: int
    battery: int | None = None

    @property
    def serial(self) -> str:
        return self.name.removeprefix(TERMINAL_NAME_PREFIX)

    @classmethod
    def connected(cls, address: str, name: str, battery: int | None) -> FoundTerminal:
        """The terminal the phone is connected to (it does not advertise meanwhile)."""
        return cls(Address(address), name, 0, battery)


def _terminal_seen(adv: Advertisement, service: UUID) -> FoundTerminal | None:
    """A terminal's advertisement: its payment service UUID or a ``TPE-`` name; the battery
    level rides in the Battery Service's service data."""
    uuids = adv.data.get(AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
    name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
    if not isinstance(name, str):
        return None
    if not (uuids and service in uuids) and not name.startswith(TERMINAL_NAME_PREFIX):
        return None
    battery = None
    service_data = adv.data.get_all(AdvertisingData.SERVICE_DATA_16_BIT_UUID, raw=True)
    for raw in service_data:
        if isinstance(raw, bytes) and raw[:2] == b"\x0f\x18" and len(raw) == 3:
            battery = raw[2]
    return FoundTerminal(adv.address, name, adv.rssi, battery)


class _PhonePairingDelegate(PairingDelegate):
    """A phone has a screen and a keyboard: numeric comparison with a terminal that can show
    a code and take a yes/no, passkey entry with one that can only show it."""

    def __init__(self, confirm_code: CodeConfirmer, type_passkey: PasskeyTyper) -> None:
        super().__init__(io_capability=PairingDelegate.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT)
        self._confirm_code = confirm_code
        self._type_passkey = type_passkey
        self.last_code: str | None = None

    async def compare_numbers(self, number: int, digits: int) -> bool:
        self.last_code = f"{number:0{digits}d}"
        return await self._confirm_code(self.last_code)

    async def get_number(self) -> int | None:
        try:
            typed = await asyncio.wait_for(self._type_passkey(), PASSKEY_ENTRY_TIMEOUT)
        except TimeoutError:
            return None  # the user never typed it: the pairing fails instead of hanging
        if typed is None or not typed.isdigit() or len(typed) != 6:
            return None  # refuses the pairing instead of Bumble's default of 0
        self.last_code = typed
        return int(typed)

    async def confirm(self, auto: bool = False) -> bool:
        return True


async def _refuse_all(_code: str) -> bool:
    return False


async def _type_nothing() -> str | None:
    return None


class VirtualPhone:
    """A phone with Bluetooth and location services, as the app sees it."""

    def __init__(
        self, device: Device, *, mitm: bool = True, keystore_file: Path | None = None
    ) -> None:
        """``keystore_file``: where the phone keeps its bonds (none: in memory)."""
        self.device = device
        if keystore_file is not None:
            keystore_file.parent.mkdir(parents=True, exist_ok=True)
            set_aside_if_unreadable(keystore_file)
            device.keystore = JsonKeyStore(namespace="phone", filename=str(keystore_file))
        self.bluetooth_on = True
        self.location_on = True
        self.confirm_code: CodeConfirmer = _refuse_all
        self.type_passkey: PasskeyTyper = _type_nothing
        self._delegate = _PhonePairingDelegate(
            lambda code: self.confirm_code(code), lambda: self.type_passkey()
        )
        if not mitm:  # a careless central: Just Works (used to prove the terminal refuses it)
            self._delegate.io_capability = PairingDelegate.NO_OUTPUT_NO_INPUT
        device.pairing_config_factory = lambda _conn: PairingConfig(
            sc=True,
            mitm=mitm,
            bonding=True,
            delegate=self._delegate,
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )

    @property
    def last_pairing_code(self) -> str | None:
        return self._delegate.last_code

    async def start(self) -> None:
        await self.device.power_on()

    async def stop(self) -> None:
        await self.device.power_off()

    async def scan(
        self, timeout: float, name: str | None = None, service: UUID = PAYMENT_SERVICE_UUID
    ) -> FoundTerminal:
        """The first terminal (or the one called ``name``) seen within ``timeout``."""
        found: asyncio.Future[FoundTerminal] = asyncio.get_running_loop().create_future()

        def on_terminal(terminal: FoundTerminal) -> None:
            if (name is None or terminal.name == name) and not found.done():
                found.set_result(terminal)

        async with self._scanning(service, on_terminal):
            try:
                return await asyncio.wait_for(found, timeout)
            except TimeoutError:
                raise PhoneError(
                    "no_terminal",
                    "Aucun terminal trouvé à proximité. Vérifiez qu'il est allumé et proche du "
                    "téléphone.",
                ) from None

    async def scan_all(
        self, duration: float, service: UUID = PAYMENT_SERVICE_UUID
    ) -> list[FoundTerminal]:
        """Every terminal heard during ``duration`` seconds, strongest signal first."""
        seen: dict[str, FoundTerminal] = {}

        def on_terminal(terminal: FoundTerminal) -> None:
            seen[terminal.name] = terminal

        async with self._scanning(service, on_terminal):
            await asyncio.sleep(duration)
        return sorted(seen.values(), key=lambda t: -t.rssi)

    @contextlib.asynccontextmanager
    async def _scanning(
        self, service: UUID, on_terminal: Callable[[FoundTerminal], None]
    ) -> AsyncIterator[None]:
        def on_advertisement(adv: Advertisement) -> None:
            terminal = _terminal_seen(adv, service)
            if terminal is not None:
                on_terminal(terminal)

        self.device.on(self.device.EVENT_ADVERTISEMENT, on_advertisement)
        await self.device.start_scanning(active=True, filter_duplicates=False)
        try:
            yield
        finally:
            self.device.remove_listener(self.device.EVENT_ADVERTISEMENT, on_advertisement)
            await self.device.stop_scanning()

    async def is_bonded(self, terminal: FoundTerminal) -> bool:
        keystore = self.device.keystore
        return keystore is not None and await keystore.get(str(terminal.address)) is not None

    async def forget(self, terminal_address: str) -> None:
        """Delete the bond with a terminal ("Oublier ce terminal")."""
        keystore = self.device.keystore
        if keystore is not None and await keystore.get(terminal_address) is not None:
            await keystore.delete(terminal_address)

    async def connect(
        self,
        terminal: FoundTerminal,
        timeout: float,
        before_pairing: Callable[[TerminalLink], Awaitable[None]] | None = None,
    ) -> TerminalLink:
        """Connect, raise the MTU, pair (the user compares the code), subscribe.
        ``before_pairing`` runs on the open but unpaired link (e.g. the backend checks the
        terminal may be associated): if it raises, nothing has been paired or stored."""
        try:
            connection = await self.device.connect(terminal.address, timeout=timeout)
        except TimeoutError:
            raise PhoneError(
                "connect_timeout", "Impossible de se connecter au terminal : délai dépassé."
            ) from None
        link = TerminalLink(connection)
        try:
            await link.open(bonded=await self.is_bonded(terminal), before_pairing=before_pairing)
        except BaseException:
            # A half-open link would keep the terminal from advertising: close it.
            await link.disconnect()
            raise
        return link


def link_lost() -> PhoneError:
    return PhoneError(
        "link_lost",
        "Connexion Bluetooth perdue avec le terminal. Rapprochez le téléphone du terminal et "
        "réessayez.",
    )


def _pairing_failure(exc: BaseException) -> tuple[str, str]:
    if "PAIRING_NOT_SUPPORTED" in str(exc):
        return (
            "terminal_full",
            "Le terminal refuse un nouveau téléphone : il en connaît déjà le maximum. "
            "Réinitialisez-le (ses appairages seront effacés) pour en associer un autre.",
        )
    return (
        "pairing_failed",
        "L'appairage avec le terminal a échoué : les codes n'ont pas été confirmés.",
    )


class TerminalLink:
    """One GATT connection to the terminal's payment service."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.peer = Peer(connection)
        self.endpoint = PhoneEndpoint()
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.received: deque[Event] = deque(maxlen=MESSAGE_LOG_SIZE)
        self.sent: deque[Command] = deque(maxlen=MESSAGE_LOG_SIZE)
        self.protocol_errors: list[ProtocolError] = []
        self._proxy: PaymentServiceProxy | None = None
        self.disconnected = asyncio.get_running_loop().create_future()
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)

    def _on_disconnection(self, reason: int) -> None:
        if not self.disconnected.done():
            self.disconnected.set_result(reason)

    async def open(
        self,
        bonded: bool = False,
        before_pairing: Callable[[TerminalLink], Awaitable[None]] | None = None,
    ) -> None:
        """MTU, security, service discovery and subscription (after every connection: Bumble
        keeps no subscription across reconnections). A bonded phone re-encrypts with its
        stored key instead of pairing again."""
        mtu = await self.peer.request_mtu(PREFERRED_MTU)
        self.endpoint.att_mtu = mtu
        if bonded:
            try:
                await asyncio.wait_for(self.connection.encrypt(), ENCRYPTION_TIMEOUT)
            except Exception as exc:  # the terminal lost our bond: its LTK request fails
                raise PhoneError(
                    "pair_again",
                    "Le terminal ne reconnaît plus ce téléphone : oubliez-le dans le menu "
                    "Terminaux de Paiement (TPE), puis associez-le à nouveau.",
                ) from exc
        else:
            if before_pairing is not None:
                await before_pairing(self)
            try:
                await self.connection.pair()
            except Exception as exc:  # bumble raises ProtocolError subclasses on refusal
                raise PhoneError(*_pairing_failure(exc)) from exc
        await self.peer.discover_services([PAYMENT_SERVICE_UUID])
        services = self.peer.get_services_by_uuid(PAYMENT_SERVICE_UUID)
        if not services:
            raise PhoneError("not_a_terminal", "Cet appareil n'est pas un terminal de paiement.")
        await services[0].discover_characteristics()
        self._proxy = PaymentServiceProxy(services[0])
        await self.peer.subscribe(self._proxy.event, self._on_notification)

    async def read_identity(self) -> tuple[str, str, str]:
        """Serial, model and firmware from the Device Information service (readable before
        pairing, as on real terminals)."""

        async def read(uuid: UUID) -> str:
            values = await self.peer.read_characteristics_by_uuid(uuid)
            return bytes(values[0]).decode() if values else ""

        return (
            await read(gatt.GATT_SERIAL_NUMBER_STRING_CHARACTERISTIC),
            await read(gatt.GATT_MODEL_NUMBER_STRING_CHARACTERISTIC),
            await read(gatt.GATT_FIRMWARE_REVISION_STRING_CHARACTERISTIC),
        )

    @property
    def proxy(self) -> PaymentServiceProxy:
        if self._proxy is None:
            raise RuntimeError("link not opened")
        return self._proxy

    def _on_notification(self, value: bytes) -> None:
        for item in self.endpoint.receive_frame(bytes(value)):
            if isinstance(item, ProtocolError):
                log.warning("unreadable event from terminal: %s", item.reason)
                self.protocol_errors.append(item)
            else:
                self.received.append(item)
                self.events.put_nowait(item)

    async def send(self, command: Command) -> Command:
        """Write ``command`` frame by frame, each with response; returns it numbered."""
        sent, frames = self.endpoint.send(command)
        self.sent.append(sent)
        await self.write_frames(frames)
        return sent

    @property
    def is_connected(self) -> bool:
        return not self.disconnected.done()

    async def write_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            if not self.is_connected:
                raise link_lost()
            try:
                await self.peer.write_value(self.proxy.command, frame, with_response=True)
            except att.ATT_Error as exc:
                raise PhoneError(
                    "terminal_refused_write",
                    f"Le terminal a refusé la commande (erreur Bluetooth {exc.error_name}).",
                ) from exc
            except asyncio.CancelledError:
                task = asyncio.current_task()
                still_connected = not self.disconnected.done()
                if still_connected or (task is not None and task.cancelling()):
                    raise  # a real cancellation of this flow
                raise link_lost() from None  # Bumble cancels pending writes on disconnection
            except (TimeoutError, core.BaseBumbleError) as exc:
                if not self.is_connected:
                    raise link_lost() from exc
                raise PhoneError(
                    "terminal_timeout", "Le terminal ne répond pas : délai d'attente dépassé."
                ) from exc

    async def next_event(self, timeout: float) -> Event:
        """The next event from the terminal; :class:`PhoneError` on timeout or link loss
        (events that arrived before the loss are still delivered first)."""
        if not self.events.empty():
            return self.events.get_nowait()
        if not self.is_connected:
            raise link_lost()
        getter = asyncio.ensure_future(self.events.get())
        try:
            done, _ = await asyncio.wait(
                {getter, self.disconnected}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()
        if self.disconnected in done:
            raise link_lost()
        raise PhoneError("terminal_timeout", "Le terminal ne répond pas : délai d'attente dépassé.")

    async def disconnect(self) -> None:
        if not self.disconnected.done():
            await self.connection.disconnect()
