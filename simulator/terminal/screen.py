"""The terminal's screen: a few short lines, and the history of what it showed."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

SCREEN_WIDTH = 20
HISTORY_SIZE = 64


@dataclass(frozen=True)
class ScreenShot:
    at: float  # loop time (seconds) when it was shown
    lines: tuple[str, ...]

    def __str__(self) -> str:
        return f"[{self.at:9.3f}s] " + " | ".join(self.lines)


class Screen:
    """What the cardholder and merchant read. Tests read ``lines``; reports read ``history``."""

    def __init__(self) -> None:
        self.lines: tuple[str, ...] = ()
        self.history: deque[ScreenShot] = deque(maxlen=HISTORY_SIZE)

    def show(self, at: float, *lines: str) -> bool:
        """Display ``lines``; returns whether the screen changed."""
        clipped = tuple(line[:SCREEN_WIDTH] for line in lines)
        if clipped == self.lines:
            return False
        self.lines = clipped
        self.history.append(ScreenShot(at, clipped))
        return True

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def format_amount(cents: int, currency: str = "EUR") -> str:
    """French formatting as terminals print it: ``42,50 EUR``."""
    euros, rest = divmod(cents, 100)
    return f"{euros},{rest:02d} {currency}"
