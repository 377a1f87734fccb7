"""Terminal profiles (``fixtures/terminals.yaml``): identity, radio and security settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simulator.cards.catalogue import SAFE_LOADER

IO_CAPABILITIES = ("display_yes_no", "display_only", "keyboard_display", "no_input_no_output")


class ProfileError(ValueError):
    """A terminal profile that does not hold together; names the profile and the field."""


@dataclass(frozen=True)
class TerminalProfile:
    key: str
    serial: str
    manufacturer: str
    model: str
    firmware: str
    address: str
    io_capability: str = "display_yes_no"
    battery: int = 100
    advertising_interval_ms: int = 250
    #: phones it keeps bonds with; a new phone beyond that is refused until one is forgotten
    max_bonds: int = 3
    #: the firmware version its maker's server offers at first setup, if newer than ``firmware``
    firmware_update: str | None = None
    #: loop seconds to download the configuration, and the firmware update when there is one
    configuration_seconds: int = 90
    firmware_seconds: int = 240
    #: below this battery level (percent) first setup is refused
    min_setup_battery: int = 20
    #: below this battery level (percent) payments and card captures are refused
    min_transaction_battery: int = 5
    #: percent of battery each transaction that reads a card costs
    battery_per_transaction: int = 1

    @property
    def name(self) -> str:
        """The advertised BLE name."""
        return f"TPE-{self.serial}"

    @classmethod
    def from_dict(cls, key: str, data: Any) -> TerminalProfile:
        def fail(name: str, why: str) -> ProfileError:
            return ProfileError(f"terminal {key!r}: field {name!r} {why}")

        if not isinstance(data, dict):
            raise ProfileError(f"terminal {key!r}: must be a mapping of fields")
        for name in ("serial", "manufacturer", "model", "firmware", "address"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise fail(name, "is required and must be a string")
        io = data.get("io_capability", "display_yes_no")
        if io not in IO_CAPABILITIES:
            raise fail("io_capability", f"must be one of {', '.join(IO_CAPABILITIES)}")
        battery = data.get("battery", 100)
        if type(battery) is not int or not 0 <= battery <= 100:
            raise fail("battery", "must be an integer from 0 to 100")
        interval = data.get("advertising_interval_ms", 250)
        if type(interval) is not int or not 20 <= interval <= 10240:
            raise fail("advertising_interval_ms", "must be an integer from 20 to 10240")
        counts = {}
        for name, default, low in (
            ("max_bonds", 3, 1),
            ("configuration_seconds", 90, 1),
            ("firmware_seconds", 240, 1),
            ("min_setup_battery", 20, 0),
            ("min_transaction_battery", 5, 0),
            ("battery_per_transaction", 1, 0),
        ):
            value = data.get(name, default)
            if type(value) is not int or value < low:
                raise fail(name, f"must be an integer of at least {low}")
            counts[name] = value
        update = data.get("firmware_update")
        if update is not None and (not isinstance(update, str) or not update):
            raise fail("firmware_update", "must be a version string")
        return cls(
            key=key,
            serial=data["serial"],
            manufacturer=data["manufacturer"],
            model=data["model"],
            firmware=data["firmware"],
            address=data["address"],
            io_capability=io,
            battery=battery,
            advertising_interval_ms=interval,
            firmware_update=update,
            **counts,
        )


def load_profiles(path: Path) -> dict[str, TerminalProfile]:
    """Read every profile of a terminals file, with errors that name the file."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("terminals"), dict):
        raise ProfileError(f"{path}: expected a top-level 'terminals:' mapping")
    profiles = {}
    for key, entry in data["terminals"].items():
        try:
            profiles[str(key)] = TerminalProfile.from_dict(str(key), entry)
        except ProfileError as exc:
            raise ProfileError(f"{path}: {exc}") from None
    return profiles
