"""The terminal's screen and the French amount format."""

from __future__ import annotations

import pytest

from simulator.terminal import Screen, ScreenShot, format_amount
from simulator.terminal.screen import HISTORY_SIZE, SCREEN_WIDTH


def test_show_reports_changes_and_keeps_history() -> None:
    screen = Screen()
    assert screen.text == ""
    assert screen.show(1.0, "BIENVENUE", "TPE-SIM0001")
    assert not screen.show(2.0, "BIENVENUE", "TPE-SIM0001")
    assert screen.show(3.0, "42,50 EUR")
    assert screen.lines == ("42,50 EUR",)
    assert screen.text == "42,50 EUR"
    assert list(screen.history) == [
        ScreenShot(1.0, ("BIENVENUE", "TPE-SIM0001")),
        ScreenShot(3.0, ("42,50 EUR",)),
    ]


def test_lines_are_clipped_to_the_screen_width() -> None:
    screen = Screen()
    screen.show(0.0, "TRANSACTION ANNULÉE", "DÉLAI DE PRÉSENTATION DE LA CARTE DÉPASSÉ")
    assert SCREEN_WIDTH == 20
    assert screen.lines == ("TRANSACTION ANNULÉE", "DÉLAI DE PRÉSENTATIO")
    assert all(len(line) <= SCREEN_WIDTH for line in screen.lines)
    # Lines equal once clipped are no change.
    assert not screen.show(1.0, "TRANSACTION ANNULÉE", "DÉLAI DE PRÉSENTATION…")


def test_history_is_bounded() -> None:
    screen = Screen()
    for i in range(HISTORY_SIZE + 10):
        screen.show(float(i), f"LINE {i}")
    assert len(screen.history) == HISTORY_SIZE
    assert screen.history[-1].lines == (f"LINE {HISTORY_SIZE + 9}",)
    assert screen.history[0].lines == ("LINE 10",)


def test_screenshot_text() -> None:
    assert str(ScreenShot(1.5, ("A", "B"))) == "[    1.500s] A | B"


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (4250, "42,50 EUR"),
        (5000, "50,00 EUR"),
        (5001, "50,01 EUR"),
        (5, "0,05 EUR"),
        (99, "0,99 EUR"),
        (100_000, "1000,00 EUR"),
        (99_999_999, "999999,99 EUR"),
    ],
)
def test_format_amount(cents: int, text: str) -> None:
    assert format_amount(cents) == text
    assert format_amount(cents, "EUR") == text
