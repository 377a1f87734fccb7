"""``tpe-sim backend``: the mock invoicing backend and card processor as a process of its own.

Seeded like a world's (``--seed``, ``--fixtures``: the same customers and invoices), served on
``--host``/``--port`` (0: a free port, printed), with its data in an SQLite file (``--db``):
every request that changes something is saved before the next one is read, so a restart
finds its invoices, payments, receipts, terminals, card captures and saved cards again. A
file that is not one of its databases is refused with a clear message, untouched.

One backend per file: while it runs it holds an exclusive ``flock`` on ``FILE.lock`` next to
the database, and a second ``tpe-sim backend`` on the same ``--db`` is refused (exit 2)
instead of both writing and the last one winning. The kernel drops the lock when the
process ends, however it ends (Ctrl-C, SIGKILL, a crash).

Its clock is the wall clock (authorisation holds lapse in real minutes); seeded invoices are
dated from the fixtures' scenario date.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.backend import BackendServer
from harness.backend.persistence import BackendDatabase, PersistenceError
from harness.backend.seed import FixtureError, load_processor, load_seed_settings, seed_store
from harness.fixtures import fixtures_dir
from harness.keys import KeyFixtureError
from harness.standalone.process import (
    READY_LINE,
    LockHeld,
    Printer,
    hold_lock,
    print_line,
    serve_until_signal,
)
from simulator.cards import CatalogueError

log = logging.getLogger(__name__)

DEFAULT_DB = Path("tpe-sim-data") / "backend.sqlite"


@dataclass
class BackendOptions:
    host: str = "127.0.0.1"
    port: int = 0
    seed: int | None = None  # None: the fixtures' seed
    fixtures: Path = field(default_factory=fixtures_dir)
    db: Path = DEFAULT_DB


def count(n: int, singular: str, plural: str) -> str:
    """``n`` things in French: singular for 0 and 1 (« 0 terminal associé », « 1 facture »),
    plural from 2 (« 2 terminaux associés »)."""
    return f"{n} {singular if n < 2 else plural}"


class BackendStartError(Exception):
    """The backend cannot start: one French line for a human, the technical detail after."""


def lock_path(db: Path) -> Path:
    """The lock file of database ``db``: ``shop.sqlite`` → ``shop.sqlite.lock``."""
    return db.with_name(db.name + ".lock")


class StandaloneBackend:
    """A :class:`BackendServer` whose store lives in an SQLite file."""

    def __init__(self, options: BackendOptions) -> None:
        self.options = options
        self.database = BackendDatabase(options.db)
        self.server: BackendServer | None = None
        self.resumed = False  # the store came from the file (else: freshly seeded)
        self.seed = 0
        self.save_errors = 0
        self._lock_fd: int | None = None

    async def start(self) -> None:
        """Lock the database, load (or seed and save) the store, then listen. Raises
        :class:`BackendStartError` (French, with the detail) when it cannot; then nothing is
        left running or locked."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        options = self.options
        db = options.db
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            self._lock()
            loaded = self.database.load_with_seed()
        except PersistenceError as exc:
            raise BackendStartError(f"la base {db} est inutilisable — {exc}") from exc
        except OSError as exc:
            raise BackendStartError(f"impossible d'utiliser la base {db} — {exc}") from exc
        try:
            settings = load_seed_settings(options.fixtures)
            if loaded is not None:
                self.resumed = True
                store, self.seed = loaded
            else:
                self.seed = settings.faker_seed if options.seed is None else options.seed
                store = seed_store(options.fixtures, seed=self.seed)
            processor = load_processor(options.fixtures)
        except (FixtureError, KeyFixtureError, CatalogueError, OSError) as exc:
            raise BackendStartError(
                f"données de départ illisibles dans {options.fixtures} — {exc}"
            ) from exc
        if not self.resumed:
            try:
                self.database.save(store, seed=self.seed)
            except (PersistenceError, OSError) as exc:
                raise BackendStartError(f"impossible d'écrire la base {db} — {exc}") from exc
        server = BackendServer(store, processor, host=options.host, port=options.port)
        server.after_change.append(self.save)
        try:
            await server.start()
        except OSError as exc:
            raise BackendStartError(
                f"impossible d'écouter sur {options.host}:{options.port} (port déjà pris ?) — {exc}"
            ) from exc
        self.server = server

    def _lock(self) -> None:
        """Hold the database's lock file (exclusive ``flock``) until :meth:`stop` or the
        process ends; another backend holding it is a :class:`BackendStartError`."""
        path = lock_path(self.options.db)
        try:
            self._lock_fd = hold_lock(path)
        except LockHeld:
            raise BackendStartError(
                f"la base {self.options.db} est déjà utilisée par un autre tpe-sim backend "
                f"(verrou {path}) : arrêtez-le, ou choisissez un autre --db"
            ) from None

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def save(self) -> None:
        """Write the store to the database (after every mutating request)."""
        assert self.server is not None
        try:
            self.database.save(self.server.store, seed=self.seed)
        except (PersistenceError, OSError) as exc:
            self.save_errors += 1
            log.error("backend database not saved: %s", exc)
            print(f"tpe-sim backend : ÉCHEC de l'enregistrement : {exc}", file=sys.stderr)

    async def stop(self) -> None:
        """Stop listening, save, release the database (idempotent)."""
        try:
            if self.server is not None:
                server, self.server = self.server, None
                await server.stop()
                self.database.save(server.store, seed=self.seed)
        finally:
            self.database.close()
            self._unlock()

    def describe(self) -> list[str]:
        assert self.server is not None
        store = self.server.store
        origin = (
            "reprise de la base existante"
            if self.resumed
            else f"données générées avec la graine {self.seed}"
        )
        if self.resumed and self.options.seed not in (None, self.seed):
            origin += f", graine {self.seed} : --seed {self.options.seed} ignoré"
        unpaid = sum(1 for invoice in store.invoices.values() if invoice.status != "paid")
        return [
            f"tpe-sim backend — {store.merchant.name} ({store.merchant.city})",
            f"Base : {self.options.db.resolve()} ({origin})",
            f"Données : {count(len(store.customers), 'client', 'clients')}, "
            f"{count(len(store.invoices), 'facture', 'factures')} dont {unpaid} à régler, "
            f"{count(len(store.terminals), 'terminal associé', 'terminaux associés')}",
            f"API : {self.server.url}",
            f"{READY_LINE} le backend répond. Ctrl-C pour l'arrêter.",
        ]


async def serve(options: BackendOptions, out: Printer = print_line) -> int:
    """Run until SIGINT or SIGTERM; 0 after a clean stop, 2 when it cannot start."""

    async def start() -> StandaloneBackend:
        backend = StandaloneBackend(options)
        await backend.start()
        return backend

    return await serve_until_signal(
        start,
        BackendStartError,
        command="backend",
        stopping="Arrêt du backend…",
        stopped=lambda _: f"Backend arrêté ; ses données restent dans {options.db.resolve()}",
        out=out,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=0, help="port (default 0: a free one, printed at start)"
    )
    parser.add_argument(
        "--seed", type=int, help="Faker seed of a new database (default: the fixtures')"
    )
    parser.add_argument(
        "--fixtures", type=Path, default=None, help="folder of merchant.yaml, cards.yaml, …"
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=DEFAULT_DB,
        metavar="FILE",
        help=f"SQLite file holding the backend's data (default: {DEFAULT_DB}); created and "
        "seeded when missing, resumed otherwise",
    )


def backend_command(args: argparse.Namespace) -> int:
    """``tpe-sim backend``: see the module docstring."""
    if not 0 <= args.port <= 65535:
        print(f"tpe-sim backend : --port {args.port} n'est pas un port TCP", file=sys.stderr)
        return 2
    options = BackendOptions(
        host=args.host,
        port=args.port,
        seed=args.seed,
        fixtures=args.fixtures or fixtures_dir(),
        db=args.db,
    )
    return asyncio.run(serve(options))
