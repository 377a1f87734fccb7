"""The card-number leak scan finds a PAN wherever it would be written, and only then."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.leaks import pan_leaks
from harness.rig import World


@pytest.fixture(scope="module")
def paid_world() -> Iterator[World]:
    with World() as world:
        world.associate()
        number = world.unpaid_invoice(at_most_cents=5000)
        assert number is not None
        world.start_payment(number)
        world.tap("visa")
        world.finish_payment()
        yield world


def test_a_real_payment_writes_no_pan(paid_world: World) -> None:
    assert pan_leaks(paid_world) == []


@pytest.mark.parametrize(
    "written", ["4242424242424242", "carte 4242 4242 4242 4242", "4242-4242-4242-4242"]
)
def test_a_pan_on_the_app_screen_is_found(paid_world: World, written: str) -> None:
    paid_world.app.screen.append(written)
    try:
        assert pan_leaks(paid_world) == ["PAN of card 'visa' in app screen"]
    finally:
        paid_world.app.screen.pop()


def test_a_pan_in_the_logs_is_found(paid_world: World) -> None:
    assert pan_leaks(paid_world, ["debug: card 5555555555554444 read"]) == [
        "PAN of card 'mastercard' in log"
    ]


def test_the_last_four_digits_alone_are_not_a_leak(paid_world: World) -> None:
    assert pan_leaks(paid_world, ["************4242", "VISA 4242"]) == []


def test_a_pan_in_an_api_response_the_app_received_is_found(paid_world: World) -> None:
    # the backend's own request log redacts PANs; what the app received is scanned raw
    paid_world.app.backend.received.append('{"pan": "5555555555554444"}')
    try:
        assert pan_leaks(paid_world) == [
            "PAN of card 'mastercard' in API response received by the app"
        ]
    finally:
        paid_world.app.backend.received.pop()
