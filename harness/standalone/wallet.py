"""The cardholders' cards of a standalone terminal, their counters kept in its data folder.

A card's application transaction counter (ATC) only goes up, and the issuer (the backend's
processor, which keeps its data across restarts) refuses a cryptogram whose ATC is not above
the last one it saw: a replay. A :class:`~harness.rig.World` keeps its cards in memory for
its own lifetime, which is fine; ``tpe-sim terminal`` runs for days and is restarted, so its
cards must not start again from the catalogue's counters. :class:`CardWallet` personalises
each card once and keeps its ATC and PIN tries in ``wallet.json``, written atomically (a
temporary file, then a rename) after every terminal step that moved one of them, before the
authorisation request that carries the new ATC leaves the terminal.

The file holds counters only, by catalogue key: no card number, no key::

    {"version": 1, "cards": {"visa": {"atc": 43, "pin_tries": 3}}}
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from simulator.ble import BleTerminal
from simulator.cards import CardProfile, VirtualCard

log = logging.getLogger(__name__)

WALLET_FILE = "wallet.json"
VERSION = 1
ATC_MAX = 0xFFFF

Counters = dict[str, int]


class WalletError(Exception):
    """The wallet file cannot be read or written; the message names it and says why."""


class CardWallet:
    """One physical card per catalogue key, its counters moving on across restarts.

    ``path``: the wallet file (None: counters in memory only); ``personalise``: builds the
    card of a catalogue profile (issuer keys); ``catalogue``: the profiles by key. Reading
    a file that is not a wallet raises :class:`WalletError` (the file is left as it is)."""

    def __init__(
        self,
        path: Path | None,
        personalise: Callable[[CardProfile], VirtualCard],
        catalogue: Mapping[str, CardProfile],
    ) -> None:
        self.path = path
        self._personalise = personalise
        self._catalogue = catalogue
        self._cards: dict[str, VirtualCard] = {}
        self._saved: dict[str, Counters] = self._load()
        self._written = dict(self._saved)
        self._failed = False
        self._watched: BleTerminal | None = None

    # ---------------------------------------------------------------- cards
    def card(self, key: str) -> VirtualCard:
        """The cardholder's card ``key``: the same object every time, its counters those
        the file kept (else the catalogue's). ``KeyError`` for a key not in the catalogue."""
        if key not in self._cards:
            card = self._personalise(self._catalogue[key])
            saved = self._saved.get(key)
            if saved is not None:
                card.atc = saved["atc"]
                card.pin_tries = saved["pin_tries"]
            self._cards[key] = card
        return self._cards[key]

    def counters(self) -> dict[str, Counters]:
        """What the file holds once saved: every card's ATC and PIN tries (cards of the file
        not used in this run are kept as they were)."""
        state = dict(self._saved)
        for key, card in self._cards.items():
            state[key] = {"atc": card.atc, "pin_tries": card.pin_tries}
        return state

    # ---------------------------------------------------------------- file
    def save(self) -> None:
        """Write the counters if they moved since the last write (atomically: the file is
        the old one or the new one, never half of it). Raises :class:`WalletError`."""
        state = self.counters()
        if self.path is None or state == self._written:
            return
        document = {"version": VERSION, "cards": dict(sorted(state.items()))}
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            with temporary.open("w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            raise WalletError(f"{self.path}: cannot write the cards' counters: {exc}") from exc
        self._written = state

    def watch(self, terminal: BleTerminal) -> None:
        """Save after every step of ``terminal`` (its listeners run right after the engine
        moved, before what it emitted is sent)."""
        self._watched = terminal
        terminal.listeners.append(self._after_step)

    def unwatch(self) -> None:
        if self._watched is not None:
            terminal, self._watched = self._watched, None
            if self._after_step in terminal.listeners:
                terminal.listeners.remove(self._after_step)

    def _after_step(self) -> None:
        try:
            self.save()
        except WalletError as exc:  # the terminal goes on; say it once, loudly
            if not self._failed:
                log.error("%s", exc)
            self._failed = True
        else:
            self._failed = False

    def _load(self) -> dict[str, Counters]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            document: Any = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise WalletError(f"{self.path}: unreadable: {exc}") from exc
        if not isinstance(document, dict) or document.get("version") != VERSION:
            raise WalletError(f"{self.path}: not a tpe-sim wallet (version {VERSION})")
        cards = document.get("cards")
        if not isinstance(cards, dict):
            raise WalletError(f"{self.path}: 'cards' must be a mapping")
        loaded: dict[str, Counters] = {}
        for key, counters in cards.items():
            if not isinstance(counters, dict):
                raise WalletError(f"{self.path}: card {key!r}: counters must be a mapping")
            atc, tries = counters.get("atc"), counters.get("pin_tries")
            if type(atc) is not int or not 0 <= atc <= ATC_MAX:
                raise WalletError(f"{self.path}: card {key!r}: atc must be 0 to {ATC_MAX}")
            if type(tries) is not int or tries < 0:
                raise WalletError(
                    f"{self.path}: card {key!r}: pin_tries must be a non-negative integer"
                )
            loaded[str(key)] = {"atc": atc, "pin_tries": tries}
        return loaded


__all__ = ["WALLET_FILE", "CardWallet", "WalletError"]
