"""Google's RootCanal virtual controller, started on free ports and stopped cleanly.

RootCanal (PyPI ``rootcanal``) models the Bluetooth link layer on the wall clock: every TCP
connection to its HCI port gets a controller of its own, and the controllers hear each other
over the simulated radio. Bumble attaches a device to it with the transport
``tcp-client:127.0.0.1:<hci port>`` (:attr:`RootCanal.transport`).

Used by the standalone terminal (``tpe-sim terminal --link rootcanal``), by worlds built with
``WorldConfig(link="rootcanal")``, by the benchmarks and by the tests::

    with running_rootcanal() as rootcanal:
        transport = await open_transport(rootcanal.transport)

Its PyPI wheels from 1.11 on need glibc 2.38 (not Debian 12); the project pins 1.10.
When it is missing or does not start here, :class:`RootCanalUnavailable` says why.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

#: Seconds RootCanal may take to listen on its HCI port.
START_TIMEOUT = 15.0
#: Seconds it may take to stop on SIGTERM before it is killed.
STOP_TIMEOUT = 5.0
#: What a failed start writes (a missing module, a binary built for a newer glibc).
_FAILURE_MARKS = ("No module named", "not found", "GLIBC")
INSTALL_HINT = "pip install 'rootcanal>=1.10.0,<1.11' (make installs it)"


class RootCanalUnavailable(Exception):
    """RootCanal cannot run here; the message says why and what to do."""


@dataclass
class RootCanal:
    """A running RootCanal: its process (group leader), ports and log file."""

    process: subprocess.Popen[bytes]
    hci_port: int
    test_port: int
    link_port: int
    link_ble_port: int
    log: Path
    _log_dir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def transport(self) -> str:
        """The Bumble transport name a device attaches with."""
        return f"tcp-client:127.0.0.1:{self.hci_port}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines RootCanal wrote (for error messages)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Stop RootCanal and the binary its wrapper runs (idempotent)."""
        _stop_group(self.process)
        if self._log_dir is not None:
            self._log_dir.cleanup()
            self._log_dir = None


def rootcanal_version() -> str | None:
    """The installed ``rootcanal`` distribution's version, or None when it is not installed."""
    if importlib.util.find_spec("rootcanal") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rootcanal")
    except PackageNotFoundError:
        return "unknown"


#: What ``python -m rootcanal`` does, minus the wrapper process: the binary replaces the
#: interpreter (exec) after asking Linux to SIGTERM it when its parent dies (prctl
#: PR_SET_PDEATHSIG, kept across exec), so that a terminal process killed with SIGKILL or
#: SIGHUP does not leave a RootCanal running. Elsewhere prctl is skipped.
_LAUNCH = (
    "import ctypes, os, signal, sys\n"
    "import rootcanal.binaries\n"
    "if sys.platform.startswith('linux'):\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "    if os.getppid() == 1:\n"
    "        sys.exit('tpe-sim: parent gone before RootCanal started')\n"
    "binary = rootcanal.binaries.get_package_binary_resource_path('rootcanal')\n"
    "os.execv(binary, [binary, *sys.argv[1:]])\n"
)


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_rootcanal(
    *, log_dir: Path | None = None, timeout: float = START_TIMEOUT, python: str | None = None
) -> RootCanal:
    """Start RootCanal on free ports and wait until its HCI port accepts connections.

    ``log_dir``: where to write ``rootcanal.log`` (default: a temporary folder removed on
    :meth:`RootCanal.stop`). ``python``: the interpreter whose ``rootcanal`` package to run
    (default: this one). Raises :class:`RootCanalUnavailable` when it is not installed, exits
    at start (for instance a wheel built for a newer glibc) or does not listen in time.
    """
    if python is None and rootcanal_version() is None:
        raise RootCanalUnavailable(f"the PyPI package rootcanal is not installed: {INSTALL_HINT}")
    interpreter = python or sys.executable
    if shutil.which(interpreter) is None and not Path(interpreter).exists():
        raise RootCanalUnavailable(f"no Python interpreter at {interpreter}")
    holder: tempfile.TemporaryDirectory[str] | None = None
    if log_dir is None:
        holder = tempfile.TemporaryDirectory(prefix="tpe-sim-rootcanal-")
        log_dir = Path(holder.name)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "rootcanal.log"
    hci, test, link, link_ble = free_ports(4)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                interpreter,
                "-c",
                _LAUNCH,
                f"-hci_port={hci}",
                f"-test_port={test}",
                f"-link_port={link}",
                f"-link_ble_port={link_ble}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # its own process group: `python -m rootcanal` runs the binary as a child, which
            # must stop with it (and a Ctrl-C in the terminal must not reach it first)
            start_new_session=True,
        )
    rootcanal = RootCanal(process, hci, test, link, link_ble, log, holder)
    try:
        _wait_for_port(rootcanal, timeout)
    except BaseException:
        rootcanal.stop()
        raise
    return rootcanal


@contextlib.contextmanager
def running_rootcanal(
    *, log_dir: Path | None = None, timeout: float = START_TIMEOUT
) -> Iterator[RootCanal]:
    """:func:`start_rootcanal`, stopped on exit."""
    rootcanal = start_rootcanal(log_dir=log_dir, timeout=timeout)
    try:
        yield rootcanal
    finally:
        rootcanal.stop()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group led by ``process``: SIGTERM, then SIGKILL after a while."""
    if process.returncode is not None and not _group_alive(process.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        process.poll()  # reap the wrapper, or the group never looks empty
        if not _group_alive(process.pid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a reused id of someone else's group
        return False
    return True


def _wait_for_port(rootcanal: RootCanal, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rootcanal.process.poll() is not None:
            lines = rootcanal.log_tail(50).splitlines()
            why = next(
                (line for line in lines if any(mark in line for mark in _FAILURE_MARKS)), None
            ) or (lines[-1] if lines else f"exit status {rootcanal.process.returncode}")
            raise RootCanalUnavailable(
                f"rootcanal exited at start: {why.strip()} "
                f"(its wheels from 1.11 on need glibc 2.38: {INSTALL_HINT})"
            )
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", rootcanal.hci_port), 0.2),
        ):
            # A probe connection gets a controller of its own, closed at once: harmless.
            return
        time.sleep(0.05)
    raise RootCanalUnavailable(
        f"rootcanal did not listen on port {rootcanal.hci_port} within {timeout:g} s; "
        f"its log ends with:\n{rootcanal.log_tail()}"
    )
