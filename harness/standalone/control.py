"""The terminal's control API (HTTP + WebSocket) and its web control panel.

:class:`ControlServer` drives one :class:`~simulator.ble.BleTerminal` the way a cardholder
or a QA engineer would: present a card of the catalogue (tap or insert), type the PIN, press
the keys, pull the card out, set the battery, switch it back on once its battery ran out, cut
the Bluetooth links. It runs on the
terminal's own event loop (aiohttp, 127.0.0.1 and a free port by default) and serves the
panel (``harness/standalone/panel/``) at ``/``. ``docs/control-api.md`` documents every route.

What it sends out never holds a full card number: the catalogue lists masked PANs, the state
shows the transaction's masked PAN, and the live message log replaces the sealed card data
with a placeholder. Bad input is answered ``400`` (or ``409`` when the terminal cannot do it
now) with ``{"error": code, "message": French text}`` and leaves the terminal as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.typedefs import Handler

from harness.scenarios.model import (
    Action,
    DropLink,
    EnterPin,
    Insert,
    Known,
    PressKey,
    RemoveCard,
    Scenario,
    ScenarioError,
    SetBattery,
    Tap,
    Wait,
    loads,
)
from simulator.ble import BleTerminal
from simulator.cards import EntryMode, VirtualCard
from simulator.protocol.carddata import mask_pan
from simulator.protocol.messages import Command, Event, encode
from simulator.terminal import (
    CONTACTLESS_CEILING,
    State,
    TerminalError,
    Transaction,
    load_profiles,
)

log = logging.getLogger(__name__)

PANEL_DIR = Path(__file__).resolve().parent / "panel"
#: Protocol messages kept for a panel that connects late (its first screenful of log).
LOG_BACKLOG = 200
#: Messages queued for one WebSocket client before it is deemed stuck and disconnected (a
#: browser reconnects and gets a fresh snapshot): the terminal never waits for a slow client.
CLIENT_QUEUE = 1000
PIN_FORMAT = re.compile(r"[0-9]{4,12}")
#: A field the scenario loader says is missing: « missing 'flow' », « a 'delay' needs 'seconds' ».
MISSING_FIELD = re.compile(r"(?:missing|needs) '([A-Za-z_]+)'")
MODES = {"tap": EntryMode.CONTACTLESS, "insert": EntryMode.CHIP}
KEYS = ("green", "red")
STATE_LABELS = {
    "idle": "Au repos",
    "setup": "Configuration",
    "waiting_for_card": "Attente de la carte",
    "pin_entry": "Saisie du code",
    "authorising": "Autorisation en cours",
    "approved": "Accepté",
    "declined": "Refusé",
    "aborted": "Annulé",
}
#: The badge of a terminal whose battery ran out (whatever state the engine was left in).
OFF_LABEL = "Éteint"
SWITCHED_OFF = "Le terminal est éteint : rechargez-le et rallumez-le."
#: A 500's message: the traceback is in the terminal process's log (stderr).
INTERNAL_ERROR = "Erreur interne du simulateur — voir le journal du terminal."
SEALED = "[scellées pour le processeur]"
#: The message log's lines when the terminal switches off or on (not protocol messages).
POWER_OFF_EMPTY = "Terminal éteint (batterie vide)"
POWER_OFF = "Terminal éteint"
POWER_ON = "Terminal rallumé"
#: The wallet's names of the catalogue's cards (``fixtures/cards.yaml``); a card of another
#: catalogue without one here is shown by its key.
CARD_LABELS = {
    "visa": "Visa",
    "mastercard": "Mastercard",
    "cb_visa": "CB + Visa (cobadgée)",
    "cb_mastercard": "CB + Mastercard (cobadgée)",
    "amex": "American Express",
    "wallet": "Téléphone (paiement mobile)",
    "offline_pin": "Visa, code vérifié par la puce",
    "online_pin": "Visa, code vérifié par la banque",
    "sans_contact_desactive": "Visa, sans contact désactivé",
    "expiree": "Visa expirée",
    "pin_bloque": "Visa, code bloqué",
    "perdue": "Visa déclarée perdue",
    "volee": "Visa déclarée volée",
    "visa_refusee": "Visa refusée par la banque",
    "provision_insuffisante": "Visa, provision insuffisante",
    "erreur_systeme": "Visa, erreur du système de la banque",
    "banque_indisponible": "Visa, banque injoignable",
    "non_autorisee": "Visa, opération non autorisée",
    "restreinte": "Visa à usage restreint",
    "plafond": "Visa, plafond de 30 € par paiement",
    "visa_sca": "Visa, code exigé dès le 2ᵉ sans contact (DSP2)",
    "mastercard_sca": "Mastercard, code exigé au-delà de 30 € cumulés (DSP2)",
    "carte_test_centimes": "Visa de test : réponse selon les centimes",
    "refus_puce": "Visa refusée par la puce",
    "jcb_non_supportee": "JCB (marque non acceptée)",
}
#: Loop seconds a scenario step waits for the terminal to be ready for it (a tap waits for
#: the terminal to ask for a card: the technician may start the payment after loading).
STEP_WAIT = 300.0
#: Steps of a script the control server plays: the cardholder's and the terminal's own.
PLAYED = (Tap, Insert, EnterPin, PressKey, RemoveCard, Wait, DropLink, SetBattery)
STEP_NAMES = {
    "Tap": "tap",
    "Insert": "insert",
    "EnterPin": "pin",
    "PressKey": "key",
    "RemoveCard": "remove_card",
    "Wait": "wait",
    "DropLink": "drop_link",
    "SetBattery": "battery",
    "CancelFromApp": "cancel",
    "PayAgain": "pay_again",
    "OutOfRange": "out_of_range",
    "Reboot": "reboot",
    "BackendFault": "backend",
    "PhoneOffline": "phone_offline",
}

Json = dict[str, Any]


class ControlError(Exception):
    """A request the control API refuses: HTTP status, error code, French message."""

    def __init__(self, status: int, code: str, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason  # English, for developers (the engine's own words)

    def body(self) -> Json:
        body: Json = {"error": self.code, "message": self.message}
        if self.reason:
            body["reason"] = self.reason
        return body


class ControlServer:
    """HTTP + WebSocket control of one virtual terminal, and the panel that uses it."""

    def __init__(
        self,
        terminal: BleTerminal,
        card: Callable[[str], VirtualCard],
        card_keys: list[str],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        known: Known | None = None,
    ) -> None:
        """``card(key)``: the cardholder's card ``key`` (the same object every time, so that
        its counters move on); ``card_keys``: the catalogue keys the wallet offers;
        ``known``: the cards and terminal profiles scenario scripts may name (default: the
        cards offered and the repository's ``fixtures/terminals.yaml``, read once)."""
        self.terminal = terminal
        self._card = card
        self.card_keys = list(card_keys)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._clients: set[_Client] = set()
        self._backlog: deque[Json] = deque(maxlen=LOG_BACKLOG)
        self._seq = 0
        self._last_state: Json | None = None
        self._publish_pending = False
        self._watched: set[int] = set()  # connection handles whose disconnection we follow
        self._powered = terminal.powered  # as last logged (a change adds a log line)
        self._known_names = known
        self._moved = asyncio.Event()  # set on every change of the terminal
        self._scenario: asyncio.Task[None] | None = None
        self.app = web.Application(middlewares=[_json_errors])
        routes = self.app.router
        routes.add_get("/", self._index)
        routes.add_get("/panel/{name}", self._panel_file)
        routes.add_get("/api/state", self._get_state)
        routes.add_get("/api/cards", self._get_cards)
        routes.add_post("/api/card", self._post_card)
        routes.add_post("/api/pin", self._post_pin)
        routes.add_post("/api/key", self._post_key)
        routes.add_post("/api/remove-card", self._post_remove_card)
        routes.add_post("/api/battery", self._post_battery)
        routes.add_post("/api/power", self._post_power)
        routes.add_post("/api/link/drop", self._post_link_drop)
        routes.add_post("/api/scenario", self._post_scenario)
        routes.add_get("/api/events", self._events)
        self.app.on_startup.append(self._attach)
        self.app.on_shutdown.append(self._detach)

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Listen (on the running loop, which must be the terminal's)."""
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}"
        log.info("control API and panel on %s", self._url)

    async def stop(self) -> None:
        """Close every WebSocket and stop listening (idempotent)."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the control server is not started")
        return self._url

    async def _attach(self, _app: web.Application) -> None:
        self._powered = self.terminal.powered
        self.terminal.listeners.append(self._changed)
        self.terminal.message_hooks.append(self._on_message)
        self.terminal.device.on(self.terminal.device.EVENT_CONNECTION, self._on_connection)
        for connection in self.terminal.device.connections.values():
            self._on_connection(connection)

    async def _detach(self, _app: web.Application) -> None:
        if self._scenario is not None and not self._scenario.done():
            self._scenario.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scenario
        with contextlib.suppress(ValueError):
            self.terminal.listeners.remove(self._changed)
        with contextlib.suppress(ValueError):
            self.terminal.message_hooks.remove(self._on_message)
        self.terminal.device.remove_listener(
            self.terminal.device.EVENT_CONNECTION, self._on_connection
        )
        for client in list(self._clients):
            await client.ws.close(code=1001, message=b"arret du terminal")

    # ---------------------------------------------------------------- what is seen
    def state(self) -> Json:
        """The snapshot ``GET /api/state`` answers and the WebSocket pushes on change."""
        terminal = self.terminal
        engine = terminal.engine
        profile = engine.profile
        txn = engine.current
        powered = terminal.powered
        label = STATE_LABELS.get(engine.state.value, engine.state.value)
        return {
            "name": profile.name,
            "serial": profile.serial,
            "model": profile.model,
            "manufacturer": profile.manufacturer,
            "firmware": engine.firmware,
            "configured": engine.configured,
            "powered": powered,
            "state": engine.state.value,
            "state_label": label if powered else OFF_LABEL,
            "screen": list(engine.screen.lines),
            "battery": engine.battery,
            "links": [
                {"address": str(connection.peer_address), "encrypted": bool(connection.encryption)}
                for connection in terminal.device.connections.values()
            ],
            "awaiting_code_confirmation": terminal.awaiting_code_confirmation,
            "transaction": None if txn is None else _transaction(txn),
        }

    def cards(self) -> list[Json]:
        """The wallet: every catalogue card the server offers, PAN masked."""
        listing = []
        for key in self.card_keys:
            profile = self._card(key).profile
            listing.append(
                {
                    "key": key,
                    "label": CARD_LABELS.get(key, f"Carte « {key} »"),
                    "brand": profile.brand,
                    "brands": list(dict.fromkeys(app.brand for app in profile.applications)),
                    "masked_pan": mask_pan(profile.pan),
                    "holder": profile.holder,
                    "contactless": profile.contactless,
                    "wallet": profile.wallet,
                    "cvm": "cdcvm" if profile.wallet else profile.cvm,
                    "pin": profile.pin,  # test cards: the cardholder must know what to type
                }
            )
        return listing

    # ---------------------------------------------------------------- change notifications
    def _changed(self) -> None:
        """Terminal listener: publish a new snapshot soon (many changes coalesce into one)."""
        self._moved.set()
        if self.terminal.powered != self._powered:
            self._powered = self.terminal.powered
            self._log_power()
        if not self._publish_pending:
            self._publish_pending = True
            asyncio.get_running_loop().call_soon(self._publish_state)

    def _publish_state(self) -> None:
        self._publish_pending = False
        snapshot = self.state()
        if snapshot == self._last_state:
            return
        self._last_state = snapshot
        self._broadcast({"type": "state", "wall": _wall(), "state": snapshot})

    def _on_connection(self, connection: Any) -> None:
        if connection.handle not in self._watched:
            self._watched.add(connection.handle)

            def on_disconnection(_reason: int) -> None:
                self._watched.discard(connection.handle)
                self._changed()

            connection.on(connection.EVENT_DISCONNECTION, on_disconnection)
        self._changed()

    async def _on_message(self, point: str, message: Command | Event) -> None:
        """Terminal message hook: commands as received, events once sent."""
        if point not in ("received", "sent"):
            return
        self._seq += 1
        entry: Json = {
            "type": "message",
            "seq": self._seq,
            "at": round(asyncio.get_running_loop().time(), 3),
            "wall": _wall(),
            "direction": "in" if point == "received" else "out",
            "message": safe_message(message),
        }
        self._backlog.append(entry)
        self._broadcast(entry)
        self._changed()

    def _log_power(self) -> None:
        """A line of the message log: the terminal switched off (or on again)."""
        if self._powered:
            text = POWER_ON
        else:
            text = POWER_OFF_EMPTY if self.terminal.engine.battery == 0 else POWER_OFF
        self._seq += 1
        entry: Json = {
            "type": "power",
            "seq": self._seq,
            "at": round(asyncio.get_running_loop().time(), 3),
            "wall": _wall(),
            "powered": self._powered,
            "text": text,
        }
        self._backlog.append(entry)
        self._broadcast(entry)

    def _broadcast(self, payload: Json) -> None:
        for client in list(self._clients):
            try:
                client.queue.put_nowait(payload)
            except asyncio.QueueFull:
                log.warning("control client too slow: disconnected")
                self._clients.discard(client)
                client.sender.cancel()

    # ---------------------------------------------------------------- routes
    async def _index(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(PANEL_DIR / "index.html", headers={"Cache-Control": "no-store"})

    async def _panel_file(self, request: web.Request) -> web.FileResponse:
        """A file of the panel's folder (one path segment: nothing outside it); a missing
        one is a JSON 404, raised here (aiohttp's static files answer theirs in plain text)."""
        name = request.match_info["name"]
        path = PANEL_DIR / name
        if name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "no-store"})

    async def _get_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _get_cards(self, _request: web.Request) -> web.Response:
        return web.json_response({"cards": self.cards()})

    async def _post_card(self, request: web.Request) -> web.Response:
        body = await _body(request)
        key = _field(body, "card", str)
        if key not in self.card_keys:
            raise ControlError(400, "unknown_card", f"Carte inconnue du catalogue : {key}.")
        mode = _field(body, "mode", str)
        if mode not in MODES:
            raise ControlError(
                400, "invalid_mode", "Mode de présentation inconnu : « tap » ou « insert »."
            )
        brand = body.get("brand")
        card = self._card(key)
        if brand is not None:
            brands = {app.brand for app in card.profile.applications}
            if not isinstance(brand, str) or brand.upper() not in brands:
                raise ControlError(
                    400,
                    "unknown_brand",
                    f"Cette carte ne porte pas la marque {brand} "
                    f"(marques : {', '.join(sorted(brands))}).",
                )
            brand = brand.upper()
        if mode == "insert" and card.profile.wallet:
            raise ControlError(
                400,
                "wallet_not_insertable",
                "Un téléphone (portefeuille mobile) ne s'insère pas : présentez-le sans contact.",
            )
        self._require_power()
        try:
            self.terminal.present_card(card, MODES[mode], brand)
        except TerminalError as exc:
            raise ControlError(
                409, "not_waiting_for_card", self._cannot("n'attend pas de carte"), str(exc)
            ) from None
        return self._done()

    async def _post_pin(self, request: web.Request) -> web.Response:
        body = await _body(request)
        pin = body.get("pin")
        if not isinstance(pin, str) or not PIN_FORMAT.fullmatch(pin):
            raise ControlError(400, "invalid_pin", "Le code doit compter de 4 à 12 chiffres.")
        self._require_power()
        try:
            self.terminal.enter_pin(pin)
        except TerminalError as exc:
            raise ControlError(
                409, "not_waiting_for_pin", self._cannot("ne demande pas de code"), str(exc)
            ) from None
        return self._done()

    async def _post_key(self, request: web.Request) -> web.Response:
        body = await _body(request)
        key = body.get("key")
        if key not in KEYS:
            raise ControlError(400, "unknown_key", "Touche inconnue : « green » ou « red ».")
        self._require_power()
        self.terminal.press_key(str(key))
        return self._done()

    async def _post_remove_card(self, _request: web.Request) -> web.Response:
        self._remove_card()
        return self._done()

    def _require_power(self) -> None:
        """A switched-off terminal takes no card, no PIN, no key: 409 ``switched_off``."""
        if not self.terminal.powered:
            raise ControlError(409, "switched_off", SWITCHED_OFF, "the terminal is switched off")

    def _remove_card(self) -> None:
        self._require_power()
        try:
            self.terminal.remove_card()
        except TerminalError as exc:
            raise ControlError(
                409,
                "no_card_inserted",
                "Aucune carte n'est insérée dans le terminal.",
                str(exc),
            ) from None

    async def _post_battery(self, request: web.Request) -> web.Response:
        body = await _body(request)
        self.terminal.set_battery(_battery(body.get("level")))
        return self._done()

    async def _post_power(self, request: web.Request) -> web.Response:
        """Switch the terminal back on, charged to ``battery`` first if given; a switch-on
        that fails leaves the battery as it was."""
        body = await _body(request)
        if body.get("on") is not True:
            raise ControlError(
                400,
                "invalid_power",
                'Seul {"on": true} est possible : le terminal s\'éteint de lui-même quand sa '
                "batterie est vide.",
            )
        level = None if body.get("battery") is None else _battery(body["battery"])
        if (level if level is not None else self.terminal.engine.battery) == 0:
            raise ControlError(
                409,
                "battery_empty",
                "La batterie est vide : rechargez le terminal avant de le rallumer.",
                "the battery is empty",
            )
        terminal = self.terminal
        previous = terminal.engine.battery
        if level is not None:
            terminal.set_battery(level)
        try:
            await terminal.power_on()
        except Exception as exc:
            if level is not None and not terminal.powered:
                terminal.set_battery(previous)  # charged for nothing: as it was
            if not isinstance(exc, TerminalError):
                raise  # a 500: the traceback goes to the terminal's log
            raise ControlError(
                409,
                "battery_empty",
                "La batterie est vide : rechargez le terminal avant de le rallumer.",
                str(exc),
            ) from None
        return self._done()

    async def _post_link_drop(self, _request: web.Request) -> web.Response:
        dropped = await self.terminal.drop_links()
        return self._done(dropped=dropped)

    async def _post_scenario(self, request: web.Request) -> web.Response:
        body = await _body(request)
        text = _field(body, "script", str)
        try:
            scenario = loads(text, "<script>", self._known())
        except ScenarioError as exc:
            where = f", ligne {exc.line}" if exc.line else ""
            where += f", champ {exc.field}" if exc.field else ""
            raise ControlError(
                400,
                "invalid_scenario",
                f"Scénario invalide{where} : {_scenario_problem(exc.problem)}.",
                str(exc),
            ) from None
        if self._scenario is not None and not self._scenario.done():
            raise ControlError(
                409, "scenario_running", "Un scénario est déjà en cours sur ce terminal."
            )
        played: list[Action] = [step for step in scenario.steps if isinstance(step, PLAYED)]
        skipped = [_step_name(step) for step in scenario.steps if not isinstance(step, PLAYED)]
        self._scenario = asyncio.get_running_loop().create_task(self._play(scenario, played))
        return web.json_response(
            {
                "scenario": scenario.name,
                "steps": [_step_name(step) for step in played],
                "skipped": skipped,
                "state": self.state(),
            },
            status=202,
        )

    def _known(self) -> Known:
        if self._known_names is None:  # no names given: the cards offered, the repository's
            from harness.fixtures import fixtures_dir

            cards = {
                key: tuple(app.brand for app in self._card(key).profile.applications)
                for key in self.card_keys
            }
            try:
                terminals = tuple(load_profiles(fixtures_dir() / "terminals.yaml"))
            except (OSError, ValueError):  # no profiles at hand: a script may name none
                terminals = ()
            self._known_names = Known(cards, terminals)
        return self._known_names

    async def _play(self, scenario: Scenario, steps: list[Action]) -> None:
        """Play the cardholder's steps in order, each once the terminal is ready for it."""
        self._broadcast({"type": "scenario", "name": scenario.name, "status": "started"})
        for number, step in enumerate(steps, 1):
            name = _step_name(step)
            try:
                await self._play_step(step)
            except (ControlError, TerminalError, ValueError) as exc:
                log.warning("scenario %s: step %d (%s): %s", scenario.name, number, name, exc)
                refused = f"Le terminal a refusé l'étape « {name} »."
                self._broadcast(
                    {
                        "type": "scenario",
                        "name": scenario.name,
                        "status": "failed",
                        "step": number,
                        "action": name,
                        "message": exc.message if isinstance(exc, ControlError) else refused,
                        "reason": str(exc),
                    }
                )
                return
            self._broadcast(
                {
                    "type": "scenario",
                    "name": scenario.name,
                    "status": "step",
                    "step": number,
                    "action": name,
                }
            )
        self._broadcast({"type": "scenario", "name": scenario.name, "status": "finished"})

    async def _play_step(self, step: Action) -> None:
        terminal = self.terminal
        engine = terminal.engine
        if isinstance(step, Tap | Insert):
            await self._until(
                lambda: engine.state is State.WAITING_FOR_CARD,
                "Le terminal n'a pas demandé de carte à temps.",
            )
            mode = EntryMode.CONTACTLESS if isinstance(step, Tap) else EntryMode.CHIP
            self._require_power()
            terminal.present_card(self._card(step.card), mode, step.brand)
        elif isinstance(step, EnterPin):
            await self._until(
                lambda: engine.state is State.PIN_ENTRY,
                "Le terminal n'a pas demandé le code à temps.",
            )
            self._require_power()
            terminal.enter_pin(step.pin)
        elif isinstance(step, RemoveCard):
            self._remove_card()
        elif isinstance(step, PressKey):
            self._require_power()
            terminal.press_key(step.key)
        elif isinstance(step, Wait):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, DropLink):
            await terminal.drop_links()
        elif isinstance(step, SetBattery):
            terminal.set_battery(step.level)
        self._changed()

    async def _until(self, ready: Callable[[], bool], too_late: str) -> None:
        """Wait (loop time, at most :data:`STEP_WAIT`) until ``ready()``; ``too_late`` says
        what did not happen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP_WAIT
        while not ready():
            self._moved.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ControlError(409, "scenario_timeout", too_late)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), remaining)

    def _done(self, **extra: Any) -> web.Response:
        self._changed()
        return web.json_response({**extra, "state": self.state()})

    def _cannot(self, what: str) -> str:
        label = STATE_LABELS.get(self.terminal.engine.state.value, "")
        return f"Le terminal {what} (état : {label.lower()})."

    # ---------------------------------------------------------------- WebSocket
    async def _events(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        queue: asyncio.Queue[Json] = asyncio.Queue(CLIENT_QUEUE)
        queue.put_nowait(
            {"type": "hello", "wall": _wall(), "state": self.state(), "log": list(self._backlog)}
        )
        client = _Client(ws, queue, asyncio.get_running_loop().create_task(_pump(ws, queue)))
        self._clients.add(client)
        try:
            async for msg in ws:  # the panel sends nothing; read to see the close
                if msg.type is WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            client.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await client.sender
        return ws


class _Client:
    def __init__(
        self, ws: web.WebSocketResponse, queue: asyncio.Queue[Json], sender: asyncio.Task[None]
    ) -> None:
        self.ws = ws
        self.queue = queue
        self.sender = sender


async def _pump(ws: web.WebSocketResponse, queue: asyncio.Queue[Json]) -> None:
    """Send one client's queue in order; a client that went away stops it."""
    try:
        while not ws.closed:
            await ws.send_json(await queue.get())
    except (ConnectionError, RuntimeError):
        log.debug("control client went away", exc_info=True)


def _scenario_problem(problem: str) -> str:
    """The gist, in French, of the scenario loader's English ``problem`` (kept whole in the
    error's ``reason``)."""
    missing = MISSING_FIELD.search(problem)
    if missing:
        return f"champ obligatoire absent : {missing.group(1)}"
    if problem.startswith("not valid YAML"):
        return "YAML illisible"
    if problem.startswith("unknown card"):
        return "carte inconnue du catalogue"
    if problem.startswith("unknown key"):
        return "clé inconnue à cet endroit"
    if problem.startswith("unknown"):
        return "valeur inconnue"
    if "required" in problem or "missing" in problem:
        return "élément obligatoire absent"
    return "valeur non conforme au format des scénarios (docs/scenarios.md)"


def _step_name(step: Action) -> str:
    """The script's own word for a step: ``tap``, ``pin``, ``remove_card``, ``battery``…"""
    return STEP_NAMES.get(type(step).__name__, type(step).__name__)


def _wall() -> float:
    """The wall clock (Unix seconds, to the millisecond) for a human reading the log: the loop
    time ``at`` is virtual on a test world and counts from the loop's start otherwise."""
    return round(time.time(), 3)


def _chip_required(txn: Transaction) -> str | None:
    """Why a tap would be answered « INSÉREZ VOTRE CARTE » now: ``sca`` (the issuer asked for
    the PIN: any tap), ``amount`` (above the contactless ceiling: a phone wallet may still
    tap), or None."""
    if txn.state is not State.WAITING_FOR_CARD:
        return None
    if txn.sca_required:
        return "sca"
    if txn.kind == "payment" and txn.amount > CONTACTLESS_CEILING:
        return "amount"
    return None


def _transaction(txn: Transaction) -> Json:
    return {
        "id": txn.transaction_id,
        "kind": txn.kind,
        "amount": txn.amount,
        "currency": txn.currency,
        "reference": txn.reference,
        "state": txn.state.value,
        "entry_mode": txn.entry_mode.value if txn.entry_mode else None,
        "brand": txn.brand,
        "masked_pan": txn.masked_pan,
        "card_in_reader": txn.card_in_reader,
        "chip_required": _chip_required(txn),
        "response_code": txn.response_code,
        "authorisation_code": txn.authorisation_code,
        "message": txn.message,
    }


def safe_message(message: Command | Event) -> Json:
    """A protocol message as the live log shows it: its wire fields, sealed card data kept
    sealed (only its scheme and key serial number are shown)."""
    fields: Json = json.loads(encode(message))
    sealed = fields.get("card_data")
    if isinstance(sealed, dict):
        fields["card_data"] = {
            "scheme": sealed.get("scheme"),
            "ksn": sealed.get("ksn"),
            "contenu": SEALED,
        }
    fields.pop("v", None)
    return fields


async def _body(request: web.Request) -> Json:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise ControlError(400, "invalid_json", "Corps de requête invalide : objet JSON attendu.")
    return body


def _battery(level: object) -> int:
    """A battery level of a request: an integer from 0 to 100, else a 400."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 100:
        raise ControlError(
            400, "invalid_battery", "Niveau de batterie invalide : un entier de 0 à 100."
        )
    return level


def _field(body: Json, name: str, kind: type[str]) -> str:
    value = body.get(name)
    if not isinstance(value, kind):
        raise ControlError(400, "invalid_field", f"Champ « {name} » manquant ou invalide.")
    return value


HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
HTTP_MESSAGES = {
    404: "Adresse inconnue du terminal (API de contrôle et panneau).",
    405: "Méthode non permise sur cette adresse.",
    413: "Corps de requête trop volumineux.",
}


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error of the API and the panel's files as ``{"error", "message"}`` JSON; the
    terminal stays as it was."""
    try:
        return await handler(request)
    except ControlError as exc:
        return web.json_response(exc.body(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_CODES.get(exc.status, "http_error")
        message = HTTP_MESSAGES.get(exc.status, "Requête refusée.")
        return web.json_response({"error": code, "message": message}, status=exc.status)
    except Exception:
        log.exception("control API: %s %s failed", request.method, request.path)
        return web.json_response({"error": "internal_error", "message": INTERNAL_ERROR}, status=500)


__all__ = ["ControlError", "ControlServer", "safe_message"]
