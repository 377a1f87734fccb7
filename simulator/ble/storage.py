"""The terminal's data folder: its bonds (Bumble's JSON key store) and its configuration.

Kept across restarts of the terminal process: a restarted terminal reconnects its bonded
phones without a new pairing and stays configured. A factory reset empties it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from bumble.keys import JsonKeyStore

from simulator.terminal import MerchantSetup

log = logging.getLogger(__name__)

BONDS_FILE = "bonds.json"
CONFIG_FILE = "config.json"


class TerminalDataFolder:
    def __init__(self, path: Path, serial: str) -> None:
        self.path = path
        self.serial = serial
        path.mkdir(parents=True, exist_ok=True)

    def keystore(self) -> JsonKeyStore:
        return JsonKeyStore(namespace=self.serial, filename=str(self.path / BONDS_FILE))

    def load_configuration(self) -> tuple[MerchantSetup | None, str | None]:
        """The merchant setup and firmware saved by the last completed first setup."""
        try:
            data = json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
            return MerchantSetup(**data["merchant"]), str(data["firmware"])
        except FileNotFoundError:
            return None, None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path / CONFIG_FILE, exc)
            return None, None

    def save_configuration(self, merchant: MerchantSetup, firmware: str) -> None:
        target = self.path / CONFIG_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_text(
            json.dumps({"merchant": asdict(merchant), "firmware": firmware}), encoding="utf-8"
        )
        temporary.replace(target)  # atomic: a crash never leaves half a file

    def clear(self) -> None:
        for name in (BONDS_FILE, CONFIG_FILE):
            (self.path / name).unlink(missing_ok=True)
