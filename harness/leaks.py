"""The card-number leak scan: no full PAN of any catalogue card anywhere the product writes.

The PAN may exist in the card, in the terminal while it seals card data, and in the processor
after it opened the blob. Everything else — logs, the backend's store and its HTTP exchanges,
the messages between phone and terminal, the app's screen, receipts — must never hold it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator

from harness.rig import World
from simulator.protocol.messages import encode


class LogRecorder(logging.Handler):
    """Keeps the formatted text of every log record emitted while it is attached."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is not a leak
            self.handleError(record)


def written_texts(world: World, logs: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
    """(where, text) for everything the world's product parts wrote."""
    yield "backend store", repr(world.store)
    for record in world.backend.request_log:
        yield f"backend exchange {record.method} {record.path}", str(record)
        yield "backend request body", record.request_body
        yield "backend response body", record.response_body
    for event in world.terminal.events_sent:
        yield f"terminal event {type(event).__name__}", encode(event).decode()
    for command in world.terminal.commands_received:
        yield f"phone command {type(command).__name__}", encode(command).decode()
    for app in world.apps:
        for text in app.screen:
            yield "app screen", text
        for body in app.backend.received:
            yield "API response received by the app", body
    for shot in world.terminal.engine.screen.history:
        yield "terminal screen", " | ".join(shot.lines)
    for line in logs:
        yield "log", line


def pan_leaks(world: World, logs: Iterable[str] = ()) -> list[str]:
    """Where a full catalogue PAN appears (as digits, spaced or dashed); empty when none."""
    patterns = {
        profile.key: re.compile(r"[ -]?".join(profile.pan)) for profile in world.catalogue.values()
    }
    found = []
    for where, text in written_texts(world, logs):
        for key, pattern in patterns.items():
            if pattern.search(text):
                found.append(f"PAN of card {key!r} in {where}")
    return found
