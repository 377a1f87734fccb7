"""The terminal's data folder: the SQLite transaction journal across restarts, and what an
unreadable journal does (a clear error naming the file, never a silent loss of history)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from simulator.ble.storage import JOURNAL_FILE, JournalError, TerminalDataFolder
from simulator.terminal.journal import JournalEntry

ENTRY = JournalEntry(
    transaction_id="T-1",
    kind="payment",
    amount=4250,
    currency="EUR",
    reference="F-2026-0001",
    state="approved",
    response_code="00",
    authorisation_code="A1B2C3",
    brand="VISA",
    masked_pan="************4242",
    entry_mode="contactless",
    cvm="none",
    message="Paiement accepté",
    receipt=("PLOMBERIE", "MONTANT = 42,50 EUR"),
    merchant_receipt=("PLOMBERIE", "TICKET COMMERCANT"),
)


def test_the_journal_keeps_transactions_across_folders_opened_again(tmp_path: Path) -> None:
    TerminalDataFolder(tmp_path, "SIM0001").save_journal([ENTRY])
    later = TerminalDataFolder(tmp_path, "SIM0001")  # another process, the same folder
    later.save_journal([ENTRY.__class__(**{**ENTRY.__dict__, "message": "Payé"})])
    assert [e.message for e in later.load_journal()] == ["Payé"]  # replaced, not doubled
    later.clear("1.4.2")  # factory reset
    assert later.load_journal() == []


@pytest.mark.parametrize(
    ("column", "value", "why"),  # value: what a damaged or hand-edited row holds
    [
        ("state", "frobnicated", "not a valid State"),
        ("receipt", "[not json", "Expecting value"),
        ("entry_mode", "telepathy", "not a valid EntryMode"),
        ("amount", "abc", "amount must be a whole number of cents"),
        ("receipt", '"TICKET"', "receipt must be a list of lines"),
        ("kind", "refund", "kind must be payment or capture"),
        ("currency", None, "currency must be text"),
    ],
)
def test_an_unreadable_row_is_an_error_naming_the_file_and_the_transaction(
    tmp_path: Path, column: str, value: str | None, why: str
) -> None:
    folder = TerminalDataFolder(tmp_path, "SIM0001")
    folder.save_journal([ENTRY])
    with sqlite3.connect(tmp_path / JOURNAL_FILE) as db:
        db.execute(f"UPDATE transactions SET {column} = ?", (value,))
    with pytest.raises(JournalError) as refused:
        folder.load_journal()
    message = str(refused.value)
    assert str(tmp_path / JOURNAL_FILE) in message
    assert "'T-1'" in message
    assert why in message
    assert "Move the file away" in message


def test_a_file_that_is_not_a_journal_is_refused_untouched(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match="not a readable transaction journal"):
        TerminalDataFolder(tmp_path, "SIM0001").load_journal()
    assert (tmp_path / JOURNAL_FILE).read_bytes() == b"this is not sqlite" * 100
