"""``tpe-sim terminal --link rootcanal`` as a process, seen by other processes over RootCanal:
the virtual app pays an invoice through it and ``tpe-sim backend``; Bumble's own
``bumble-gatt-dump`` and ``bumble-pair`` see it as any BLE device. The realistic lane: real
processes, RootCanal, the wall clock (``make test-realistic``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harness.captures import read_capture
from harness.standalone.processes import (
    BackendProcess,
    TerminalProcess,
    TpeSimProcess,
    start_backend,
    start_terminal,
)

pytestmark = pytest.mark.realistic

VISA_PAN = "4242424242424242"
TERMINAL_ADDRESS = "C0:11:22:33:44:01"  # the standard profile's
#: Wall-clock seconds a flow may take over RootCanal (scan, pair, pay: ~6 s measured).
FLOW_TIMEOUT = 90.0


def bumble_tool(name: str) -> list[str]:
    """Bumble's console script ``name``, installed next to this interpreter."""
    return [str(Path(sys.executable).with_name(name))]


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[BackendProcess]:
    with start_backend(db=tmp_path / "backend.sqlite") as process:
        yield process


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[TerminalProcess]:
    with start_terminal(
        data=tmp_path / "terminal", snoop=tmp_path / "terminal.btsnoop", preconfigured=True
    ) as process:
        yield process


async def play_merchant_and_cardholder(control: str, *, tap: str | None) -> list[str]:
    """Through the terminal's control API: press the green key when the terminal shows a
    pairing code, tap card ``tap`` when it asks for the card (then stop watching). Returns
    the screens seen."""
    screens: list[str] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{control}/api/events") as events,
    ):
        async for message in events:
            data = json.loads(message.data)
            state = data.get("state")
            if not isinstance(state, dict):
                continue
            screens.append(" / ".join(state["screen"]))
            if state["awaiting_code_confirmation"]:
                async with session.post(f"{control}/api/key", json={"key": "green"}) as r:
                    assert r.status == 200, await r.text()
                if tap is None:
                    return screens
            if tap is not None and state["state"] == "waiting_for_card":
                body = {"card": tap, "mode": "tap"}
                async with session.post(f"{control}/api/card", json=body) as r:
                    assert r.status == 200, await r.text()
                return screens
    return screens


async def screen_shows(control: str, text: str) -> None:
    """Return once the terminal's screen (control API WebSocket) has a line ``text``."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{control}/api/events") as events,
    ):
        async for message in events:
            state = json.loads(message.data).get("state")
            if isinstance(state, dict) and text in state["screen"]:
                return


def unpaid_contactless_invoice(backend_url: str) -> str:
    invoices = get(f"{backend_url}/api/invoices")["invoices"]
    return next(
        str(i["number"])
        for i in invoices
        if i["status"] == "unpaid" and 0 < i["balance_due_cents"] <= 5000
    )


def test_an_app_process_pays_an_invoice_through_the_terminal_and_backend_processes(
    backend: BackendProcess, terminal: TerminalProcess, tmp_path: Path
) -> None:
    number = unpaid_contactless_invoice(backend.url)
    arguments = ["pay", "--invoice", number, "--transport", terminal.transport]
    arguments += ["--backend", backend.url, "--data", str(tmp_path / "phone"), "--confirm-codes"]
    with TpeSimProcess(["app", *arguments]) as app:
        screens = asyncio.run(
            asyncio.wait_for(
                play_merchant_and_cardholder(terminal.control_url, tap="visa"), FLOW_TIMEOUT
            )
        )
        assert app.wait(FLOW_TIMEOUT) == 0, app.output
    assert any("CODE " in screen for screen in screens)  # it paired by numeric comparison
    assert f"facture {number} payée" in app.output
    invoice = get(f"{backend.url}/api/invoices/{number}")
    assert invoice["status"] == "paid"
    assert invoice["balance_due_cents"] == 0
    assert "SIM0001" in {t["serial"] for t in get(f"{backend.url}/api/terminals")["terminals"]}

    # Ctrl-C: both stop cleanly and keep their data
    assert terminal.interrupt() == 0, terminal.output
    assert backend.interrupt() == 0, backend.output
    assert "ses données restent dans" in terminal.output
    bonds = json.loads((tmp_path / "terminal" / "bonds.json").read_text(encoding="utf-8"))
    assert bonds["SIM0001"], "the phone's bond was not kept"
    with start_backend(db=tmp_path / "backend.sqlite") as again:
        kept = get(f"{again.url}/api/invoices/{number}")
        assert kept["status"] == "paid"
        assert kept == invoice
        assert again.interrupt() == 0

    # the terminal's capture: btsnoop with the payment's ATT traffic, and no card number
    capture = (tmp_path / "terminal.btsnoop").read_bytes()
    messages = att_messages(capture)
    types = [m["type"] for m in messages]
    assert "PaymentRequest" in types
    assert "AuthorisationRequest" in types
    request = next(m for m in messages if m["type"] == "AuthorisationRequest")
    assert request["masked_pan"] == "************4242"
    assert request["card_data"]  # the sealed blob travels, opaque
    assert VISA_PAN.encode() not in capture
    assert bytes.fromhex(VISA_PAN) not in capture


def test_a_restarted_terminal_takes_the_same_card_again(
    backend: BackendProcess, tmp_path: Path
) -> None:
    """The review's replay: pay with visa, Ctrl-C the terminal, start it again on the same
    data folder, pay with visa again — approved, because the card's ATC went on (wallet.json)
    and the backend (which remembers the last ATC) sees no replay."""
    data = tmp_path / "terminal"
    for run in range(2):
        with start_terminal(data=data, preconfigured=True) as terminal:
            number = unpaid_contactless_invoice(backend.url)
            arguments = ["pay", "--invoice", number, "--transport", terminal.transport]
            arguments += ["--backend", backend.url, "--data", str(tmp_path / "phone")]
            arguments.append("--confirm-codes")
            with TpeSimProcess(["app", *arguments]) as app:
                asyncio.run(
                    asyncio.wait_for(
                        play_merchant_and_cardholder(terminal.control_url, tap="visa"),
                        FLOW_TIMEOUT,
                    )
                )
                assert app.wait(FLOW_TIMEOUT) == 0, (run, app.output)
            assert f"facture {number} payée" in app.output, (run, app.output)
            assert terminal.interrupt() == 0, terminal.output
    wallet = json.loads((data / "wallet.json").read_text(encoding="utf-8"))
    assert wallet["cards"]["visa"]["atc"] == 41 + 2  # the catalogue's 41, read twice


def test_bumble_gatt_dump_lists_the_device_information_and_battery(
    terminal: TerminalProcess,
) -> None:
    state = get(f"{terminal.control_url}/api/state")
    with TpeSimProcess(
        [terminal.transport, TERMINAL_ADDRESS], command=bumble_tool("bumble-gatt-dump")
    ) as dump:
        assert dump.wait(FLOW_TIMEOUT) == 0, dump.output
    values = attribute_values(dump.output)
    assert values["Manufacturer Name String"] == state["manufacturer"].encode()
    assert values["Model Number String"] == state["model"].encode()
    assert values["Serial Number String"] == b"SIM0001"
    assert values["Firmware Revision String"] == state["firmware"].encode()
    assert values["Battery Level"] == bytes([state["battery"]])
    assert values["Device Name"] == b"TPE-SIM0001"


def test_bumble_pair_pairs_by_numeric_comparison(terminal: TerminalProcess, tmp_path: Path) -> None:
    config = tmp_path / "bumble-pair.json"
    config.write_text(json.dumps({"name": "Bumble", "address": "F0:F1:F2:F3:F4:F5"}))
    with TpeSimProcess(
        ["--mode", "le", str(config), terminal.transport, TERMINAL_ADDRESS],
        command=bumble_tool("bumble-pair"),
        stdin=True,
    ) as pair:
        pair.send("yes\n")  # its user answers its "Does the other device display …?"
        screens = asyncio.run(
            asyncio.wait_for(
                play_merchant_and_cardholder(terminal.control_url, tap=None), FLOW_TIMEOUT
            )
        )
        pair.wait_for(r"Paired!", FLOW_TIMEOUT)
        pair.wait_for(r"ltk:", FLOW_TIMEOUT)
        # the LTK's flag comes first: MITM-protected, i.e. the numeric comparison happened
        assert pair.wait_for(r"authenticated: (\w+)", FLOW_TIMEOUT).group(1) == "True"
        code = pair.wait_for(r"Does the other device display (\d{6})", 1.0).group(1)
        # the terminal's side ends when it has stored the keys (APPAIRAGE RÉUSSI): only then
        # may the phone go, or its last key PDUs, and the bond, would be lost with the link
        asyncio.run(
            asyncio.wait_for(screen_shows(terminal.control_url, "APPAIRAGE RÉUSSI"), FLOW_TIMEOUT)
        )
    assert terminal.interrupt() == 0, terminal.output  # then the bond is on disk for sure
    bonds = json.loads((tmp_path / "terminal" / "bonds.json").read_text(encoding="utf-8"))
    assert len(bonds["SIM0001"]) == 1
    # the terminal showed the very code bumble-pair asked its user about
    assert any(f"CODE {code}" in screen for screen in screens), screens


# ---------------------------------------------------------------------------- helpers
def attribute_values(output: str) -> dict[str, bytes]:
    """bumble-gatt-dump's "All Attributes" section: attribute name → value read."""
    plain = [line for line in output.splitlines() if line.strip()]
    values: dict[str, bytes] = {}
    for line, following in itertools.pairwise(plain):
        if line.startswith("Attribute(") and "(" in line.split("type=", 1)[-1]:
            name = line.rsplit("(", 1)[-1].rstrip(")")
            try:
                values[name] = bytes.fromhex(following.strip())
            except ValueError:
                continue
    return values


def att_messages(capture: bytes) -> list[dict[str, Any]]:
    """The protocol messages of a capture (harness.captures), which must hold ATT traffic."""
    parsed = read_capture(capture)
    assert parsed.att_pdus > 0, "no ATT traffic in the capture"
    return [item.message for item in parsed.messages]
