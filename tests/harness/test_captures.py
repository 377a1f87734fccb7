"""Packet captures of worlds: ``--tpe-snoop DIR`` saves each device's HCI traffic per test,
as btsnoop files Wireshark opens, holding the payment's ATT traffic and no card number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.captures import (
    ATT_CID,
    ATT_WRITE_REQUEST,
    CaptureError,
    _messages,
    read_capture,
)
from harness.cli import main
from harness.rig import World, WorldConfig
from simulator.protocol.framing import fragment

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
    """The protocol messages of a capture (harness.captures), which must hold ATT traffic."""
    parsed = read_capture(capture)
    assert parsed.att_pdus > 0, "no ATT traffic in the capture"
    return [item.message for item in parsed.messages]


def test_tpe_sim_capture_prints_the_protocol_messages_of_a_capture(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with World(WorldConfig(snoop_dir=tmp_path)) as world:
        world.associate()
        number = world.unpaid_invoice(at_most_cents=5000)
        assert number is not None
        world.start_payment(number)
        world.tap("visa")
        world.finish_payment()
    [terminal] = tmp_path.glob("TPE-*.btsnoop")
    assert main(["capture", str(terminal)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith(f"{terminal}: ")
    assert "messages du protocole de paiement" in lines[0]
    # the terminal's own capture: what it received (←) and sent (→), in order
    kinds = [line.split()[:2] for line in lines[1:]]
    assert ["←", "PaymentRequest"] in kinds
    assert kinds.index(["←", "PaymentRequest"]) < kinds.index(["→", "AuthorisationRequest"])
    assert kinds.index(["→", "AuthorisationRequest"]) < kinds.index(["→", "PaymentResponse"])
    assert VISA_PAN not in out  # the sealed card data stays sealed


def test_tpe_sim_capture_says_what_is_wrong_with_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "not-a-capture.btsnoop"
    bad.write_bytes(b"PK\x03\x04 a zip file")
    assert main(["capture", str(bad), str(tmp_path / "absent.btsnoop")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not a btsnoop capture" in err
    assert "absent.btsnoop" in err
    with pytest.raises(CaptureError, match="datalink 1001"):
        read_capture(b"btsnoop\0" + (1).to_bytes(4, "big") + (1001).to_bytes(4, "big"))


def att_write(frame: bytes) -> tuple[int, int, bytes]:
    """A sent ATT write request carrying ``frame`` (handle 0x0010)."""
    return (0, ATT_CID, bytes([ATT_WRITE_REQUEST, 0x10, 0x00]) + frame)


def test_frames_are_joined_and_bad_ones_kept_as_unreadable() -> None:
    long = json.dumps({"type": "hello", "v": 1, "text": "x" * 60}).encode()
    good = list(fragment(long, 1, 23))  # several frames at the minimum MTU
    assert len(good) > 2
    bad_json = list(fragment(b"{not json", 2, 23))
    orphan = good[1]  # a continuation without its first fragment
    pdus = [att_write(f) for f in [*good, *bad_json, orphan, *fragment(long, 3, 23)]]
    messages = _messages(pdus)
    assert messages[0].message["text"] == "x" * 60
    assert messages[1].message == {"type": "?", "unreadable": b"{not json".hex()}
    assert messages[2].message == {
        "type": "?",
        "unreadable": orphan.hex(),
        "error": "continuation fragment without a first fragment",
    }
    assert messages[3].message["type"] == "hello"  # the next message is read again
    assert len(messages) == 4
    assert all(m.direction == "sent" for m in messages)
