"""The web control panel in a real headless Chromium: an invoice paid by clicking.

Playwright drives the Chromium of the system's packages (Debian ``chromium``); nothing here
downloads a browser. The browser lives on the wall clock, so the world does too
(``WorldConfig(fast=False)``): its loop runs in a background thread with the control server
on it, and the test thread talks to it through ``run_coroutine_threadsafe``. Every wait is
Playwright's ``expect`` or a future's result, each with a timeout; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness.app import AppTimeouts, PaymentOutcome
from harness.leaks import pan_leaks
from harness.rig import World, WorldConfig
from harness.standalone.control import ControlServer
from simulator.terminal import format_amount

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # the dev extra installs it
    pytest.skip("Playwright is not installed: pip install -e '.[dev]'", allow_module_level=True)

T = TypeVar("T")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: wall seconds for the world's own steps (association, a payment) and the page's updates
STEP = 30.0
UI_MS = 15_000


def system_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


CHROMIUM = system_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no system Chromium: install it with `apt-get install chromium` (Debian package; "
    "the tests never download a browser)",
)


class ThreadedWorld:
    """A wall-clock world and its control server, their loop running in a thread."""

    def __init__(self, config: WorldConfig) -> None:
        self.world = World(config)
        self.server: ControlServer | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="tpe-sim-world", daemon=True)

    def start(self) -> ControlServer:
        self._thread.start()
        if not self._ready.wait(STEP):
            raise TimeoutError("the world did not start")
        if self._failure is not None:
            raise self._failure
        assert self.server is not None
        return self.server

    def _main(self) -> None:
        world = self.world
        try:
            world.open()
            self.server = ControlServer(world.terminal, world.card, list(world.catalogue))
            world.run(self.server.start())
        except BaseException as exc:  # reported to the test thread
            self._failure = exc
            self._ready.set()
            world.close()
            return
        self._ready.set()
        world.loop.run_forever()  # until stop()
        world.run(self.server.stop())
        world.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.world.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result(STEP)

    def read(self, fn: Callable[[], T]) -> T:
        """``fn()`` evaluated on the world's thread (the world is not thread-safe)."""

        async def read() -> T:
            return fn()

        return self.call(read())

    def stop(self) -> None:
        self.world.loop.call_soon_threadsafe(self.world.loop.stop)
        self._thread.join(STEP)


@pytest.fixture(scope="module")
def shop() -> Iterator[ThreadedWorld]:
    config = WorldConfig(
        fast=False,
        preconfigured=True,  # no minutes of first setup on the wall clock
        app_timeouts=dataclasses.replace(AppTimeouts(), scan_window=0.5),
    )
    threaded = ThreadedWorld(config)
    threaded.start()
    threaded.call(threaded.world.app.associate_terminal())
    yield threaded
    threaded.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def panel(shop: ThreadedWorld, browser: Browser) -> Iterator[Page]:
    assert shop.server is not None
    page = browser.new_page()
    page.goto(shop.server.url)
    expect(page.get_by_test_id("connection")).to_have_text("En direct", timeout=UI_MS)
    expect(page.get_by_test_id("card-visa")).to_be_visible(timeout=UI_MS)
    yield page
    page.close()


def unpaid(shop: ThreadedWorld, above: int, at_most: int) -> tuple[str, int]:
    def first() -> tuple[str, int]:
        return next(
            (inv.number, inv.balance_due_cents)
            for inv in shop.world.store.invoices.values()
            if inv.status == "unpaid" and above < inv.balance_due_cents <= at_most
        )

    return shop.read(first)


def settle(shop: ThreadedWorld, page: Page, payment: Future[PaymentOutcome], number: str) -> None:
    outcome = payment.result(STEP)
    assert outcome.result == "approved", outcome.message
    assert shop.read(lambda: shop.world.store.invoices[number].status) == "paid"
    screen = page.get_by_test_id("screen")
    expect(screen).to_contain_text("PAIEMENT ACCEPTÉ", timeout=UI_MS)
    log = page.get_by_test_id("log")
    for message in ("PaymentRequest", "AuthorisationRequest", "PaymentResponse"):
        expect(log).to_contain_text(message, timeout=UI_MS)
    expect(log).to_contain_text("scellées pour le processeur", timeout=UI_MS)
    texts = [page.content(), page.locator("body").inner_text()]
    leaks = shop.read(lambda: pan_leaks(shop.world, texts))
    assert not leaks, leaks


def test_an_invoice_is_paid_by_tapping_a_card_in_the_panel(
    shop: ThreadedWorld, panel: Page
) -> None:
    number, cents = unpaid(shop, 0, 5000)
    expect(panel.get_by_test_id("card-cb_visa")).to_contain_text("CB + Visa (cobadgée)")
    panel.get_by_test_id("tap-visa").click()  # too early: the terminal waits for no card
    notice = panel.get_by_test_id("notice")
    expect(notice).to_contain_text("n'attend pas de carte", timeout=UI_MS)
    payment = shop.submit(shop.world.app.pay_invoice(number))

    screen = panel.get_by_test_id("screen")
    expect(screen).to_contain_text(format_amount(cents), timeout=UI_MS)
    # the terminal moved on: the banner went (at once, not by its 8 s timer)
    expect(notice).to_be_hidden(timeout=2000)
    expect(panel.get_by_test_id("transaction")).to_contain_text(number, timeout=UI_MS)
    panel.get_by_test_id("card-visa").get_by_role("button", name="Sans contact").click()

    settle(shop, panel, payment, number)
    expect(panel.get_by_test_id("transaction")).to_contain_text("************4242")
    # the log's times are the wall clock's, to the millisecond
    first = panel.get_by_test_id("log-entry").first.locator(".at")
    expect(first).to_have_text(re.compile(r"^[0-2][0-9]:[0-5][0-9]:[0-5][0-9]\.[0-9]{3}\s*$"))


def test_an_invoice_is_paid_by_inserting_a_card_and_typing_the_pin(
    shop: ThreadedWorld, panel: Page
) -> None:
    number, cents = unpaid(shop, 5000, 100_000)
    payment = shop.submit(shop.world.app.pay_invoice(number))

    screen = panel.get_by_test_id("screen")
    expect(screen).to_contain_text(format_amount(cents), timeout=UI_MS)
    expect(screen).to_contain_text("INSÉREZ LA CARTE", timeout=UI_MS)
    tap = panel.get_by_test_id("tap-mastercard")  # above the contactless ceiling
    expect(tap).to_be_disabled()
    expect(tap).to_have_attribute("title", re.compile("plafond sans contact"))
    expect(panel.get_by_test_id("tap-wallet")).to_be_enabled()  # a phone still may
    panel.get_by_test_id("insert-mastercard").click()
    expect(screen).to_contain_text("SAISISSEZ VOTRE CODE", timeout=UI_MS)
    for digit in "4321":
        panel.get_by_test_id(f"pin-digit-{digit}").click()
    panel.get_by_test_id("pin-digit-9").click()
    panel.get_by_test_id("pin-correction").click()  # a typo, corrected
    expect(panel.get_by_test_id("pin-display")).to_have_text("••••")
    panel.get_by_test_id("key-green").click()

    settle(shop, panel, payment, number)
    remove = panel.get_by_test_id("remove-card")
    expect(remove).to_be_enabled(timeout=UI_MS)
    remove.click()
    expect(remove).to_be_disabled(timeout=UI_MS)
    expect(tap).to_be_enabled(timeout=UI_MS)  # the payment is over


def test_a_scenario_error_shows_the_missing_field_and_the_loader_s_words(
    panel: Page,
) -> None:
    panel.get_by_test_id("scenario-input").fill("name: sans_flow\nsteps:\n  - tap: visa\n")
    panel.get_by_test_id("scenario-load").click()
    notice = panel.get_by_test_id("notice")
    expect(notice).to_contain_text(
        "Scénario invalide, ligne 1 : champ obligatoire absent : flow.", timeout=UI_MS
    )
    expect(panel.get_by_test_id("notice-reason")).to_contain_text("missing 'flow'")


def test_the_wallet_keeps_both_buttons_in_view_at_1024_pixels(panel: Page) -> None:
    panel.set_viewport_size({"width": 1024, "height": 768})
    wallet = panel.get_by_test_id("wallet")
    expect(panel.get_by_test_id("brand-cb_visa")).to_be_visible()
    sideways = wallet.evaluate("(list) => list.scrollWidth - list.clientWidth")
    assert sideways <= 0, f"the wallet scrolls sideways by {sideways} px"
    box = wallet.bounding_box()
    assert box is not None
    for key in ("cb_visa", "cb_mastercard", "visa"):
        for action in ("tap", "insert"):
            button = panel.get_by_test_id(f"{action}-{key}").bounding_box()
            assert button is not None
            assert box["x"] <= button["x"], (key, action, button, box)
            assert button["x"] + button["width"] <= box["x"] + box["width"], (key, action)


OFF_CONTROLS = (
    "tap-visa",
    "insert-visa",
    "tap-cb_visa",
    "insert-cb_visa",
    "pin-digit-1",
    "pin-correction",
    "key-green",
    "key-red",
    "remove-card",
)


@pytest.fixture
def lone_terminal(browser: Browser) -> Iterator[tuple[ThreadedWorld, Page]]:
    """A terminal of its own (no phone), for tests that switch it off."""
    threaded = ThreadedWorld(WorldConfig(fast=False, preconfigured=True))
    server = threaded.start()
    page = browser.new_page()
    page.goto(server.url)
    expect(page.get_by_test_id("connection")).to_have_text("En direct", timeout=UI_MS)
    yield threaded, page
    page.close()
    threaded.stop()


def test_a_terminal_whose_battery_ran_out_is_switched_on_again_from_the_panel(
    lone_terminal: tuple[ThreadedWorld, Page],
) -> None:
    threaded, panel = lone_terminal
    power_on = panel.get_by_test_id("power-on")
    expect(power_on).to_be_hidden()
    terminal = threaded.world.terminal
    threaded.read(lambda: terminal.set_battery(0))
    badge = panel.get_by_test_id("terminal-state")
    expect(badge).to_have_text("Éteint", timeout=UI_MS)
    expect(power_on).to_be_visible()
    log = panel.get_by_test_id("log")
    expect(log).to_contain_text("Terminal éteint (batterie vide)", timeout=UI_MS)

    # no card, no PIN, no key while off: disabled, saying why (no 409 banners)
    for test_id in OFF_CONTROLS:
        control = panel.get_by_test_id(test_id)
        expect(control).to_be_disabled()
        expect(control).to_have_attribute("title", "Terminal éteint : rallumez-le")
    expect(panel.get_by_test_id("battery-apply")).to_be_enabled()  # charging still works

    power_on.click()  # empty: charged to 100 % first
    expect(badge).to_have_text("Au repos", timeout=UI_MS)
    expect(power_on).to_be_hidden()
    expect(panel.get_by_test_id("battery-level")).to_have_text("100 %")
    expect(log).to_contain_text("Terminal rallumé", timeout=UI_MS)
    expect(panel.get_by_test_id("notice")).to_be_hidden()
    assert threaded.read(lambda: (terminal.powered, terminal.engine.battery)) == (True, 100)
    expect(panel.get_by_test_id("tap-visa")).to_be_enabled()
    expect(panel.get_by_test_id("tap-visa")).to_have_attribute("title", "")
    expect(panel.get_by_test_id("key-green")).to_be_enabled()
    expect(panel.get_by_test_id("key-green")).to_have_attribute("title", "Touche verte : valider")
