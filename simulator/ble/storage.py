"""The terminal's data folder: its bonds (Bumble's JSON key store), its configuration, its
DUKPT counter and its transaction journal (SQLite).

Kept across restarts of the terminal process: a restarted terminal reconnects its bonded
phones without a new pairing, stays configured, and still knows how each transaction ended
(the phone asks after a link loss). A factory reset empties it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import asdict, astuple, fields
from pathlib import Path

from bumble.keys import JsonKeyStore

from simulator.cards import EntryMode
from simulator.terminal import MerchantSetup, State
from simulator.terminal.journal import JournalEntry

log = logging.getLogger(__name__)

BONDS_FILE = "bonds.json"
COUNTER_FILE = "dukpt.json"
CONFIG_FILE = "config.json"
JOURNAL_FILE = "journal.sqlite"
JOURNAL_SCHEMA = 1
_COLUMNS = [f.name for f in fields(JournalEntry)]
_LISTS = ("receipt", "merchant_receipt")


_TEXT = ("transaction_id", "kind", "currency", "reference", "state", "cvm", "message")
_OPTIONAL_TEXT = (
    "response_code",
    "authorisation_code",
    "brand",
    "masked_pan",
    "entry_mode",
)


def _check_row(values: dict[str, object]) -> None:
    """Every field of a journal row has the type and the values the terminal writes."""
    for name in _TEXT:
        if not isinstance(values[name], str):
            raise TypeError(f"{name} must be text, not {values[name]!r}")
    for name in _OPTIONAL_TEXT:
        if values[name] is not None and not isinstance(values[name], str):
            raise TypeError(f"{name} must be text or empty, not {values[name]!r}")
    amount = values["amount"]
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise TypeError(f"amount must be a whole number of cents, not {values['amount']!r}")
    for name in _LISTS:
        lines = values[name]
        if not isinstance(lines, tuple) or not all(isinstance(x, str) for x in lines):
            raise TypeError(f"{name} must be a list of lines")
    if values["kind"] not in ("payment", "capture"):
        raise ValueError(f"kind must be payment or capture, not {values['kind']!r}")
    State(str(values["state"]))  # a state this terminal knows (text: checked above)
    if values["entry_mode"] is not None:
        EntryMode(str(values["entry_mode"]))


class JournalError(RuntimeError):
    """The journal file cannot be used: the terminal must not start and forget its history."""


def set_aside_if_unreadable(path: Path) -> None:
    """A bonds file that is not a JSON object (crash, hand edit) is renamed ``*.corrupt``
    rather than crashing the start: its bonds are lost, phones pair again."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        log.warning("%s is unreadable: set aside, its bonds are lost", path)
        path.replace(path.with_name(path.name + ".corrupt"))


class TerminalDataFolder:
    def __init__(self, path: Path, serial: str) -> None:
        self.path = path
        self.serial = serial
        self._db: sqlite3.Connection | None = None
        path.mkdir(parents=True, exist_ok=True)

    def keystore(self) -> JsonKeyStore:
        set_aside_if_unreadable(self.path / BONDS_FILE)
        return JsonKeyStore(namespace=self.serial, filename=str(self.path / BONDS_FILE))

    def load_configuration(self) -> tuple[MerchantSetup | None, str | None]:
        """The merchant setup (None before first setup or after a factory reset) and the
        installed firmware."""
        try:
            data = json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
            merchant = data["merchant"]
            return (MerchantSetup(**merchant) if merchant else None), str(data["firmware"])
        except FileNotFoundError:
            return None, None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path / CONFIG_FILE, exc)
            return None, None

    def save_configuration(self, merchant: MerchantSetup | None, firmware: str) -> None:
        target = self.path / CONFIG_FILE
        temporary = target.with_suffix(".tmp")
        data = {"merchant": asdict(merchant) if merchant else None, "firmware": firmware}
        temporary.write_text(json.dumps(data), encoding="utf-8")
        temporary.replace(target)  # atomic: a crash never leaves half a file

    def load_counter(self) -> int:
        """The last AES DUKPT transaction counter used: the next one must be above it, across
        restarts of the process (a counter is never used twice)."""
        try:
            value = json.loads((self.path / COUNTER_FILE).read_text(encoding="utf-8"))["counter"]
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.path / COUNTER_FILE} is unreadable: {exc}") from exc
        if type(value) is not int or value < 0:
            raise ValueError(f"{self.path / COUNTER_FILE}: counter must be a whole number")
        return value

    def save_counter(self, counter: int) -> None:
        target = self.path / COUNTER_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps({"counter": counter}), encoding="utf-8")
        temporary.replace(target)

    def clear(self, firmware: str) -> None:
        """Factory reset: no bond, no configuration, no journal; the firmware stays."""
        (self.path / BONDS_FILE).unlink(missing_ok=True)
        self.save_configuration(None, firmware)
        with self._journal() as db:
            db.execute("DELETE FROM transactions")

    # ---------------------------------------------------------------- transaction journal
    def _journal(self) -> sqlite3.Connection:
        """The journal database, opened (and its schema checked) once, created on first use.
        Every write is its own transaction (``with`` commits it): a power cut leaves the last
        complete state."""
        if self._db is None:
            self._db = self._open_journal()
        return self._db

    def close(self) -> None:
        """Close the journal (the terminal is switched off); the next use opens it again."""
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def _open_journal(self) -> sqlite3.Connection:
        path = self.path / JOURNAL_FILE
        try:
            db = sqlite3.connect(path)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                columns = ", ".join(
                    f"{name} TEXT PRIMARY KEY" if name == "transaction_id" else name
                    for name in _COLUMNS
                )
                with db:
                    db.execute(f"CREATE TABLE IF NOT EXISTS transactions ({columns})")
                    db.execute(f"PRAGMA user_version = {JOURNAL_SCHEMA}")
            elif version != JOURNAL_SCHEMA:
                db.close()
                raise JournalError(
                    f"{path}: journal schema {version}, this terminal reads {JOURNAL_SCHEMA}"
                )
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{path} is not a readable transaction journal: {exc}") from exc
        return db

    def save_journal(self, entries: list[JournalEntry]) -> None:
        """Write (insert or replace) the given transactions, atomically."""
        if not entries:
            return
        rows = []
        for entry in entries:
            row = list(astuple(entry))
            for name in _LISTS:
                index = _COLUMNS.index(name)
                row[index] = json.dumps(list(row[index]), ensure_ascii=False)
            rows.append(row)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        with self._journal() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO transactions ({', '.join(_COLUMNS)}) "
                f"VALUES ({placeholders})",
                rows,
            )

    def load_journal(self) -> list[JournalEntry]:
        """Every transaction of the journal, oldest first."""
        try:
            rows = (
                self._journal()
                .execute(f"SELECT {', '.join(_COLUMNS)} FROM transactions ORDER BY rowid")
                .fetchall()
            )
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{self.path / JOURNAL_FILE}: {exc}") from exc
        entries = []
        for number, row in enumerate(rows, start=1):
            values = dict(zip(_COLUMNS, row, strict=True))
            try:
                for name in _LISTS:
                    lines = json.loads(values[name])
                    if not isinstance(lines, list):
                        raise TypeError(f"{name} must be a list of lines, not {lines!r}")
                    values[name] = tuple(lines)
                _check_row(values)
                entry = JournalEntry(**values)
            except (ValueError, TypeError) as exc:
                raise JournalError(
                    f"{self.path / JOURNAL_FILE}: transaction {number} "
                    f"({values.get('transaction_id')!r}) is unreadable: {exc}. Move the file "
                    "away to start with an empty journal (its history is then lost)."
                ) from exc
            entries.append(entry)
        return entries
