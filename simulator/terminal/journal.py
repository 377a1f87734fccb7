"""The terminal's transaction journal: what it keeps of each transaction across power cycles.

Plain data (sans-IO): the engine produces and restores :class:`JournalEntry` snapshots; the
driver stores them (SQLite in the terminal's data folder, :mod:`simulator.ble.storage`). An
entry never holds card data: the masked PAN and the receipts only, as a real terminal's
journal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JournalEntry:
    transaction_id: str
    kind: str  # payment | capture
    amount: int
    currency: str
    reference: str
    state: str  # a terminal state name (simulator.terminal.engine.State)
    response_code: str | None
    authorisation_code: str | None
    brand: str | None
    masked_pan: str | None
    entry_mode: str | None
    cvm: str
    message: str
    receipt: tuple[str, ...]
    merchant_receipt: tuple[str, ...]
