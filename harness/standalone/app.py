"""``tpe-sim app``: the virtual mobile app as a process of its own, on the wall clock.

It is the world's :class:`~harness.app.InvoicingApp` on a :class:`~harness.app.VirtualPhone`
attached to a Bumble transport (a RootCanal's HCI port, a USB dongle, …) and talking to a
backend over HTTP (``tpe-sim backend``)::

    tpe-sim app associate --transport tcp-client:127.0.0.1:PORT --backend http://127.0.0.1:N
    tpe-sim app pay --invoice F-2026-0003 --transport … --backend … --confirm-codes

Pairing by numeric comparison needs the technician on both sides: someone presses the
terminal's green key (its control panel, or ``POST /api/key``) and someone confirms the code
on the phone. ``--confirm-codes`` makes the phone confirm whatever code it is shown: **for
tests only** (a real technician compares the two codes). Without it the phone refuses, and
pairing fails. The cardholder also acts on the terminal (its control API), not here.

Prints each stage of the flow in French as it happens; exits 0 when the association
succeeded or the invoice is paid, 1 when the flow failed (the app's French message on
stderr, e.g. the terminal stopped or refused mid-pairing), 2 on bad options or a transport
that does not open, 3 when the radio itself went away (the RootCanal or dongle stopped
answering: one French line, the technical detail after it), 130 on Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bumble.device import Device
from bumble.hci import Address
from bumble.transport import open_transport
from bumble.transport.common import Transport

from harness.app import (
    AppTimeouts,
    BackendClient,
    InvoicingApp,
    PaymentOutcome,
    PhoneError,
    VirtualPhone,
)
from harness.app.backend_client import BackendError
from harness.rig import PHONE_ADDRESS

DEFAULT_DATA = Path("tpe-sim-data") / "phone"
#: an invoice's status as the technician reads it (``tpe-sim app``, ``tpe-sim demo``)
STATUS_FR = {"paid": "payée", "unpaid": "impayée", "partially_paid": "partiellement payée"}
#: Exit statuses (see the module docstring).
FLOW_FAILED = 1
RADIO_LOST = 3
INTERRUPTED = 130


@dataclass
class AppOptions:
    action: str  # "associate" | "pay"
    transport: str
    backend: str
    invoice: str | None = None
    data: Path = DEFAULT_DATA
    address: str = PHONE_ADDRESS
    confirm_codes: bool = False
    terminal: str | None = None  # the terminal's name (TPE-…); None: the first heard


async def run_app(options: AppOptions) -> int:
    """Run one flow; see the module docstring for the exit status."""
    started = time.perf_counter()

    def stage(_name: str, text: str) -> None:
        print(f"[{time.perf_counter() - started:7.3f} s]  {text}", flush=True)

    try:
        transport = await open_transport(options.transport)
    except Exception as exc:  # Bumble raises several kinds (spec, init, OS errors)
        print(
            f"tpe-sim app : impossible d'ouvrir le transport {options.transport!r} : {exc}",
            file=sys.stderr,
        )
        return 2
    try:
        return await _on_transport(transport, options, stage)
    finally:
        with contextlib.suppress(Exception):  # the radio may be gone already
            await transport.close()


async def _on_transport(
    transport: Transport, options: AppOptions, stage: Callable[[str, str], None]
) -> int:
    device = Device.with_hci(
        "Téléphone du technicien", Address(options.address), transport.source, transport.sink
    )
    phone = VirtualPhone(device, keystore_file=options.data / "bonds.json")
    if options.confirm_codes:

        async def confirm(code: str) -> bool:
            print(f"(--confirm-codes) code {code} confirmé sur le téléphone", flush=True)
            return True

        phone.confirm_code = confirm
    try:
        await phone.start()
    except Exception as error:  # no controller answers on that transport
        _radio_lost(error)
        return RADIO_LOST
    app = InvoicingApp(
        phone, BackendClient(options.backend), AppTimeouts(), options.data / "app.json"
    )
    app.listeners.append(stage)
    try:
        return await run_flow(app, options)
    finally:
        if app.link is not None:
            with contextlib.suppress(Exception):
                await app.link.disconnect()
        await app.backend.close()
        with contextlib.suppress(Exception):
            await phone.stop()


class Flows(Protocol):
    """What :func:`run_flow` asks of the app (an :class:`InvoicingApp`)."""

    async def associate_terminal(self, name: str | None = None) -> Any: ...

    async def pay_invoice(self, number: str) -> PaymentOutcome: ...


def _fail(text: str) -> None:
    print(f"✗ ÉCHEC : {text}", file=sys.stderr, flush=True)


async def run_flow(app: Flows, options: AppOptions) -> int:
    """The flow ``options`` asks for on ``app``; its exit status (module docstring). Only a
    cancellation of this task (Ctrl-C) propagates; whatever else stops the flow is one French
    line on stderr."""
    try:
        if options.action == "associate":
            await app.associate_terminal(options.terminal)
            return 0
        assert options.invoice is not None
        if options.terminal is not None:
            await app.associate_terminal(options.terminal)
        outcome = await app.pay_invoice(options.invoice)
        status = str(outcome.invoice.get("status"))
        print(
            f"Résultat : {outcome.message} — facture {options.invoice} : "
            f"{STATUS_FR.get(status, status)}",
            flush=True,
        )
        return 0 if outcome.result == "approved" and status == "paid" else FLOW_FAILED
    except (PhoneError, BackendError) as error:
        _fail(str(error))
        return FLOW_FAILED
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # Ctrl-C: this task was cancelled
        # a cancellation from below: Bumble gave up a pairing or a request because the
        # terminal went away or refused
        _fail(
            "le terminal a interrompu l'échange (arrêté, hors de portée ou appairage refusé) ; "
            "vérifiez qu'il tourne et réessayez"
        )
        return FLOW_FAILED
    except Exception as error:  # the radio went away: RootCanal stopped, dongle unplugged
        _radio_lost(error)
        return RADIO_LOST


def _radio_lost(error: Exception) -> None:
    _fail(
        "plus de réponse du contrôleur Bluetooth (RootCanal arrêté, clé USB débranchée ?) "
        f"— {type(error).__name__}: {error}"
    )


async def interruptible(flow: Coroutine[Any, Any, int]) -> int:
    """Run ``flow`` until it ends or SIGINT/SIGTERM cancels it (then « interrompu », 130)."""
    task = asyncio.ensure_future(flow)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        if not task.cancelled():  # the flow ended, then this very coroutine was cancelled
            raise
        print("interrompu", file=sys.stderr)
        return INTERRUPTED
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


async def _main(options: AppOptions) -> int:
    return await interruptible(run_app(options))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    associate = actions.add_parser("associate", help="associate the terminal in range")
    pay = actions.add_parser("pay", help="pay an invoice by card through the terminal")
    pay.add_argument("--invoice", required=True, help="invoice number, e.g. F-2026-0003")
    for sub in (associate, pay):
        sub.add_argument(
            "--transport",
            required=True,
            metavar="NAME",
            help="Bumble transport of the phone, e.g. tcp-client:127.0.0.1:PORT (the HCI port "
            "`tpe-sim terminal --link rootcanal` prints)",
        )
        sub.add_argument(
            "--backend", required=True, metavar="URL", help="the backend, http://HOST:PORT"
        )
        sub.add_argument(
            "--data",
            type=Path,
            default=DEFAULT_DATA,
            metavar="DIR",
            help=f"the phone's bonds and the app's associated terminal (default: {DEFAULT_DATA})",
        )
        sub.add_argument(
            "--address",
            default=PHONE_ADDRESS,
            help=f"the phone's BD address (default {PHONE_ADDRESS}); a second phone needs "
            "another one, and its own --data",
        )
        sub.add_argument("--terminal", help="the terminal's name (default: the first heard)")
        sub.add_argument(
            "--confirm-codes",
            action="store_true",
            help="FOR TESTS: the phone confirms any pairing code without a human comparing it "
            "(the terminal's green key must still be pressed, e.g. through its control API)",
        )


def app_command(args: argparse.Namespace) -> int:
    """``tpe-sim app``: see the module docstring."""
    options = AppOptions(
        action=args.action,
        transport=args.transport,
        backend=args.backend.rstrip("/"),
        invoice=getattr(args, "invoice", None),
        data=args.data,
        address=args.address,
        confirm_codes=args.confirm_codes,
        terminal=args.terminal,
    )
    return asyncio.run(_main(options))
