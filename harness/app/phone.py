"""The phone: a Bumble central that finds, pairs with and talks to the terminal.

Bumble is imported on this side only here (and in the rig that wires links).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bumble import att, core
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.hci import Address
from bumble.pairing import PairingConfig, PairingDelegate

from simulator.ble import PAYMENT_SERVICE_UUID, PaymentServiceProxy
from simulator.protocol import PhoneEndpoint, ProtocolError
from simulator.protocol.messages import Command, Event

log = logging.getLogger(__name__)

PREFERRED_MTU = 517
TERMINAL_NAME_PREFIX = "TPE-"
MESSAGE_LOG_SIZE = 64

#: The user's answer to "does this code match the terminal's screen?"
CodeConfirmer = Callable[[str], Awaitable[bool]]


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


class _PhonePairingDelegate(PairingDelegate):
    def __init__(self, confirm_code: CodeConfirmer) -> None:
        super().__init__(io_capability=PairingDelegate.DISPLAY_OUTPUT_AND_YES_NO_INPUT)
        self._confirm_code = confirm_code
        self.last_code: str | None = None

    async def compare_numbers(self, number: int, digits: int) -> bool:
        self.last_code = f"{number:0{digits}d}"
        return await self._confirm_code(self.last_code)

    async def confirm(self, auto: bool = False) -> bool:
        return True


async def _refuse_all(_code: str) -> bool:
    return False


class VirtualPhone:
    """A phone with Bluetooth and location services, as the app sees it."""

    def __init__(self, device: Device, *, mitm: bool = True) -> None:
        self.device = device
        self.bluetooth_on = True
        self.location_on = True
        self.confirm_code: CodeConfirmer = _refuse_all
        self._delegate = _PhonePairingDelegate(lambda code: self.confirm_code(code))
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

    async def scan(self, timeout: float, service: UUID = PAYMENT_SERVICE_UUID) -> FoundTerminal:
        """The first terminal seen within ``timeout``: one that advertises ``service`` or a
        ``TPE-`` name (terminals put the name in advertising data, the UUID in the scan
        response)."""
        loop = asyncio.get_running_loop()
        found: asyncio.Future[FoundTerminal] = loop.create_future()

        def on_advertisement(adv: Advertisement) -> None:
            uuids = adv.data.get(AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
            name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
            is_terminal = bool(uuids and service in uuids) or (
                isinstance(name, str) and name.startswith(TERMINAL_NAME_PREFIX)
            )
            if is_terminal and isinstance(name, str) and not found.done():
                found.set_result(FoundTerminal(adv.address, name, adv.rssi))

        self.device.on(self.device.EVENT_ADVERTISEMENT, on_advertisement)
        await self.device.start_scanning(active=True, filter_duplicates=True)
        try:
            return await asyncio.wait_for(found, timeout)
        except TimeoutError:
            raise PhoneError(
                "no_terminal",
                "Aucun terminal trouvé à proximité. Vérifiez qu'il est allumé et proche du "
                "téléphone.",
            ) from None
        finally:
            self.device.remove_listener(self.device.EVENT_ADVERTISEMENT, on_advertisement)
            await self.device.stop_scanning()

    async def connect(self, terminal: FoundTerminal, timeout: float) -> TerminalLink:
        """Connect, raise the MTU, pair (the user compares the code), subscribe."""
        try:
            connection = await self.device.connect(terminal.address, timeout=timeout)
        except TimeoutError:
            raise PhoneError(
                "connect_timeout", "Impossible de se connecter au terminal : délai dépassé."
            ) from None
        link = TerminalLink(connection)
        try:
            await link.open()
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

    async def open(self) -> None:
        mtu = await self.peer.request_mtu(PREFERRED_MTU)
        self.endpoint.att_mtu = mtu
        try:
            await self.connection.pair()
        except Exception as exc:  # bumble raises ProtocolError subclasses on refusal
            raise PhoneError(
                "pairing_failed",
                "L'appairage avec le terminal a échoué : les codes n'ont pas été confirmés.",
            ) from exc
        await self.peer.discover_services([PAYMENT_SERVICE_UUID])
        services = self.peer.get_services_by_uuid(PAYMENT_SERVICE_UUID)
        if not services:
            raise PhoneError("not_a_terminal", "Cet appareil n'est pas un terminal de paiement.")
        await services[0].discover_characteristics()
        self._proxy = PaymentServiceProxy(services[0])
        await self.peer.subscribe(self._proxy.event, self._on_notification)

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
