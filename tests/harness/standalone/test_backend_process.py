"""``tpe-sim backend`` as a process: it answers, keeps its data across a restart, stops on
Ctrl-C, refuses a file that is not its database and a database another backend uses; bad
setup is one French line and exit 2."""

from __future__ import annotations

import asyncio
import fcntl
import json
import socket
import sqlite3
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness.backend.store import Terminal
from harness.cli import main
from harness.standalone.backend import BackendOptions, StandaloneBackend, count, lock_path
from harness.standalone.processes import TpeSimProcess, start_backend


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def put(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_the_backend_keeps_its_changes_across_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "backend.sqlite"
    with start_backend(db=db, seed=11) as backend:
        invoices = get(f"{backend.url}/api/invoices")["invoices"]
        assert invoices
        assert get(f"{backend.url}/api/billing/settings") == {"tpe_enabled": True}
        put(f"{backend.url}/api/billing/settings", {"tpe_enabled": False})
        backend.process.kill()  # SIGKILL: no chance to save on the way out
        backend.wait()

    with start_backend(db=db, seed=99) as again:  # the file wins over --seed
        # saved when the request was answered, not at exit
        assert get(f"{again.url}/api/billing/settings") == {"tpe_enabled": False}
        assert get(f"{again.url}/api/invoices")["invoices"] == invoices
        assert "reprise de la base existante" in again.output
        assert "--seed 99 ignoré" in again.output
        put(f"{again.url}/api/billing/settings", {"tpe_enabled": True})
        assert again.interrupt() == 0  # Ctrl-C: a clean stop
    assert "données restent dans" in again.output

    with start_backend(db=db) as third:
        assert get(f"{third.url}/api/billing/settings") == {"tpe_enabled": True}


def test_a_file_that_is_not_its_database_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "notes.sqlite"
    db.write_text("shopping list: milk, eggs\n" * 200, encoding="utf-8")
    before = db.read_bytes()
    with TpeSimProcess(["backend", "--db", str(db)]) as backend:
        assert backend.wait() == 2
    assert "not a usable tpe-sim backend database" in backend.output
    assert str(db) in backend.output
    assert "Traceback" not in backend.output
    assert db.read_bytes() == before


def test_a_second_backend_on_the_same_database_is_refused_until_the_first_ends(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.sqlite"
    with start_backend(db=db) as first:
        put(f"{first.url}/api/billing/settings", {"tpe_enabled": False})
        saved = db.read_bytes()

        with TpeSimProcess(["backend", "--db", str(db)]) as second:
            assert second.wait() == 2  # refused at once (a hang here: it serves too)
        assert second.lines == [
            f"tpe-sim backend : la base {db} est déjà utilisée par un autre tpe-sim backend "
            f"(verrou {lock_path(db)}) : arrêtez-le, ou choisissez un autre --db"
        ]
        assert db.read_bytes() == saved  # the second one wrote nothing
        assert get(f"{first.url}/api/billing/settings") == {"tpe_enabled": False}

        first.process.kill()  # SIGKILL: the kernel drops the lock with the process
        first.wait()

    with start_backend(db=db) as again:
        assert get(f"{again.url}/api/billing/settings") == {"tpe_enabled": False}
        assert again.interrupt() == 0
    assert lock_path(db).exists()  # kept (deleting a lock file races), but free:
    with start_backend(db=db) as third:
        assert third.interrupt() == 0


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """``tpe-sim ARGV`` in this process: exit 2 and one line on stderr, which is returned."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert captured.err.count("\n") == 1, captured.err
    return captured.err


def test_bad_setup_of_the_backend_is_one_french_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "a-folder.sqlite"
    folder.mkdir()
    err = refused(capsys, ["backend", "--db", str(folder)])
    assert err.startswith(f"tpe-sim backend : la base {folder} est inutilisable — ")
    assert "cannot open the database" in err

    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = refused(capsys, ["backend", "--db", str(blocker / "shop.sqlite")])
    assert "impossible d'utiliser la base" in err

    notes = tmp_path / "notes.sqlite"
    sqlite3.connect(notes).execute("CREATE TABLE notes (text TEXT)").connection.commit()
    before = notes.read_bytes()
    err = refused(capsys, ["backend", "--db", str(notes)])
    assert err.startswith(f"tpe-sim backend : la base {notes} est inutilisable — ")
    assert "another program" in err  # the technical detail follows
    assert notes.read_bytes() == before

    missing = tmp_path / "no-fixtures"
    err = refused(
        capsys, ["backend", "--db", str(tmp_path / "b.sqlite"), "--fixtures", str(missing)]
    )
    assert "données de départ illisibles" in err

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = refused(capsys, ["backend", "--db", str(tmp_path / "c.sqlite"), "--port", str(port)])
    assert f"impossible d'écouter sur 127.0.0.1:{port}" in err
    # and after all these refusals, the database is free for a backend that can start
    assert fcntl_free(lock_path(tmp_path / "c.sqlite"))


def fcntl_free(path: Path) -> bool:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_counts_are_french_singular_for_zero_and_one() -> None:
    assert count(0, "terminal associé", "terminaux associés") == "0 terminal associé"
    assert count(1, "terminal associé", "terminaux associés") == "1 terminal associé"
    assert count(2, "terminal associé", "terminaux associés") == "2 terminaux associés"
    assert count(1, "facture", "factures") == "1 facture"


def test_the_start_banner_counts_in_french(tmp_path: Path) -> None:
    async def banners() -> list[str]:
        backend = StandaloneBackend(BackendOptions(db=tmp_path / "b.sqlite"))
        await backend.start()
        try:
            assert backend.server is not None
            terminals = backend.server.store.terminals
            seen = [backend.describe()[2]]
            for serial in ("SIM0001", "SIM0002"):
                at = datetime(2026, 1, 5, tzinfo=UTC)
                terminals[serial] = Terminal(serial, "TPE-BLE-1", "1.4.2", at)
                seen.append(backend.describe()[2])
            return seen
        finally:
            await backend.stop()

    none, one, two = asyncio.run(banners())
    assert none.endswith(", 0 terminal associé")
    assert one.endswith(", 1 terminal associé")
    assert two.endswith(", 2 terminaux associés")
    assert none.startswith("Données : ")
    assert " clients, " in none  # the seed has many
