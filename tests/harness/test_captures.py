"""Packet captures of worlds: ``--tpe-snoop DIR`` saves each device's HCI traffic per test,
as btsnoop files Wireshark opens, holding the payment's ATT traffic and no card number."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from harness.rig import World, WorldConfig

pytest_plugins = ["pytester"]
VISA_PAN = "4242424242424242"

INNER_TEST = """
def test_pay(world):
    world.associate()
    number = world.unpaid_invoice(at_most_cents=5000)
    world.start_payment(number)
    world.tap("visa")
    assert world.finish_payment().invoice["status"] == "paid"
"""


def test_the_snoop_option_saves_one_capture_per_test_and_device(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile(test_capture=INNER_TEST)
    captures = tmp_path / "captures"
    result = pytester.runpytest("-p", "no:cacheprovider", "--tpe-snoop", str(captures))
    result.assert_outcomes(passed=1)
    [folder] = list(captures.iterdir())
    assert "test_pay" in folder.name
    files = sorted(path.name for path in folder.iterdir())
    assert files == ["T-l-phone-du-technicien.btsnoop", "TPE-SIM0001.btsnoop"]
    for name in files:
        capture = (folder / name).read_bytes()
        types = [message["type"] for message in att_messages(capture)]
        assert "PaymentRequest" in types, name
        assert "AuthorisationRequest" in types, name
        assert VISA_PAN.encode() not in capture
        assert bytes.fromhex(VISA_PAN) not in capture


def test_without_the_option_nothing_is_captured(tmp_path: Path) -> None:
    with World(WorldConfig(data_dir=tmp_path / "data")) as world:
        world.associate()
    assert not list(tmp_path.glob("**/*.btsnoop"))


def test_a_restarted_terminal_keeps_writing_one_valid_capture(tmp_path: Path) -> None:
    with World(WorldConfig(snoop_dir=tmp_path)) as world:
        world.associate()
        world.restart_terminal()
        world.associate()  # reconnects, bonded
    capture = (tmp_path / "TPE-SIM0001.btsnoop").read_bytes()
    types = [message["type"] for message in att_messages(capture)]
    # the whole file parses (no second header in the middle) and holds both power-ons:
    # first setup's diagnosis, then the bonded reconnection's
    assert types.count("DiagnosisRequest") >= 2
    assert types.index("SetupRequest") < len(types) - 1 - types[::-1].index("DiagnosisRequest")
    assert capture.count(b"btsnoop\0") == 1


# ---------------------------------------------------------------------------- helpers
def att_messages(capture: bytes) -> list[dict[str, Any]]:
    """The protocol messages in a btsnoop capture, parsed by hand: HCI ACL packets (H4)
    reassembled into L2CAP PDUs, ATT (CID 4) writes and notifications, the payment
    service's frames (docs/protocol.md) joined into JSON messages."""
    assert capture[:8] == b"btsnoop\0"
    version, datalink = struct.unpack(">II", capture[8:16])
    assert (version, datalink) == (1, 1002)  # HCI UART (H4)
    offset, pending, pdus = 16, dict[tuple[int, int], bytes](), []
    while offset < len(capture):
        _orig, length, flags, _drops, _time = struct.unpack(">IIIIQ", capture[offset:][:24])
        packet = capture[offset + 24 : offset + 24 + length]
        offset += 24 + length
        if len(packet) < 5 or packet[0] != 0x02:  # ACL data only
            continue
        header, _size = struct.unpack("<HH", packet[1:5])
        key = (flags & 1, header & 0x0FFF)  # direction, connection handle
        continuation = (header >> 12) & 0x3 == 0x1
        pending[key] = (pending.get(key, b"") if continuation else b"") + packet[5:]
        buffer = pending[key]
        if len(buffer) >= 4:
            pdu_length, cid = struct.unpack("<HH", buffer[:4])
            if len(buffer) >= 4 + pdu_length:
                pdus.append((key[0], cid, buffer[4 : 4 + pdu_length]))
                del pending[key]
    assert any(cid == 0x0004 for _, cid, _ in pdus), "no ATT traffic in the capture"
    streams: dict[int, bytes] = {0: b"", 1: b""}
    messages = []
    for direction, cid, pdu in pdus:
        if cid != 0x0004 or pdu[0] not in (0x12, 0x1B):  # write request, notification
            continue
        frame = pdu[3:]
        first, last = frame[0] & 0x01, frame[0] & 0x02
        streams[direction] += frame[5:] if first else frame[3:]
        if last:
            messages.append(json.loads(streams[direction]))
            streams[direction] = b""
    return messages
