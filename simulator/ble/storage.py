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
COUNTER_FILE = "dukpt.json"
CONFIG_FILE = "config.json"


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
        """Factory reset: no bond, no configuration; the installed firmware stays."""
        (self.path / BONDS_FILE).unlink(missing_ok=True)
        self.save_configuration(None, firmware)
