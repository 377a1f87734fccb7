"""Start ``tpe-sim terminal``, ``tpe-sim backend`` and ``tpe-sim app`` as child processes and
wait for what they print: for cross-process tests and scripts.

Each :class:`TpeSimProcess` reads its child's output on a thread and lets the caller wait for
a line matching a pattern (bounded by a deadline; the error says what the child printed).
:meth:`TpeSimProcess.interrupt` sends SIGINT (Ctrl-C) and waits for the exit status; the
``with`` form kills whatever is still running on the way out::

    with start_backend(db=tmp / "backend.sqlite") as backend:
        url = backend.backend_url
        ...
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

#: Seconds a process may take to print its readiness line (imports, RootCanal start).
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
_URL = re.compile(r"https?://[0-9.]+:[0-9]+")
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # Bumble's tools colour what they print


class ProcessFailed(AssertionError):
    """A child did not print what was awaited, or did not stop; the message shows its output."""


class TpeSimProcess:
    """One ``tpe-sim`` child process and everything it printed (stdout and stderr merged,
    terminal colours removed).

    ``command``: another program to run with ``arguments`` (e.g. one of Bumble's tools);
    ``stdin``: a pipe to write to (:meth:`send`), else nothing."""

    def __init__(
        self,
        arguments: Sequence[str],
        *,
        cwd: Path | None = None,
        stdin: bool = False,
        command: Sequence[str] | None = None,
    ) -> None:
        self.arguments = list(arguments)
        program = list(command) if command else [sys.executable, "-m", "harness.cli"]
        name = " ".join(Path(part).name for part in program) if command else "tpe-sim"
        self.title = f"{name} {' '.join(arguments)}"
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self.process = subprocess.Popen(
            [*program, *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(_ANSI_COLOUR.sub("", line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def send(self, text: str) -> None:
        """Write ``text`` to the child's standard input (started with ``stdin=True``)."""
        assert self.process.stdin is not None, "started without stdin=True"
        self.process.stdin.write(text)
        self.process.stdin.flush()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = READY_TIMEOUT) -> re.Match[str]:
        """The first line matching ``pattern`` (a regex), waiting up to ``timeout`` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    break
                self._changed.wait(remaining)
        why = "exited" if self._closed else f"printed nothing matching within {timeout:g} s"
        raise ProcessFailed(
            f"{self.title} {why} (waiting for {pattern!r}); its output:\n{self.output}"
        )

    def url_after(self, prefix: str, timeout: float = READY_TIMEOUT) -> str:
        """The URL on the line starting with ``prefix`` (``API :``, ``Contrôle :``)."""
        match = self.wait_for(rf"^{re.escape(prefix)}.*?{_URL.pattern}", timeout)
        found = _URL.search(match.string)
        assert found is not None
        return found.group()

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit status, waiting up to ``timeout`` seconds."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ProcessFailed(
                f"{self.title} still runs after {timeout:g} s; its output:\n{self.output}"
            ) from None
        self._reader.join(timeout)
        return status

    def interrupt(self, timeout: float = STOP_TIMEOUT) -> int:
        """Ctrl-C (SIGINT), then the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def kill(self) -> None:
        """Stop it now if it still runs (SIGTERM, then SIGKILL)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(STOP_TIMEOUT)
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()


class BackendProcess(TpeSimProcess):
    """``tpe-sim backend``, ready (its URL known) once built."""

    def __init__(self, arguments: Sequence[str], *, cwd: Path | None = None) -> None:
        super().__init__(["backend", *arguments], cwd=cwd)
        try:
            self.url = self.url_after("API :")
            self.wait_for("^Prêt :")
        except BaseException:
            self.kill()
            raise


class TerminalProcess(TpeSimProcess):
    """``tpe-sim terminal``, ready (control URL, HCI transport) once built."""

    def __init__(self, arguments: Sequence[str], *, cwd: Path | None = None) -> None:
        super().__init__(["terminal", *arguments], cwd=cwd)
        try:
            radio = self.wait_for(r"^Radio : .*?(tcp-client:[0-9.]+:[0-9]+|transport (\S+))")
            self.transport = radio.group(1).removeprefix("transport ")
            self.control_url = self.url_after("Contrôle :")
            self.wait_for("^Prêt :")
        except BaseException:
            self.kill()
            raise


def start_backend(
    *, db: Path, port: int = 0, seed: int | None = None, cwd: Path | None = None
) -> BackendProcess:
    """``tpe-sim backend --db DB`` on a free port (by default), once it answers."""
    arguments = ["--db", str(db), "--port", str(port)]
    if seed is not None:
        arguments += ["--seed", str(seed)]
    return BackendProcess(arguments, cwd=cwd)


def start_terminal(
    *,
    data: Path,
    transport: str | None = None,
    snoop: Path | None = None,
    preconfigured: bool = True,
    profile: str = "standard",
    cwd: Path | None = None,
) -> TerminalProcess:
    """``tpe-sim terminal`` on ``transport`` (None: ``--link rootcanal``), once it advertises
    and its control API listens."""
    arguments = ["--transport", transport] if transport else ["--link", "rootcanal"]
    arguments += ["--data", str(data), "--profile", profile]
    if snoop is not None:
        arguments += ["--snoop", str(snoop)]
    if preconfigured:
        arguments.append("--preconfigured")
    return TerminalProcess(arguments, cwd=cwd)
