"""The terminal's control API, driven over HTTP and WebSocket against a World (virtual time).

Each test builds its own world (the ``world`` fixture) and a :class:`ControlServer` on the
terminal's loop, and talks to it with aiohttp's test client; the app starts payments as the
technician would, the card and the PIN come from the API only.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient, TestServer

from harness.leaks import pan_leaks
from harness.rig import World, WorldConfig
from harness.scenarios.model import Known
from harness.standalone.control import CARD_LABELS, SEALED, ControlServer
from simulator.terminal import format_amount

Json = dict[str, Any]
#: loop seconds a WebSocket read may wait (virtual time: costs no wall time)
WS_WAIT = 30.0


@pytest.fixture
def world_config(world_config: WorldConfig) -> WorldConfig:
    """Configured at the factory: association without the minutes of first setup."""
    return dataclasses.replace(world_config, preconfigured=True)


class Api:
    """A synchronous face on aiohttp's test client, run on the world's loop. Every body it
    reads is kept in :attr:`outputs` for the PAN scan."""

    def __init__(self, world: World, server: ControlServer) -> None:
        self.world = world
        self.server = server
        self.client = world.run(self._start())
        self.outputs: list[str] = []

    async def _start(self) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(self.server.app))
        await client.start_server()
        return client

    def close(self) -> None:
        self.world.run(self.client.close())

    def get(self, path: str) -> tuple[int, Any]:
        return self.world.run(self._request("GET", path, None))

    def post(self, path: str, body: object = None, *, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        return self.world.run(self._request("POST", path, data))

    async def _request(self, method: str, path: str, data: bytes | None) -> tuple[int, Any]:
        async with self.client.request(method, path, data=data) as response:
            text = await response.text()
            self.outputs.append(text)
            return response.status, json.loads(text)

    def websocket(self) -> Events:
        ws = self.world.run(self.client.ws_connect("/api/events"))
        return Events(self.world, ws, self.outputs)


class Events:
    """The WebSocket's messages as they arrive (each kept for the PAN scan)."""

    def __init__(self, world: World, ws: ClientWebSocketResponse, outputs: list[str]) -> None:
        self.world = world
        self.ws = ws
        self.outputs = outputs
        self.received: list[Json] = []

    def until(self, predicate: Callable[[Json], bool], what: str) -> Json:
        """Read until a message matches ``predicate``; fail with what came instead."""
        for seen in self.received:
            if predicate(seen):
                return seen
        while True:
            msg = self.world.run(self.ws.receive(timeout=WS_WAIT))
            assert msg.type is WSMsgType.TEXT, f"waiting for {what}, the socket said {msg!r}"
            self.outputs.append(msg.data)
            message: Json = json.loads(msg.data)
            self.received.append(message)
            if predicate(message):
                return message

    def log(self) -> list[Json]:
        return [m for m in self.received if m["type"] == "message"]


@pytest.fixture
def server(world: World) -> ControlServer:
    return ControlServer(world.terminal, world.card, list(world.catalogue))


@pytest.fixture
def api(world: World, server: ControlServer) -> Iterator[Api]:
    client = Api(world, server)
    yield client
    client.close()


def no_pan(world: World, outputs: list[str]) -> None:
    leaks = pan_leaks(world, outputs)
    assert not leaks, leaks


# ---------------------------------------------------------------------- reading
def test_state_describes_the_terminal_and_its_links(world: World, api: Api) -> None:
    status, state = api.get("/api/state")
    assert status == 200
    profile = world.profile
    assert (state["name"], state["serial"], state["model"]) == (
        profile.name,
        profile.serial,
        profile.model,
    )
    assert state["firmware"] == world.terminal.engine.firmware
    assert state["state"] == "idle"
    assert state["screen"] == list(world.terminal.engine.screen.lines)
    assert state["battery"] == profile.battery
    assert state["links"] == []
    assert state["transaction"] is None
    assert state["awaiting_code_confirmation"] is False

    world.associate()
    _, state = api.get("/api/state")
    assert len(state["links"]) == 1
    assert state["links"][0]["encrypted"] is True


def test_cards_lists_the_catalogue_with_masked_numbers_only(world: World, api: Api) -> None:
    status, body = api.get("/api/cards")
    assert status == 200
    cards = {card["key"]: card for card in body["cards"]}
    assert list(cards) == list(world.catalogue)
    assert cards["visa"]["masked_pan"] == "************4242"
    assert cards["cb_visa"]["brands"] == ["CB", "VISA"]
    assert cards["wallet"]["wallet"] is True
    assert cards["sans_contact_desactive"]["contactless"] is False
    # French names for people, not keys
    assert cards["cb_visa"]["label"] == "CB + Visa (cobadgée)"
    assert cards["sans_contact_desactive"]["label"] == "Visa, sans contact désactivé"
    assert cards["wallet"]["label"] == "Téléphone (paiement mobile)"
    no_pan(world, api.outputs)


def test_every_catalogue_card_has_a_french_name(world: World) -> None:
    """A card added to fixtures/cards.yaml needs its name in CARD_LABELS."""
    assert set(CARD_LABELS) == set(world.catalogue)
    assert len(set(CARD_LABELS.values())) == len(CARD_LABELS)  # tell them apart
    assert all("_" not in label for label in CARD_LABELS.values())


def test_the_state_says_when_the_terminal_wants_the_chip(world: World, api: Api) -> None:
    world.associate()
    small = world.unpaid_invoice(at_most_cents=5000)
    assert small is not None
    world.start_payment(small)
    assert api.get("/api/state")[1]["transaction"]["chip_required"] is None
    api.post("/api/key", {"key": "red"})
    world.finish_payment()

    world.start_payment(big_invoice(world))  # above the contactless ceiling
    _, state = api.get("/api/state")
    assert state["screen"][1:] == ["INSÉREZ LA CARTE"]
    assert state["transaction"]["chip_required"] == "amount"
    api.post("/api/card", {"card": "wallet", "mode": "tap"})  # a phone still may
    assert world.finish_payment().result == "approved"
    _, state = api.get("/api/state")
    assert state["transaction"]["chip_required"] is None  # over


# ---------------------------------------------------------------------- payments
def test_a_tap_from_the_api_pays_the_invoice(world: World, api: Api) -> None:
    world.associate()
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    world.start_payment(number)
    _, state = api.get("/api/state")
    txn = state["transaction"]
    assert (txn["reference"], txn["amount"]) == (
        number,
        world.store.invoices[number].balance_due_cents,
    )
    assert state["state"] == "waiting_for_card"
    assert format_amount(txn["amount"]) in state["screen"]

    status, body = api.post("/api/card", {"card": "visa", "mode": "tap"})
    assert status == 200, body
    assert body["state"]["transaction"]["masked_pan"] == "************4242"

    outcome = world.finish_payment()
    assert outcome.result == "approved"
    assert outcome.invoice["status"] == "paid"
    assert world.store.invoices[number].status == "paid"
    no_pan(world, api.outputs)


def big_invoice(world: World) -> str:
    number = next(
        inv.number
        for inv in world.store.invoices.values()
        if inv.status == "unpaid" and 5000 < inv.balance_due_cents <= 100_000
    )
    return number


def test_an_inserted_card_and_its_pin_from_the_api_pay_the_invoice(world: World, api: Api) -> None:
    world.associate()
    number = big_invoice(world)
    world.start_payment(number)

    status, body = api.post("/api/card", {"card": "visa", "mode": "insert"})
    assert status == 200, body
    assert body["state"]["state"] == "pin_entry"
    status, body = api.post("/api/pin", {"pin": "1234"})
    assert status == 200, body

    outcome = world.finish_payment()
    assert (outcome.result, outcome.invoice["status"]) == ("approved", "paid")
    _, state = api.get("/api/state")
    assert state["transaction"]["card_in_reader"] is True
    status, body = api.post("/api/remove-card")
    assert status == 200, body
    assert body["state"]["transaction"]["card_in_reader"] is False
    no_pan(world, api.outputs)


def test_the_red_key_from_the_api_cancels_the_payment(world: World, api: Api) -> None:
    world.associate()
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    world.start_payment(number)
    status, _ = api.post("/api/key", {"key": "red"})
    assert status == 200
    outcome = world.finish_payment()
    assert outcome.result == "aborted"
    assert world.store.invoices[number].status == "unpaid"


# ---------------------------------------------------------------------- errors
def error(api: Api, path: str, body: object = None, *, raw: bytes | None = None) -> tuple[int, str]:
    status, answer = api.post(path, body, raw=raw)
    assert set(answer) >= {"error", "message"}, answer
    assert isinstance(answer["message"], str), answer
    assert answer["message"], answer
    return status, answer["error"]


BAD_INPUT = [
    ("/api/card", None, b"{not json", "invalid_json"),
    ("/api/card", [1, 2], None, "invalid_json"),
    ("/api/card", {"mode": "tap"}, None, "invalid_field"),
    ("/api/card", {"card": "inconnue", "mode": "tap"}, None, "unknown_card"),
    ("/api/card", {"card": "visa", "mode": "swipe"}, None, "invalid_mode"),
    ("/api/card", {"card": "visa", "mode": "tap", "brand": "AMEX"}, None, "unknown_brand"),
    ("/api/card", {"card": "wallet", "mode": "insert"}, None, "wallet_not_insertable"),
    ("/api/pin", {"pin": "12"}, None, "invalid_pin"),
    ("/api/pin", {"pin": 1234}, None, "invalid_pin"),
    ("/api/pin", {"pin": "12a4"}, None, "invalid_pin"),
    ("/api/key", {"key": "blue"}, None, "unknown_key"),
    ("/api/battery", {"level": 101}, None, "invalid_battery"),
    ("/api/battery", {"level": -1}, None, "invalid_battery"),
    ("/api/battery", {"level": "50"}, None, "invalid_battery"),
    ("/api/battery", {"level": True}, None, "invalid_battery"),
    ("/api/battery", None, b"", "invalid_json"),
]


def test_bad_input_is_a_400_that_changes_nothing(world: World, api: Api) -> None:
    world.associate()
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    world.start_payment(number)
    _, before = api.get("/api/state")
    for path, body, raw, code in BAD_INPUT:
        assert error(api, path, body, raw=raw) == (400, code), (path, body, raw)
    _, after = api.get("/api/state")
    assert after == before
    # the terminal still takes the card and pays
    assert api.post("/api/card", {"card": "visa", "mode": "tap"})[0] == 200
    assert world.finish_payment().invoice["status"] == "paid"


def test_actions_the_terminal_cannot_take_now_are_409(world: World, api: Api) -> None:
    _, before = api.get("/api/state")
    assert error(api, "/api/card", {"card": "visa", "mode": "tap"}) == (
        409,
        "not_waiting_for_card",
    )
    assert error(api, "/api/pin", {"pin": "1234"}) == (409, "not_waiting_for_pin")
    assert error(api, "/api/remove-card") == (409, "no_card_inserted")
    _, after = api.get("/api/state")
    assert after == before

    world.associate()  # and the terminal still works
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    world.start_payment(number)
    assert error(api, "/api/pin", {"pin": "1234"}) == (409, "not_waiting_for_pin")
    assert api.post("/api/card", {"card": "mastercard", "mode": "tap"})[0] == 200
    assert world.finish_payment().invoice["status"] == "paid"


def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    status, body = api.get("/api/nothing")
    assert (status, body["error"]) == (404, "not_found")
    status, body = api.get("/api/card")
    assert (status, body["error"]) == (405, "method_not_allowed")
    # the panel's files too; nothing outside its folder
    for path in ("/panel/nothing.js", "/nothing", "/panel/..%2Fcontrol.py"):
        status, body = api.get(path)
        assert (status, body["error"]) == (404, "not_found"), path
        assert body["message"], path
    huge = json.dumps({"script": "#" * (2 * 1024 * 1024)}).encode()
    assert error(api, "/api/scenario", raw=huge) == (413, "body_too_large")


SCRIPT = """\
name: code_faux_puis_bon
description: "Le porteur insère sa carte, se trompe de code, puis le tape juste."
flow:
  payment: {amount: "80,00 €"}
steps:
  - insert: visa
  - pin: "0000"
  - wait: 2
  - pin: "1234"
  - phone_offline: false
expect:
  result: approved
"""


def test_a_scenario_plays_the_cardholder_once_the_payment_starts(world: World, api: Api) -> None:
    world.associate()
    events = api.websocket()
    status, body = api.post("/api/scenario", {"script": SCRIPT})
    assert status == 202, body
    assert body["scenario"] == "code_faux_puis_bon"
    assert body["steps"] == ["insert", "pin", "wait", "pin"]
    assert body["skipped"] == ["phone_offline"]
    assert error(api, "/api/scenario", {"script": SCRIPT}) == (409, "scenario_running")

    number = big_invoice(world)
    payment = world.spawn(world.app.pay_invoice(number))  # loaded before: it waits for it
    world.run(world.wait_until(payment.done, "the payment to end", 300.0))
    outcome = payment.result()
    assert (outcome.result, outcome.invoice["status"]) == ("approved", "paid")
    assert outcome.receipt  # a chip payment with the PIN the script typed
    shown = [shot.lines for shot in world.terminal.engine.screen.history]
    assert any("CODE FAUX" in lines for lines in shown)  # the script's wrong PIN first
    finished = events.until(
        lambda m: m["type"] == "scenario" and m["status"] in ("finished", "failed"), "the end"
    )
    assert finished["status"] == "finished"
    steps = [m["action"] for m in events.received if m.get("status") == "step"]
    assert steps == ["insert", "pin", "wait", "pin"]


def test_a_scenario_step_the_terminal_refuses_stops_it(world: World, api: Api) -> None:
    events = api.websocket()
    script = SCRIPT.replace("  - insert: visa\n", "  - remove_card\n")
    assert api.post("/api/scenario", {"script": script})[0] == 202
    failed = events.until(lambda m: m["type"] == "scenario" and m["status"] != "started", "end")
    assert (failed["status"], failed["step"], failed["action"]) == ("failed", 1, "remove_card")
    assert failed["message"] == "Aucune carte n'est insérée dans le terminal."
    assert world.terminal.engine.state.value == "idle"


def test_an_invalid_scenario_is_a_400_that_says_where(api: Api) -> None:
    status, body = api.post("/api/scenario", {"script": SCRIPT.replace("visa", "vsia")})
    assert (status, body["error"]) == (400, "invalid_scenario")
    assert body["message"] == (
        "Scénario invalide, ligne 6, champ steps[0].insert : carte inconnue du catalogue."
    )
    assert "unknown card 'vsia'" in body["reason"]  # the loader's own words, for developers
    status, body = api.post("/api/scenario", {"script": "name: [unclosed\n"})
    assert (status, body["error"]) == (400, "invalid_scenario")
    assert body["message"].startswith("Scénario invalide, ligne ")
    assert body["message"].endswith(" : YAML illisible.")
    assert "not valid YAML" in body["reason"]
    no_flow = SCRIPT.replace('flow:\n  payment: {amount: "80,00 €"}\n', "")
    status, body = api.post("/api/scenario", {"script": no_flow})
    assert (status, body["error"]) == (400, "invalid_scenario")
    assert body["message"] == "Scénario invalide, ligne 1 : champ obligatoire absent : flow."
    assert "missing 'flow'" in body["reason"]
    assert error(api, "/api/scenario", {"texte": SCRIPT}) == (400, "invalid_field")


def test_scripts_are_checked_against_the_names_the_server_was_given(world: World) -> None:
    """The standalone terminal passes its own fixtures' cards and profiles: a script naming a
    profile of the repository's terminals.yaml that those fixtures lack is refused."""
    known = Known.of(world.catalogue, ["atelier"])
    server = ControlServer(world.terminal, world.card, list(world.catalogue), known=known)
    api = Api(world, server)
    try:
        script = SCRIPT.replace("flow:", "world: {terminal: standard}\nflow:")
        status, body = api.post("/api/scenario", {"script": script})
        assert (status, body["error"]) == (400, "invalid_scenario"), body
        assert "'standard'" in body["reason"]
        assert "atelier" in body["reason"]
    finally:
        api.close()


# ---------------------------------------------------------------------- battery and link
def test_battery_level_is_set_and_pushed(world: World, api: Api) -> None:
    events = api.websocket()
    events.until(lambda m: m["type"] == "hello", "the first snapshot")
    status, body = api.post("/api/battery", {"level": 12})
    assert (status, body["state"]["battery"]) == (200, 12)
    assert world.terminal.engine.battery == 12
    events.until(lambda m: m["type"] == "state" and m["state"]["battery"] == 12, "battery 12")


def terminal_powered(world: World) -> bool:
    """(A call: mypy does not narrow it across the requests that switch it.)"""
    return world.terminal.powered


def test_an_empty_battery_switches_the_terminal_off_until_it_is_switched_on(
    world: World, api: Api
) -> None:
    world.associate()
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    world.start_payment(number)
    events = api.websocket()
    _, state = api.get("/api/state")
    assert (state["powered"], state["state_label"]) == (True, "Attente de la carte")

    assert api.post("/api/battery", {"level": 0})[0] == 200
    world.run(world.wait_until(lambda: not world.terminal.powered, "power-off", 10))
    _, state = api.get("/api/state")
    assert (state["powered"], state["state_label"], state["battery"]) == (False, "Éteint", 0)
    events.until(lambda m: m["type"] == "state" and m["state"]["powered"] is False, "off")
    off = events.until(lambda m: m["type"] == "power", "the log's power line")
    assert (off["powered"], off["text"]) == (False, "Terminal éteint (batterie vide)")
    _, before = api.get("/api/state")
    for path, body in [
        ("/api/card", {"card": "visa", "mode": "tap"}),
        ("/api/pin", {"pin": "1234"}),
        ("/api/key", {"key": "red"}),
        ("/api/key", {"key": "green"}),
        ("/api/remove-card", None),
    ]:
        status, answer = api.post(path, body)
        assert (status, answer["error"]) == (409, "switched_off"), (path, answer)
        assert answer["message"] == "Le terminal est éteint : rechargez-le et rallumez-le."
    assert api.get("/api/state")[1] == before  # nothing changed

    status, answer = api.post("/api/power", {"on": True})
    assert (status, answer["error"]) == (409, "battery_empty")
    assert "rechargez" in answer["message"]
    assert error(api, "/api/power", {"on": False}) == (400, "invalid_power")
    assert error(api, "/api/power", {"on": True, "battery": 101}) == (400, "invalid_battery")
    assert error(api, "/api/power", {"on": True, "battery": 0}) == (409, "battery_empty")

    status, answer = api.post("/api/battery", {"level": 30})  # charging alone: still off
    assert (status, answer["state"]["powered"], answer["state"]["battery"]) == (200, False, 30)
    assert not terminal_powered(world)

    status, answer = api.post("/api/power", {"on": True, "battery": 80})
    assert status == 200, answer
    assert (answer["state"]["powered"], answer["state"]["battery"]) == (True, 80)
    assert answer["state"]["state_label"] != "Éteint"
    assert terminal_powered(world)
    events.until(lambda m: m["type"] == "state" and m["state"]["powered"] is True, "back on")
    on = events.until(lambda m: m["type"] == "power" and m["powered"], "the log's power line")
    assert on["text"] == "Terminal rallumé"
    assert on["seq"] > off["seq"]
    late = api.websocket()  # a panel that connects now sees both lines in its backlog
    hello = late.until(lambda m: m["type"] == "hello", "the first snapshot")
    power_lines = [entry["text"] for entry in hello["log"] if entry["type"] == "power"]
    assert power_lines == ["Terminal éteint (batterie vide)", "Terminal rallumé"]
    assert api.post("/api/power", {"on": True})[0] == 200  # already on: nothing to do

    interrupted = world.finish_payment()  # the payment under way died with the power
    assert (interrupted.result, interrupted.invoice["status"]) == ("aborted", "unpaid")
    world.start_payment(number)  # the app reconnects; the customer pays from the panel
    assert api.post("/api/card", {"card": "visa", "mode": "tap"})[0] == 200
    assert world.finish_payment().invoice["status"] == "paid"


def test_a_switch_on_that_fails_leaves_the_battery_as_it_was(
    world: World, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.post("/api/battery", {"level": 0})[0] == 200
    world.run(world.wait_until(lambda: not world.terminal.powered, "power-off", 10))
    start = world.terminal.start

    async def controller_gone() -> None:
        raise OSError("the controller went away")

    monkeypatch.setattr(world.terminal, "start", controller_gone)
    _, before = api.get("/api/state")
    status, answer = api.post("/api/power", {"on": True, "battery": 80})
    assert (status, answer["error"]) == (500, "internal_error")
    assert answer["message"] == "Erreur interne du simulateur — voir le journal du terminal."
    assert (world.terminal.engine.battery, terminal_powered(world)) == (0, False)
    assert api.get("/api/state")[1] == before  # not charged: nothing changed

    monkeypatch.setattr(world.terminal, "start", start)  # the controller is back
    status, answer = api.post("/api/power", {"on": True, "battery": 80})
    assert (status, answer["state"]["powered"], answer["state"]["battery"]) == (200, True, 80)


def test_a_bug_is_a_500_that_points_to_the_terminal_log(
    api: Api, server: ControlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> Json:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server, "state", broken)
    status, body = api.get("/api/state")
    assert (status, body["error"]) == (500, "internal_error")
    assert body["message"] == "Erreur interne du simulateur — voir le journal du terminal."


def test_dropping_the_link_disconnects_the_phone(world: World, api: Api) -> None:
    world.associate()
    assert world.terminal.connected_phones == 1
    events = api.websocket()
    events.until(lambda m: m["type"] == "hello" and len(m["state"]["links"]) == 1, "the link")

    status, body = api.post("/api/link/drop")
    assert (status, body["dropped"]) == (200, 1)
    events.until(lambda m: m["type"] == "state" and m["state"]["links"] == [], "no link left")
    assert world.terminal.connected_phones == 0
    _, state = api.get("/api/state")
    assert state["links"] == []


# ---------------------------------------------------------------------- live events
def test_the_websocket_pushes_the_screen_and_the_protocol_log(world: World, api: Api) -> None:
    world.associate()
    events = api.websocket()
    hello = events.until(lambda m: m["type"] == "hello", "the first snapshot")
    assert hello["state"]["state"] == "idle"
    assert any(e["message"]["type"] == "DiagnosisRequest" for e in hello["log"])  # backlog
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    amount = format_amount(world.store.invoices[number].balance_due_cents)

    world.start_payment(number)
    events.until(
        lambda m: m["type"] == "state" and amount in m["state"]["screen"], "the amount on screen"
    )
    api.post("/api/card", {"card": "visa", "mode": "tap"})
    world.finish_payment()
    events.until(
        lambda m: m["type"] == "state" and "PAIEMENT ACCEPTÉ" in m["state"]["screen"],
        "the approval on screen",
    )
    events.until(
        lambda m: m["type"] == "message" and m["message"]["type"] == "PaymentResponse",
        "the payment's result in the log",
    )
    log = [(e["direction"], e["message"]["type"]) for e in events.log()]
    for expected in [
        ("in", "PaymentRequest"),
        ("out", "CommandAccepted"),
        ("out", "AuthorisationRequest"),
        ("in", "AuthorisationResponse"),
        ("out", "PaymentResponse"),
    ]:
        assert expected in log
    sent = [e["message"] for e in events.log() if e["message"]["type"] == "AuthorisationRequest"]
    for entry in events.received:  # a wall-clock time for people, next to the loop time
        assert abs(entry["wall"] - time.time()) < 600, entry
    sealed = sent[0]["card_data"]
    assert sealed["contenu"] == SEALED
    assert "ciphertext" not in sealed
    assert "nonce" not in sealed
    assert sent[0]["masked_pan"] == "************4242"
    request = next(e for e in events.log() if e["message"]["type"] == "PaymentRequest")
    assert (
        request["message"]["transaction_id"]
        == world.store.invoices[number].payments[-1].transaction_id
    )
    no_pan(world, api.outputs)


def test_the_pan_scan_sees_a_full_number_in_the_outputs(world: World) -> None:
    """The check the tests above rely on does catch a leak in what they collect."""
    assert pan_leaks(world, ['{"pan": "4242 4242 4242 4242"}']) == ["PAN of card 'visa' in log"]


# ---------------------------------------------------------------------- serving
def test_the_server_listens_serves_the_panel_and_detaches_on_stop(
    world: World, server: ControlServer
) -> None:
    async def visit() -> tuple[str, str, str, Json]:
        await server.start()
        async with ClientSession(server.url) as session:
            async with session.get("/") as page:
                html = await page.text()
            async with session.get("/panel/panel.js") as script:
                js = await script.text()
            async with session.get("/panel/panel.css") as style:
                css = await style.text()
            async with session.get("/api/state") as state:
                snapshot: Json = await state.json()
        await server.stop()
        return html, js, css, snapshot

    html, js, css, snapshot = world.run(visit())
    assert server.url.startswith("http://127.0.0.1:")
    assert 'data-testid="screen"' in html
    assert "/panel/panel.js" in html
    assert "/api/events" in js
    assert ".screen" in css
    assert snapshot["serial"] == world.profile.serial
    assert server._changed not in world.terminal.listeners
    assert server._on_message not in world.terminal.message_hooks
    world.run(server.stop())  # idempotent
