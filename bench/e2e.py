"""One end-to-end contactless payment in a fresh world, and time compression.

The payment is the README's: ``World()`` built and opened (fixtures, backend, link, terminal,
phone), ``associate`` (scan, connect, MTU, LE SC numeric-comparison pairing, subscribe,
diagnosis, registration at the backend), ``start_payment`` on the first invoice of at most
50 €, ``tap("visa")``, ``finish_payment`` (authorisation, result, receipts), ``close``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from harness.rig import World, WorldConfig
from simulator.terminal import Timeouts, load_profiles


def payment_config(**overrides: Any) -> WorldConfig:
    """A world whose terminal was configured at the factory, when worlds know first setup
    (``WorldConfig.preconfigured``): the payment is measured, not the terminal's one-time
    setup, which the compression rows time instead."""
    if any(f.name == "preconfigured" for f in dataclasses.fields(WorldConfig)):
        overrides.setdefault("preconfigured", True)
    return WorldConfig(**overrides)


def one_payment(card: str = "visa") -> float:
    """Wall seconds of one payment in a fresh world, from ``World()`` to ``close``."""
    started = time.perf_counter()
    with World(payment_config()) as world:
        world.associate()
        number = world.unpaid_invoice(at_most_cents=5000)
        if number is None:
            raise RuntimeError("the seeded world has no invoice of at most 50 €")
        world.start_payment(number)
        world.tap(card)
        outcome = world.finish_payment()
    elapsed = time.perf_counter() - started
    if outcome.invoice.get("status") != "paid":
        raise RuntimeError(f"the benchmark payment did not pay the invoice: {outcome}")
    return elapsed


@dataclass(frozen=True)
class Compression:
    """Loop seconds that passed against the wall seconds they took."""

    scenario: str
    repeats: int
    loop_seconds: float
    wall_seconds: float

    @property
    def ratio(self) -> float:
        return self.loop_seconds / self.wall_seconds


def card_timeouts(repeats: int, card_presentation: float = 60.0) -> Compression:
    """A world dominated by timeouts: associate once, then ``repeats`` times start a payment
    that nobody pays (the terminal gives up after ``card_presentation`` seconds) and wait
    for the result screen to clear. Measured from the first payment to the last screen."""
    config = payment_config(timeouts=Timeouts(card_presentation=card_presentation))
    with World(config) as world:
        world.associate()
        number = world.unpaid_invoice(at_most_cents=5000)
        if number is None:
            raise RuntimeError("the seeded world has no invoice of at most 50 €")
        loop_start, wall_start = world.loop_elapsed, time.perf_counter()
        for _ in range(repeats):
            world.start_payment(number)
            outcome = world.finish_payment()
            if outcome.result != "aborted":
                raise RuntimeError(f"expected the card timeout, got {outcome}")
            world.wait(config.timeouts.result_display)
        wall = time.perf_counter() - wall_start
        loop = world.loop_elapsed - loop_start
    return Compression(
        scenario=f"card presentation timeout ({card_presentation:g} s) + result screen",
        repeats=repeats,
        loop_seconds=loop,
        wall_seconds=wall,
    )


def firmware_profile() -> str | None:
    """The first terminal profile that is offered a firmware update at first setup, if any."""
    profiles = load_profiles(WorldConfig().fixtures / "terminals.yaml")
    return next((k for k, p in profiles.items() if getattr(p, "firmware_update", None)), None)


def first_setup_with_firmware(profile: str) -> Compression:
    """A terminal fresh out of its box (profile ``profile``) associated for the first time:
    pairing, then first setup (configuration and firmware download and install)."""
    with World(WorldConfig(terminal=profile)) as world:
        loop_start, wall_start = world.loop_elapsed, time.perf_counter()
        world.associate()
        wall = time.perf_counter() - wall_start
        loop = world.loop_elapsed - loop_start
        firmware = world.terminal.engine.firmware
    return Compression(
        scenario=f"first setup with firmware download (terminal {profile!r}, now {firmware})",
        repeats=1,
        loop_seconds=loop,
        wall_seconds=wall,
    )
