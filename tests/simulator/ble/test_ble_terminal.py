"""The terminal's BLE edge, over Bumble's LocalLink with the real phone stack on the other side."""

from __future__ import annotations

import dataclasses

import pytest
from bumble import gatt
from bumble.att import ATT_READ_NOT_PERMITTED_ERROR, ATT_Error
from bumble.core import UUID

from harness.app import AppTimeouts, PhoneError
from harness.rig import World, WorldConfig
from simulator.ble import PAYMENT_SERVICE_UUID
from simulator.protocol import framing
from simulator.protocol.messages import DiagnosisRequest, DiagnosisResponse, Error
from simulator.terminal import State, TerminalError


def unpaid_small_invoice(world: World) -> str:
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    return number


def test_pairing_is_numeric_comparison_and_bond_is_mitm() -> None:
    with World() as world:
        world.associate()
        code = world.phone.last_pairing_code
        assert code is not None
        assert len(code) == 6
        # the same code was on the terminal's screen while the user compared them
        shown = [shot.lines for shot in world.terminal.engine.screen.history]
        assert ("APPAIRAGE", f"CODE {code}", "CONFIRMEZ SUR LE TEL") in shown
        (link,) = world.terminal._links.values()
        assert link.mitm
        assert world.terminal._is_secure(link)


def test_just_works_central_cannot_start_a_payment() -> None:
    with World(WorldConfig(phone_mitm=False, preconfigured=True)) as world:
        world.associate()  # Just Works pairing succeeds, diagnosis is allowed
        (link,) = world.terminal._links.values()
        assert link.connection.encryption
        assert not link.mitm
        number = unpaid_small_invoice(world)
        with pytest.raises(PhoneError) as refused:
            world.start_payment(number)
        assert refused.value.code == "insecure_link"
        assert "liaison non sécurisée" in refused.value.message
        assert world.terminal.engine.state is State.IDLE
        assert world.terminal.engine.journal == {}
        # nothing charged, and the backend's payment was closed, not left pending
        invoice = world.store.invoice(number)
        assert invoice.status == "unpaid"
        assert [p.status for p in invoice.payments] == ["aborted"]


def test_pairing_refused_on_the_terminal_fails_and_stores_no_bond() -> None:
    with World(WorldConfig(pairing_answer="refuse_on_terminal")) as world:
        with pytest.raises(PhoneError) as failed:
            world.associate()
        assert failed.value.code == "pairing_failed"
        assert world.app.terminal is None
        assert world.store.terminals == {}


def test_malformed_frames_get_protocol_errors_and_the_terminal_serves_the_next_command() -> None:
    with World() as world:
        world.associate()
        link = world.app.link
        assert link is not None
        bad_frames = [
            b"\x00",  # shorter than a header
            b"\xff\x01\x00abc",  # wrong version, reserved bits
            bytes([0x40, 9, 3]) + b"orphan",  # continuation without a first fragment
            bytes([0x41, 10, 0, 0xFF, 0xFF]) + b"x",  # declares 65535 bytes: over the cap
            b"".join(framing.fragment(b"{not json", 11, link.endpoint.att_mtu)),
            b"".join(framing.fragment(b'{"v":9,"type":"DiagnosisRequest"}', 12, 517)),
            b"".join(framing.fragment(b'{"v":1,"type":"DisplayUpdate","lines":[]}', 13, 517)),
        ]
        world.run(link.write_frames(bad_frames))
        world.run(world.wait_until(lambda: len(link.received) >= 7, "seven errors", 5.0))
        errors = [e for e in link.received if isinstance(e, Error)]
        assert [e.code for e in errors] == [
            "framing_error",
            "framing_error",
            "framing_error",
            "framing_error",
            "invalid_message",
            "unsupported_version",
            "unknown_message_type",
        ]
        assert all(e.reason for e in errors)
        while not link.events.empty():  # the errors above, already checked
            link.events.get_nowait()
        sent = world.run(link.send(DiagnosisRequest()))
        reply = world.run(link.next_event(5.0))
        assert isinstance(reply, DiagnosisResponse)
        assert reply.in_reply_to == sent.id
        assert reply.serial == world.profile.serial


def test_terminal_advertises_its_name_and_restarts_advertising_after_disconnection() -> None:
    with World() as world:
        found = world.run(world.phone.scan(5.0))
        assert found.name == "TPE-SIM0001"
        world.associate()
        assert world.app.link is not None
        world.run(world.app.link.disconnect())
        again = world.run(world.phone.scan(5.0))
        assert again.name == "TPE-SIM0001"
        assert world.terminal.device.scan_response_data.find(bytes(PAYMENT_SERVICE_UUID)) > 0


def test_device_information_and_battery_services_are_readable() -> None:
    with World() as world:
        world.associate()
        assert world.app.link is not None
        peer = world.app.link.peer

        async def read(uuid: UUID) -> bytes:
            (value,) = await peer.read_characteristics_by_uuid(uuid)
            return value

        world.terminal.set_battery(42)
        assert world.run(read(gatt.GATT_SERIAL_NUMBER_STRING_CHARACTERISTIC)) == b"SIM0001"
        assert world.run(read(gatt.GATT_MANUFACTURER_NAME_STRING_CHARACTERISTIC)) == b"tpe-sim"
        assert world.run(read(gatt.GATT_FIRMWARE_REVISION_STRING_CHARACTERISTIC)) == b"1.4.2"
        assert world.run(read(gatt.GATT_BATTERY_LEVEL_CHARACTERISTIC)) == bytes([42])


def test_just_works_central_cannot_even_set_the_terminal_up() -> None:
    with World(WorldConfig(phone_mitm=False)) as world:
        with pytest.raises(PhoneError) as refused:
            world.associate()
        assert refused.value.code == "insecure_link"
        assert not world.terminal.engine.configured
        assert world.terminal.engine.state is State.IDLE


def test_reading_the_write_only_command_characteristic_is_refused_at_once() -> None:
    """A generic GATT browser reads every characteristic: the command one answers "read not
    permitted" at once (not a 30 s ATT timeout) and the terminal goes on serving."""
    with World() as world:
        world.associate()
        link = world.app.link
        assert link is not None
        started = world.loop_elapsed
        with pytest.raises(ATT_Error) as refused:
            world.run(link.peer.read_value(link.proxy.command))
        assert refused.value.error_code == ATT_READ_NOT_PERMITTED_ERROR
        assert world.loop_elapsed - started < 1.0  # answered, not timed out
        world.run(link.send(DiagnosisRequest()))
        assert isinstance(world.run(link.next_event(5.0)), DiagnosisResponse)


def test_an_empty_battery_switches_the_terminal_off_and_ends_what_was_under_way() -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = world.unpaid_invoice()
        assert number is not None
        world.start_payment(number)
        world.insert("offline_pin")  # the terminal asks for the PIN
        terminal = world.terminal
        card = world.card("offline_pin")
        tries = card.pin_tries
        terminal.set_battery(0)
        world.run(world.wait_until(lambda: not terminal.device.powered_on, "power-off", 10))
        assert not terminal.powered
        txn = next(iter(terminal.engine.journal.values()))
        assert (txn.state, txn.message) == (
            State.ABORTED,
            "Transaction interrompue : le terminal s'est éteint",
        )
        assert terminal.data is not None
        [entry] = terminal.data.load_journal()  # written at once, not at the next power-on
        assert entry.state == "aborted"
        with pytest.raises(TerminalError, match="switched off"):
            terminal.enter_pin("0000")  # a dead keypad: the card's PIN tries are untouched
        assert card.pin_tries == tries
        # no timer fires on a dead terminal; the app gives up reaching it meanwhile
        world.wait(world.config.app_timeouts.reconnect + 60)
        assert next(iter(terminal.engine.journal.values())).message.startswith(
            "Transaction interrompue"
        )
        with pytest.raises(TerminalError, match="battery is empty"):
            world.run(terminal.power_on())
        terminal.set_battery(60)  # charged
        world.run(terminal.power_on())
        assert terminal.engine.screen.lines[0] == "BIENVENUE"
        with pytest.raises(PhoneError) as unknown:  # the app could not reach it meanwhile
            world.finish_payment()
        assert unknown.value.code == "outcome_unknown"
        world.start_payment(number)  # back on: the app reconnects, the customer pays
        world.insert("offline_pin")
        world.enter_pin("1234")
        assert world.finish_payment().invoice["status"] == "paid"


def test_the_last_result_goes_out_before_a_drained_battery_switches_the_terminal_off() -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        number = unpaid_small_invoice(world)
        world.terminal.set_battery(world.profile.min_transaction_battery)
        world.terminal.engine.profile = dataclasses.replace(
            world.profile, battery_per_transaction=world.profile.min_transaction_battery
        )
        world.start_payment(number)
        world.tap("visa")
        outcome = world.finish_payment()
        assert outcome.result == "approved"  # the phone got the result...
        assert outcome.invoice["status"] == "paid"
        world.run(world.wait_until(lambda: not world.terminal.powered, "power-off", 10))
        assert world.terminal.engine.battery == 0  # ...then the terminal went off


@pytest.mark.realistic
def test_over_rootcanal_an_empty_terminal_goes_silent_and_comes_back_on() -> None:
    """On a real controller (RootCanal) Bumble's power_off alone would leave it advertising
    and accepting phones: the power cut resets it, and switching on advertises again."""
    config = WorldConfig(
        preconfigured=True,
        fast=False,
        link="rootcanal",
        app_timeouts=AppTimeouts(reconnect=6.0, scan=3.0),  # wall clock: give up quickly
    )
    with World(config) as world:
        world.associate()
        number = unpaid_small_invoice(world)
        world.start_payment(number)
        terminal = world.terminal
        terminal.set_battery(0)
        world.run(world.wait_until(lambda: not terminal.device.powered_on, "power-off", 10))
        # the app tries to reconnect meanwhile: the terminal is silent, nobody is served
        with pytest.raises(PhoneError) as unknown:
            world.finish_payment()
        assert unknown.value.code == "outcome_unknown"
        assert terminal.connected_phones == 0
        terminal.set_battery(60)
        world.run(terminal.power_on())  # no stale advertising set in the way
        world.start_payment(number)  # found, reconnected, asked for the card
        world.tap("visa")
        assert world.finish_payment().invoice["status"] == "paid"


def test_switching_on_while_the_terminal_is_switching_off_waits_for_it() -> None:
    """« Rallumer » pressed the moment the battery hit 0: the switch-off completes first, then
    the terminal comes back on (not left off by a switch-off that came after)."""
    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        terminal = world.terminal
        terminal.set_battery(0)  # the switch-off is under way, not done
        assert terminal.powered
        terminal.set_battery(40)  # charged at once...
        world.run(terminal.power_on())  # ...and switched on
        assert terminal.powered
        assert terminal.device.powered_on
        world.wait(5)
        assert terminal.powered  # nothing switched it off afterwards
        number = unpaid_small_invoice(world)
        world.start_payment(number)
        world.tap("visa")
        assert world.finish_payment().invoice["status"] == "paid"
