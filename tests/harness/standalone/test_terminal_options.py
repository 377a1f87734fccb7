"""``tpe-sim terminal`` refuses bad setup with one French line and exit status 2, never a
traceback: run in this process (``main([...])``), before any radio starts — the transport
given is a port where nothing listens, so a check that let a bad setup through would end on
the transport's error instead of its own."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import sqlite3
from pathlib import Path

import pytest

from harness.cli import main
from harness.fixtures import fixtures_dir
from harness.standalone.terminal import LOCK_FILE, StandaloneTerminal, TerminalOptions
from harness.standalone.wallet import WALLET_FILE
from simulator.ble.storage import COUNTER_FILE, JOURNAL_FILE
from simulator.cards import Catalogue


@pytest.fixture
def nowhere() -> str:
    """A transport name whose TCP port refuses connections."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"tcp-client:127.0.0.1:{port}"


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``tpe-sim terminal ARGV``: exit 2, one line on stderr (returned), no traceback."""
    assert main(["terminal", *argv]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("tpe-sim terminal : ")
    return captured.err


def test_a_data_folder_that_is_a_file(
    tmp_path: Path, nowhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "notes.txt"
    data.write_text("pas un dossier\n", encoding="utf-8")
    err = refused(capsys, "--transport", nowhere, "--data", str(data))
    assert f"dossier de données {data} inutilisable — " in err
    assert data.read_text(encoding="utf-8") == "pas un dossier\n"


@pytest.mark.parametrize("kind", ["garbage", "other schema"])
def test_an_unusable_journal(
    tmp_path: Path, nowhere: str, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    journal = tmp_path / JOURNAL_FILE
    if kind == "garbage":
        journal.write_bytes(b"not a database at all " * 100)
    else:
        with sqlite3.connect(journal) as db:
            db.execute("PRAGMA user_version = 99")
    before = journal.read_bytes()
    err = refused(capsys, "--transport", nowhere, "--data", str(tmp_path))
    assert "journal des transactions inutilisable — " in err
    assert str(journal) in err
    assert "Déplacez le fichier" in err
    assert journal.read_bytes() == before


def test_a_corrupt_dukpt_counter(
    tmp_path: Path, nowhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / COUNTER_FILE).write_text('{"counter": "beaucoup"}', encoding="utf-8")
    err = refused(capsys, "--transport", nowhere, "--data", str(tmp_path))
    assert "compteur DUKPT illisible — " in err
    assert COUNTER_FILE in err


def test_a_corrupt_wallet(tmp_path: Path, nowhere: str, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / WALLET_FILE).write_text("[", encoding="utf-8")
    err = refused(capsys, "--transport", nowhere, "--data", str(tmp_path))
    assert "compteurs des cartes illisibles — " in err


def test_a_control_port_already_taken(
    tmp_path: Path, nowhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = refused(
            capsys, "--transport", nowhere, "--data", str(tmp_path), "--control-port", str(port)
        )
    assert f"port de contrôle 127.0.0.1:{port} indisponible" in err
    assert "--control-port" in err


def test_an_unknown_profile(
    tmp_path: Path, nowhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(capsys, "--transport", nowhere, "--data", str(tmp_path), "--profile", "nope")
    assert "profil de terminal « nope » absent de terminals.yaml" in err
    assert "standard" in err  # the known ones are listed


def test_a_transport_that_does_not_open(
    tmp_path: Path, nowhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = refused(capsys, "--transport", nowhere, "--data", str(tmp_path))
    assert f"impossible d'ouvrir le transport {nowhere} — " in err


def test_a_data_folder_another_terminal_uses(
    tmp_path: Path, nowhere: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two terminals on one folder would write the same journal and counters: refused."""
    data = tmp_path / "data"
    data.mkdir()
    holder = os.open(data / LOCK_FILE, os.O_RDWR | os.O_CREAT)  # another terminal runs
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        error = refused(capsys, "--transport", nowhere, "--data", str(data))
        assert f"le dossier de données {data} est déjà utilisé par un autre tpe-sim" in error
    finally:
        os.close(holder)
    # once it has gone, this one gets past the lock (and on to the transport, closed here)
    assert main(["terminal", "--transport", nowhere, "--data", str(data)]) == 2
    assert "déjà utilisé" not in capsys.readouterr().err


def test_the_scenario_names_come_from_the_fixtures_given(tmp_path: Path, nowhere: str) -> None:
    """Under ``--fixtures X`` the panel checks scripts against X's profiles and cards (read
    once, at start), not the repository's."""
    fixtures = tmp_path / "fixtures"
    shutil.copytree(fixtures_dir(), fixtures)
    terminals = fixtures / "terminals.yaml"
    text = terminals.read_text(encoding="utf-8")
    extra = text[text.index("  standard:") : text.index("\n\n", text.index("  standard:"))]
    extra = extra.replace("  standard:", "  atelier:").replace("SIM0001", "SIM0999")
    terminals.write_text(text.replace("terminals:\n", f"terminals:\n{extra}\n\n"), "utf-8")
    options = TerminalOptions(transport=nowhere, data=tmp_path / "data", fixtures=fixtures)
    known = StandaloneTerminal(options).known
    assert "atelier" in known.terminals
    assert "standard" in known.terminals
    assert set(known.cards) == set(Catalogue.load(fixtures / "cards.yaml"))
    assert "VISA" in known.cards["cb_visa"]
