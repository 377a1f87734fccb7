"""``tpe-sim backend`` as a process: it answers, keeps its data across a restart, stops on
Ctrl-C, and refuses a file that is not its database."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

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
