"""The terminal's Bluetooth LE edge: Bumble device, GATT services, pairing, advertising.

This is the only place the terminal touches Bumble. It feeds the sans-IO
:class:`~simulator.terminal.TerminalEngine` with what arrives over the air and sends what
the engine emits, fragmented to each connection's ATT MTU.

Security: Bumble marks a link ``authenticated`` after any pairing, Just Works included, so
the terminal checks the bond's long-term key itself (``PairingKeys.ltk.authenticated``) and
tells the engine whether the link is MITM-protected. Payment commands on any other link are
refused with an explicit error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal

from bumble import att, hci
from bumble.core import AdvertisingData
from bumble.device import Connection, Device
from bumble.keys import PairingKeys
from bumble.pairing import PairingConfig, PairingDelegate
from bumble.profiles.battery_service import BatteryService
from bumble.profiles.device_information_service import DeviceInformationService

from simulator.ble.payment_service import PAYMENT_SERVICE_UUID, PaymentService
from simulator.ble.storage import TerminalDataFolder
from simulator.cards import EntryMode, VirtualCard
from simulator.protocol import ProtocolError, TerminalEndpoint
from simulator.protocol.messages import (
    AuthorisationRequest,
    Command,
    Error,
    Event,
    SetupRequest,
    SetupResponse,
)
from simulator.terminal import State, TerminalEngine, TerminalError

log = logging.getLogger(__name__)

#: Where a message is when a hook sees it: a command that just ``received`` (before the engine
#: handles it), an event the terminal is ``sending`` (the engine has already moved on; the phone
#: has not got it yet), an event ``sent`` (its frames are notified).
HookPoint = Literal["received", "sending", "sent"]
MessageHook = Callable[[HookPoint, Command | Event], Awaitable[None]]

IO_CAPABILITIES = {
    "display_yes_no": PairingDelegate.DISPLAY_OUTPUT_AND_YES_NO_INPUT,
    "display_only": PairingDelegate.DISPLAY_OUTPUT_ONLY,
    "keyboard_display": PairingDelegate.DISPLAY_OUTPUT_AND_KEYBOARD_INPUT,
    "no_input_no_output": PairingDelegate.NO_OUTPUT_NO_INPUT,
}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Link:
    """What the terminal knows about one connected phone."""

    connection: Connection
    endpoint: TerminalEndpoint
    mitm: bool = False
    commands: list[Command] = field(default_factory=list)


class _TerminalPairingDelegate(PairingDelegate):
    """Shows the code on the terminal's screen and waits for the merchant's key press."""

    def __init__(self, terminal: BleTerminal, io_capability: int, peer: str) -> None:
        super().__init__(io_capability=PairingDelegate.IoCapability(io_capability))
        self._terminal = terminal
        self._peer = peer

    async def accept(self) -> bool:
        return await self._terminal._has_room_for_a_bond(self._peer)

    async def compare_numbers(self, number: int, digits: int) -> bool:
        return await self._terminal._confirm_code(f"{number:0{digits}d}")

    async def display_number(self, number: int, digits: int) -> None:
        self._terminal._display_code(f"{number:0{digits}d}")

    async def confirm(self, auto: bool = False) -> bool:
        # Just Works: the terminal cannot refuse it at pairing time, but such a bond is never
        # allowed to start a payment (see BleTerminal._is_secure).
        return True


class BleTerminal:
    """A virtual TPE on a Bumble device."""

    def __init__(
        self,
        device: Device,
        engine: TerminalEngine,
        calendar: Callable[[], dt.datetime] = utc_now,
        data: TerminalDataFolder | None = None,
        on_setup_complete: Callable[[TerminalEngine], None] | None = None,
        message_log_size: int | None = None,
    ) -> None:
        """``data``: the folder keeping bonds and configuration across restarts (none: they
        live in memory and die with the process). ``on_setup_complete``: the key-injection
        host's part of first setup (it loads the card-data key into the engine).
        ``message_log_size``: how many messages :attr:`events_sent` and
        :attr:`commands_received` keep (None: all of them, for a test's leak scan; a terminal
        that runs for days keeps the last ones only)."""
        self.device = device
        self.engine = engine
        self.data = data
        self._on_setup_complete = on_setup_complete
        if data is not None:
            device.keystore = data.keystore()
            # the journal survives power cycles; what the power cut is over (aborted)
            data.save_journal(engine.restore_journal(data.load_journal()))
        self._calendar = calendar
        self._links: dict[int, _Link] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._send_lock = asyncio.Lock()
        self._pending_code: asyncio.Future[bool] | None = None
        self._loop = asyncio.get_running_loop()  # built inside the loop it serves
        self._tasks: set[asyncio.Task[None]] = set()
        self._power_off_task: asyncio.Task[None] | None = None  # an empty battery's
        #: switched on (advertising, reading cards); False before :meth:`start`, after
        #: :meth:`stop` and after the battery ran out
        self.powered = False
        self.events_sent: deque[Event] = deque(maxlen=message_log_size)
        #: Called after anything that may change what an observer sees (screen, state, links).
        self.listeners: list[Callable[[], None]] = []
        self.commands_received: deque[Command] = deque(maxlen=message_log_size)
        #: Awaited at each step a message takes (see :data:`HookPoint`): the control panel's
        #: live log, packet-level fault injection ("drop the link once the approval reached the
        #: terminal, before the result reaches the phone"). A hook may drop the link: an event
        #: whose link is gone after its ``sending`` hooks is not sent.
        self.message_hooks: list[MessageHook] = []
        profile = engine.profile
        self.payment_service = PaymentService(self._on_command_frame)
        self.battery_service = BatteryService(lambda _conn: self.engine.battery)
        device.add_service(
            DeviceInformationService(
                manufacturer_name=profile.manufacturer,
                model_number=profile.model,
                serial_number=profile.serial,
                firmware_revision=engine.firmware,
            )
        )
        device.add_service(self.battery_service)
        device.add_service(self.payment_service)
        io_capability = IO_CAPABILITIES[profile.io_capability]
        device.pairing_config_factory = lambda conn: PairingConfig(
            sc=True,
            mitm=True,
            bonding=True,
            delegate=_TerminalPairingDelegate(self, io_capability, str(conn.peer_address)),
            identity_address_type=PairingConfig.AddressType.RANDOM,
        )
        device.on(device.EVENT_CONNECTION, self._on_connection)

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Power on and advertise; advertising restarts after every disconnection."""
        await self.device.power_on()
        profile = self.engine.profile
        # The name goes in the advertising data itself, the service UUID in the scan response:
        # 31 bytes cannot hold flags, a 128-bit UUID and the name together. (Bumble's virtual
        # controller answers scan requests with the advertising data, so on a LocalLink the
        # phone only sees the name: it matches on the name prefix as well as on the UUID.)
        self.device.advertising_data = bytes(
            AdvertisingData(
                [
                    (AdvertisingData.FLAGS, bytes([0x06])),
                    (AdvertisingData.COMPLETE_LOCAL_NAME, profile.name.encode()),
                    # Battery Service UUID + level, so that a scan can list the battery
                    (
                        AdvertisingData.SERVICE_DATA_16_BIT_UUID,
                        bytes([0x0F, 0x18, self.engine.battery]),
                    ),
                ]
            )
        )
        self.device.scan_response_data = bytes(
            AdvertisingData(
                [
                    (
                        AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                        bytes(PAYMENT_SERVICE_UUID),
                    )
                ]
            )
        )
        self.powered = True  # before advertising: a phone may connect at once
        try:
            await self.device.start_advertising(
                auto_restart=True,
                advertising_interval_min=profile.advertising_interval_ms,
                advertising_interval_max=profile.advertising_interval_ms,
            )
        except BaseException:
            self.powered = False
            raise
        log.info("terminal %s advertising", profile.name)
        self._changed()

    async def power_on(self) -> None:
        """Switch a terminal that went off (empty battery) back on, in the same process: its
        journal and bonds are as it left them. Charge it first (:meth:`set_battery`)."""
        switching_off = self._power_off_task
        if switching_off is not None and not switching_off.done():
            await asyncio.shield(switching_off)  # let the switch-off finish first
        if self.powered:
            return
        if self.engine.battery == 0:
            raise TerminalError("the battery is empty: charge the terminal before switching it on")
        await self.start()
        self.engine.power_on(self._now())
        self._after_engine()

    async def stop(self) -> None:
        """Power off (idempotent); the data folder keeps bonds and configuration."""
        self.powered = False
        if not self.device.powered_on:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        current = asyncio.current_task()
        others = [task for task in self._tasks if task is not current]
        if others:
            await asyncio.gather(*others, return_exceptions=True)
        for link in list(self._links.values()):
            try:
                await link.connection.disconnect()
            except Exception:  # already gone: nothing to do
                log.debug("disconnect on stop failed", exc_info=True)
        # A powered-off Bumble device's virtual controller keeps advertising on its own:
        # stop it, or phones would still see (and try to connect to) a switched-off terminal.
        try:
            await self.device.stop_advertising()
        except hci.HCI_Error:  # RootCanal refuses it once a phone has connected
            log.debug("stop_advertising refused by the controller", exc_info=True)
        # Bumble's power_off leaves the controller running (a real controller, RootCanal's or
        # the virtual one): reset it, as a power cut would, so that it neither advertises nor
        # accepts a connection while the terminal is off; forget the advertising set the reset
        # took away, or the next start would try to remove it again.
        try:
            await self.device.host.send_sync_command(hci.HCI_Reset_Command())
        except (hci.HCI_Error, TimeoutError):
            log.warning("the controller refused to reset at power-off", exc_info=True)
        self.device.legacy_advertising_set = None
        self.device.legacy_advertiser = None
        await self.device.power_off()
        if self.data is not None:
            self.data.close()
        self._changed()

    # ---------------------------------------------------------------- physical actions
    def present_card(self, card: VirtualCard, mode: EntryMode, brand: str | None = None) -> None:
        """The cardholder taps or inserts a card (choosing ``brand`` on a co-badged card)."""
        self._require_power()
        self.engine.present_card(card, mode, self._now(), self._calendar(), brand)
        self._after_engine()

    def enter_pin(self, pin: str) -> None:
        """The cardholder types the PIN on the terminal's keypad and confirms."""
        self._require_power()
        self.engine.enter_pin(pin, self._now())
        self._after_engine()

    def remove_card(self) -> None:
        """The cardholder pulls the inserted card out."""
        self._require_power()
        self.engine.remove_card(self._now())
        self._after_engine()

    def press_key(self, key: str) -> None:
        """``green`` or ``red``: confirms or refuses a pairing code on the terminal; outside
        pairing, the red key cancels the transaction waiting for a card or a PIN."""
        if key not in ("green", "red"):
            raise ValueError(f"unknown key {key!r}: the terminal has 'green' and 'red'")
        self._require_power()
        if self._pending_code is not None and not self._pending_code.done():
            self._pending_code.set_result(key == "green")
        elif key == "red":
            self.engine.press_red_key(self._now())
            self._after_engine()

    def _require_power(self) -> None:
        if not self.powered:
            raise TerminalError("the terminal is switched off")

    @property
    def awaiting_code_confirmation(self) -> bool:
        return self._pending_code is not None and not self._pending_code.done()

    def set_battery(self, level: int) -> None:
        """The battery's charge; at 0 % the terminal switches itself off (links drop, the
        journal keeps where its transaction was)."""
        self.engine.set_battery(level)
        self._after_engine()

    async def drop_links(self) -> int:
        """Cut every phone's link at once (radio interference, a wall): the phones see a link
        loss; bonds stay. Returns how many links were cut."""
        links = list(self._links.values())
        for link in links:
            try:
                await link.connection.disconnect()
            except Exception:  # already going away
                log.debug("disconnect failed", exc_info=True)
        return len(links)

    @property
    def connected_phones(self) -> int:
        return len(self._links)

    # ---------------------------------------------------------------- bonds and data
    async def bonded_phones(self) -> list[str]:
        keystore = self.device.keystore
        return [name for name, _ in await keystore.get_all()] if keystore else []

    async def _has_room_for_a_bond(self, peer: str) -> bool:
        """A new phone may pair while the terminal keeps fewer bonds than its profile allows;
        a phone it already knows may always pair again (its new bond replaces the old)."""
        others = [name for name in await self.bonded_phones() if name != peer]
        if len(others) < self.engine.profile.max_bonds:
            return True
        log.warning("pairing refused: %d bonds already", self.engine.profile.max_bonds)
        self.engine.show_bonds_full(self._now())
        self._after_engine()
        return False

    async def _forget_phone(self, link: _Link) -> None:
        """A phone whose first setup was refused is not associated: its bond goes too."""
        keystore = self.device.keystore
        peer = str(link.connection.peer_address)
        if keystore is not None and await keystore.get(peer) is not None:
            await keystore.delete(peer)
            log.info("bond with %s dropped: first setup refused", peer)

    async def factory_reset(self) -> None:
        """Forget every phone and the configuration (the merchant's "réinitialisation")."""
        for link in list(self._links.values()):
            await link.connection.disconnect()
        if self.device.keystore is not None:
            await self.device.keystore.delete_all()
        if self.data is not None:
            self.data.clear(self.engine.firmware)
        self.engine.factory_reset(self._now())
        self._after_engine()

    def _save_configuration(self) -> None:
        if self.data is not None and self.engine.merchant is not None:
            self.data.save_configuration(self.engine.merchant, self.engine.firmware)

    # ---------------------------------------------------------------- pairing
    async def _confirm_code(self, code: str) -> bool:
        self.engine.show_pairing_code(code, self._now())
        self._after_engine()
        self._pending_code = self._loop.create_future()
        self._changed()
        try:
            return await asyncio.wait_for(
                self._pending_code, self.engine.timeouts.pairing_code_display
            )
        except TimeoutError:
            return False
        finally:
            self._pending_code = None

    def _display_code(self, code: str) -> None:
        self.engine.show_pairing_code(code, self._now(), typed=True)
        self._after_engine()

    # ---------------------------------------------------------------- links
    def _on_connection(self, connection: Connection) -> None:
        if not self.powered:  # a switched-off terminal serves nobody
            log.info("connection from %s refused: terminal off", connection.peer_address)
            self._spawn(self._refuse_connection(connection))
            return
        link = _Link(connection, TerminalEndpoint(connection.att_mtu))
        self._links[connection.handle] = link
        log.info("phone connected: %s", connection.peer_address)

        def on_pairing(keys: PairingKeys) -> None:
            link.mitm = bool(keys.ltk and keys.ltk.authenticated)
            self.engine.pairing_ended(self._now(), success=True)
            self._after_engine()

        def on_pairing_failure(reason: int) -> None:
            link.mitm = False
            self.engine.pairing_ended(self._now(), success=False)
            self._after_engine()

        def on_encryption_change(*_: object) -> None:
            if connection.encryption and not link.mitm:
                self._spawn(self._load_bond(link))

        def on_mtu() -> None:
            link.endpoint.att_mtu = connection.att_mtu

        def on_disconnection(reason: int) -> None:
            self._links.pop(connection.handle, None)
            log.info("phone disconnected: %s (reason %#x)", connection.peer_address, reason)
            if not self._links:
                self.engine.link_lost(self._now())
                self._after_engine()

        connection.on(connection.EVENT_PAIRING, on_pairing)
        connection.on(connection.EVENT_PAIRING_FAILURE, on_pairing_failure)
        connection.on(connection.EVENT_CONNECTION_ENCRYPTION_CHANGE, on_encryption_change)
        connection.on(connection.EVENT_CONNECTION_ATT_MTU_UPDATE, on_mtu)
        connection.on(connection.EVENT_DISCONNECTION, on_disconnection)

    async def _refuse_connection(self, connection: Connection) -> None:
        try:
            await connection.disconnect()
        except Exception:  # already gone
            log.debug("refusing a connection failed", exc_info=True)

    async def _load_bond(self, link: _Link) -> None:
        """A re-encrypted link (bonded phone): the stored key says whether it was MITM."""
        keystore = self.device.keystore
        if keystore is None:
            return
        keys = await keystore.get(str(link.connection.peer_address))
        if keys is not None and keys.ltk is not None:
            link.mitm = link.mitm or keys.ltk.authenticated

    def _is_secure(self, link: _Link) -> bool:
        return bool(link.connection.encryption) and link.mitm

    async def _on_command_frame(self, connection: Connection, value: bytes) -> None:
        link = self._links.get(connection.handle)
        if link is None:
            raise att.ATT_Error(att.ATT_UNLIKELY_ERROR_ERROR)
        for item in link.endpoint.receive_frame(bytes(value)):
            if isinstance(item, ProtocolError):
                log.warning("protocol error from %s: %s", connection.peer_address, item.reason)
                self.engine.handle_protocol_error(item)
                await self._flush(reply_to=link)
            else:
                if connection.encryption and not link.mitm:
                    await self._load_bond(link)  # a bonded phone re-encrypted the link
                self.commands_received.append(item)
                log.debug("phone → terminal: %r", item)
                await self._run_hooks("received", item)
                if connection.handle not in self._links:
                    continue  # a hook cut the link: the command never made it
                self.engine.handle_command(
                    item, self._now(), self._calendar(), secure=self._is_secure(link)
                )
                await self._flush(reply_to=link)
                setup_refused = (
                    isinstance(item, SetupRequest)
                    and self.engine.state is not State.SETUP
                    and not self.engine.configured
                )
                if setup_refused:  # not associated: its bond goes too
                    await self._forget_phone(link)
        self._reschedule()
        self._changed()
        self._check_power()

    # ---------------------------------------------------------------- engine plumbing
    def _now(self) -> float:
        return self._loop.time()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _after_engine(self) -> None:
        self._spawn(self._flush(reply_to=None))
        self._reschedule()
        self._changed()
        self._check_power()

    @property
    def _powering_off(self) -> bool:
        """An empty battery is switching the terminal off (not done yet)."""
        return self._power_off_task is not None and not self._power_off_task.done()

    def _check_power(self) -> None:
        """An empty battery switches the terminal off (once its last events are out)."""
        if self.engine.power_off_requested and self.powered and not self._powering_off:
            self._power_off_task = self._loop.create_task(self._power_off())
            self._tasks.add(self._power_off_task)
            self._power_off_task.add_done_callback(self._tasks.discard)

    async def _power_off(self) -> None:
        await self._flush(reply_to=None)  # after what was already on its way
        log.warning("battery empty: terminal %s switches off", self.engine.profile.name)
        self.engine.power_cut(self._now())  # what was under way ends with the power
        if self.data is not None:
            self.data.save_journal(self.engine.drain_journal_changes())
        self.powered = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.stop()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.engine.next_deadline
        if deadline is not None and self.powered:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.engine.on_timer(self._now())
        self._after_engine()

    async def _flush(self, reply_to: _Link | None) -> None:
        """Send what the engine emitted: replies to the asking phone, the rest to all."""
        async with self._send_lock:
            if self.data is not None:  # journaled before any result leaves the terminal
                self.data.save_journal(self.engine.drain_journal_changes())
            for event in self.engine.drain_events():
                if isinstance(event, SetupResponse) and event.result == "completed":
                    self._save_configuration()
                    if self._on_setup_complete is not None and not self.engine.card_data_keys:
                        self._on_setup_complete(self.engine)
                keys = self.engine.card_data_keys
                if isinstance(event, AuthorisationRequest) and keys and self.data is not None:
                    self.data.save_counter(keys.counter)  # before the key leaves in use
                # Replies and errors go to the phone whose write caused them; the rest to all.
                is_reply = (
                    isinstance(event, Error) or getattr(event, "in_reply_to", None) is not None
                )
                targets = [reply_to] if is_reply and reply_to else list(self._links.values())
                if self.message_hooks:
                    await self._run_hooks("sending", event)
                    targets = [t for t in targets if t.connection.handle in self._links]
                for link in targets:
                    sent, frames = link.endpoint.send(event)
                    self.events_sent.append(sent)
                    log.debug("terminal → phone: %r", sent)
                    for frame in frames:
                        await self.device.notify_subscriber(
                            link.connection, self.payment_service.event_characteristic, frame
                        )
                    await self._run_hooks("sent", sent)

    async def _run_hooks(self, point: HookPoint, message: Command | Event) -> None:
        for hook in list(self.message_hooks):
            try:
                await hook(point, message)
            except Exception:  # an observer's bug must not break the terminal
                log.exception("message hook %r failed at %s", hook, point)
