"""What the long-running standalone commands (``tpe-sim backend``, ``tpe-sim terminal``)
share: the line that says they are ready, printing for a human, the exclusive lock file that
keeps a second process off their data, and the loop that serves until a stop signal."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol, TypeVar

#: The line printed once a process serves (the rest of that line says what answers).
READY_LINE = "Prêt :"

Printer = Callable[[str], None]


def print_line(text: str) -> None:
    """Print one line for the human at the console, at once."""
    print(text, flush=True)


class LockHeld(Exception):
    """Another process holds the lock file."""


def hold_lock(path: Path) -> int:
    """Take an exclusive ``flock`` on ``path`` (created if missing) and write this process's
    id in it; return its descriptor (closing it releases the lock; the kernel releases it
    when the process ends, even killed). :class:`LockHeld` if another process holds it; any
    other ``OSError`` is raised as is. Either way no descriptor is left open."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a curious human
    except BlockingIOError:
        os.close(fd)
        raise LockHeld(str(path)) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


class Service(Protocol):
    """A started process's service: what it says once ready, and how it stops."""

    def describe(self) -> list[str]: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=Service)


async def serve_until_signal(
    start: Callable[[], Awaitable[S]],
    refused: type[Exception],
    *,
    command: str,
    stopping: str,
    stopped: Callable[[S], str],
    out: Printer = print_line,
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM),
) -> int:
    """Start a service (``start()``), print what it says, serve until one of ``signals``,
    then print ``stopping``, stop it and print ``stopped(service)``: 0. When ``start()``
    raises ``refused``: ``tpe-sim COMMAND : <its message>`` on stderr, and 2."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    try:
        try:
            service = await start()
        except refused as exc:
            print(f"tpe-sim {command} : {exc}", file=sys.stderr, flush=True)
            return 2
        for line in service.describe():
            out(line)
        await stop.wait()
        out(stopping)
        await service.stop()
        out(stopped(service))
        return 0
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
