"""``tpe-sim``: the command line.

``tpe-sim demo`` runs the main job outside pytest: a technician pays an unpaid invoice by
contactless card through the virtual terminal, and every stage is printed as it happens.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.app import PhoneError
from harness.backend.seed import FixtureError
from harness.keys import KeyFixtureError
from harness.rig import World, WorldConfig, WorldTimeout
from harness.standalone.app import STATUS_FR
from simulator.cards import CatalogueError
from simulator.terminal import CONTACTLESS_CEILING, ProfileError, TerminalError, format_amount


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tpe-sim", description="Virtual Bluetooth LE payment terminal and test harness."
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v: log the protocol messages between phone and terminal and the backend's "
        "requests; -vv: also Bumble's own debug output (HCI, ATT, SMP)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="pay an unpaid invoice by contactless card, end to end, and print each stage"
    )
    demo.add_argument("--card", default="visa", help="catalogue card to tap (default: visa)")
    demo.add_argument("--invoice", help="invoice number (default: the first unpaid ≤ 50 €)")
    demo.add_argument("--seed", type=int, help="Faker seed for customers and invoices")
    demo.add_argument(
        "--terminal",
        default="standard",
        help="terminal profile of fixtures/terminals.yaml (default: standard; e.g. mise_a_jour "
        "for a first setup with a firmware update, code_a_saisir for passkey pairing)",
    )
    demo.add_argument(
        "--insert",
        action="store_true",
        help="insert the card and type the PIN (automatic above the 50 EUR contactless ceiling)",
    )
    demo.add_argument("--pin", help="PIN the customer types (default: the card's own PIN)")
    demo.add_argument(
        "--wait",
        type=_seconds,
        default=4.0,
        help="seconds the customer takes to tap (loop time, 0 to 3600; default 4)",
    )
    demo.add_argument(
        "--realtime", action="store_true", help="run on the wall clock instead of virtual time"
    )
    steps = commands.add_parser(
        "steps",
        help="list the Gherkin step phrases of the step library, with parameters and English",
    )
    steps.add_argument(
        "--markdown", action="store_true", help="print the Markdown of docs/steps.md instead"
    )
    from harness.standalone import app, backend, terminal

    terminal.add_arguments(
        commands.add_parser(
            "terminal",
            help="run one virtual terminal on a Bumble transport (RootCanal, Android emulator, "
            "USB dongle) until Ctrl-C, with its control API and web panel",
        )
    )
    backend.add_arguments(
        commands.add_parser(
            "backend", help="run the mock backend and processor, its data in an SQLite file"
        )
    )
    app.add_arguments(
        commands.add_parser(
            "app", help="run the virtual mobile app on a Bumble transport (associate, pay)"
        )
    )
    from harness.scenarios.cli import add_parser as add_scenario_parser

    add_scenario_parser(commands)
    capture = commands.add_parser(
        "capture",
        help="print the payment protocol's messages of btsnoop captures (--snoop, --tpe-snoop)",
    )
    capture.add_argument("files", nargs="+", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose >= 2 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.verbose == 1:
        for name in ("harness", "simulator"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    if args.command == "demo":
        return demo_command(args)
    if args.command == "steps":
        return steps_command(args)
    if args.command == "scenario":
        from harness.scenarios.cli import run_command

        return run_command(args)
    if args.command == "terminal":
        return terminal.terminal_command(args)
    if args.command == "backend":
        return backend.backend_command(args)
    if args.command == "app":
        return app.app_command(args)
    if args.command == "capture":
        return capture_command(args)
    return 2  # pragma: no cover - argparse enforces the choices


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def capture_command(args: argparse.Namespace) -> int:
    from harness.captures import CaptureError, describe, read_capture_file

    status = 0
    for path in args.files:
        try:
            capture = read_capture_file(path)
        except CaptureError as error:
            print(f"tpe-sim: capture illisible : {error}", file=sys.stderr)
            status = 2
            continue
        print(
            f"{path}: {capture.packets} paquets HCI, {capture.att_pdus} PDU ATT, "
            f"{len(capture.messages)} messages du protocole de paiement"
        )
        for line in describe(capture):
            print(f"  {line}")
    return status


def steps_command(args: argparse.Namespace) -> int:
    from harness.steps.catalogue import collect_steps, render_markdown, render_table

    steps = collect_steps()
    sys.stdout.write(render_markdown(steps) if args.markdown else render_table(steps))
    return 0


def demo_command(args: argparse.Namespace) -> int:
    try:
        world = World(WorldConfig(seed=args.seed, fast=not args.realtime, terminal=args.terminal))
    except (CatalogueError, ProfileError, FixtureError, KeyFixtureError, OSError) as error:
        print(f"tpe-sim: cannot load the fixtures: {error}", file=sys.stderr)
        return 2
    try:
        world.open()
        return _run_demo(world, args)
    except (PhoneError, WorldTimeout) as error:
        print(f"\n✗ ÉCHEC : {error}", file=sys.stderr)
        return 1
    except TerminalError as error:
        print(f"\n✗ ÉCHEC : carte présentée trop tard ({error})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrompu", file=sys.stderr)
        return 130
    finally:
        world.close()


def _run_demo(world: World, args: argparse.Namespace) -> int:
    def stage(name: str, text: str) -> None:
        print(f"[{world.loop_elapsed:7.3f} s]  {text}")

    world.app.listeners.append(stage)
    if args.card not in world.catalogue:
        known = ", ".join(world.catalogue) or "(none)"
        print(f"tpe-sim: unknown card {args.card!r}; known: {known}", file=sys.stderr)
        return 2
    if args.invoice:
        number = args.invoice
    else:
        found = world.unpaid_invoice(at_most_cents=CONTACTLESS_CEILING)
        if found is None:
            print("tpe-sim: no unpaid invoice of at most 50 € in the seeded data", file=sys.stderr)
            return 1
        number = found
    invoice = world.store.invoices.get(number)
    customer = world.store.customers.get(invoice.customer_id) if invoice else None
    card = world.catalogue[args.card]
    chip = args.insert or bool(invoice and invoice.balance_due_cents > CONTACTLESS_CEILING)
    title = "carte insérée et code" if chip else "carte sans contact"
    print(f"tpe-sim demo — paiement d'une facture par {title}\n")
    if invoice and customer:
        print(
            f"Facture {number} de {customer.name} : "
            f"{format_amount(invoice.balance_due_cents)} à régler "
            f"({STATUS_FR.get(invoice.status, invoice.status)})\n"
        )
    world.associate()
    world.start_payment(number)
    print(f"[{world.loop_elapsed:7.3f} s]  (le client sort sa carte {card.brand} …)")
    world.wait(args.wait)
    if chip:
        print(f"[{world.loop_elapsed:7.3f} s]  Le client insère sa carte dans le terminal")
        world.insert(args.card)
        if world.terminal.engine.state.value == "pin_entry":
            print(f"[{world.loop_elapsed:7.3f} s]  Le client saisit son code")
            world.enter_pin(args.pin or card.pin)
    else:
        print(f"[{world.loop_elapsed:7.3f} s]  Le client approche sa carte du terminal")
        world.tap(args.card)
    outcome = world.finish_payment()
    if outcome.receipt:
        print("\n  ---- ticket client ----")
        for line in outcome.receipt:
            print(f"  {line:^22}")
        print("  -----------------------")
    status = outcome.invoice.get("status")
    print(
        f"\nRésultat : {outcome.message} — facture {number} : {STATUS_FR.get(str(status), status)}"
        f"\nTemps de boucle {world.loop_elapsed:.3f} s, temps réel {world.wall_elapsed:.3f} s"
    )
    return 0 if outcome.result == "approved" and status == "paid" else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
