"""Terminal profiles: the fixture file, and errors that name the file, profile and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.terminal import ProfileError, TerminalProfile, load_profiles

TERMINALS_FILE = Path(__file__).resolve().parents[3] / "fixtures" / "terminals.yaml"
VALID: dict[str, Any] = {
    "serial": "SIM0042",
    "manufacturer": "tpe-sim",
    "model": "TPE-BLE-1",
    "firmware": "1.4.2",
    "address": "C0:11:22:33:44:42",
    "io_capability": "display_only",
    "battery": 55,
    "advertising_interval_ms": 100,
}


def write(tmp_path: Path, entry: Any, key: str = "shop") -> Path:
    path = tmp_path / "terminals.yaml"
    path.write_text(yaml.safe_dump({"terminals": {key: entry}}), encoding="utf-8")
    return path


def with_(**changes: Any) -> dict[str, Any]:
    data = {**VALID, **changes}
    return {k: v for k, v in data.items() if v is not None}


def test_fixture_profiles_load() -> None:
    raw = yaml.safe_load(TERMINALS_FILE.read_text(encoding="utf-8"))["terminals"]
    profiles = load_profiles(TERMINALS_FILE)
    assert set(profiles) == set(raw)
    standard = profiles["standard"]
    assert standard.key == "standard"
    assert standard.serial == raw["standard"]["serial"]
    assert standard.name == f"TPE-{standard.serial}"


def test_profile_fields_and_defaults(tmp_path: Path) -> None:
    profile = load_profiles(write(tmp_path, VALID))["shop"]
    assert profile.io_capability == "display_only"
    assert (profile.battery, profile.advertising_interval_ms) == (55, 100)
    minimal = TerminalProfile.from_dict(
        "m", with_(io_capability=None, battery=None, advertising_interval_ms=None)
    )
    assert (minimal.io_capability, minimal.battery, minimal.advertising_interval_ms) == (
        "display_yes_no",
        100,
        250,
    )


FIELD_ERRORS: dict[str, tuple[dict[str, Any], str, str]] = {
    "serial missing": ({"serial": None}, "serial", "is required"),
    "serial empty": ({"serial": ""}, "serial", "is required"),
    "firmware as number": ({"firmware": 1.4}, "firmware", "must be a string"),
    "unknown io_capability": ({"io_capability": "keyboard_only"}, "io_capability", "one of"),
    "battery 101": ({"battery": 101}, "battery", "from 0 to 100"),
    "battery -1": ({"battery": -1}, "battery", "from 0 to 100"),
    "battery as text": ({"battery": "87"}, "battery", "from 0 to 100"),
    "interval 10": ({"advertising_interval_ms": 10}, "advertising_interval_ms", "20 to 10240"),
    "interval 10241": (
        {"advertising_interval_ms": 10241},
        "advertising_interval_ms",
        "20 to 10240",
    ),
}


@pytest.mark.parametrize(
    ("changes", "field", "why"), FIELD_ERRORS.values(), ids=FIELD_ERRORS.keys()
)
def test_errors_name_the_file_the_profile_and_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str, why: str
) -> None:
    path = write(tmp_path, with_(**changes))
    with pytest.raises(ProfileError) as info:
        load_profiles(path)
    message = str(info.value)
    assert message.startswith(f"{path}: terminal 'shop': field '{field}' ")
    assert why in message


def test_boundaries_are_accepted() -> None:
    for battery in (0, 100):
        assert TerminalProfile.from_dict("b", with_(battery=battery)).battery == battery
    for interval in (20, 10240):
        profile = TerminalProfile.from_dict("i", with_(advertising_interval_ms=interval))
        assert profile.advertising_interval_ms == interval


def test_profile_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, ["SIM0001"])
    with pytest.raises(ProfileError, match=r"terminal 'shop': must be a mapping"):
        load_profiles(path)


def test_broken_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("terminals:\n  shop: {serial: [\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"broken\.yaml: not valid YAML"):
        load_profiles(path)


@pytest.mark.parametrize("text", ["", "shop: {}\n", "terminals: []\n"])
def test_missing_terminals_mapping_names_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match=r"t\.yaml: expected a top-level 'terminals:'"):
        load_profiles(path)


@pytest.mark.parametrize("value", [True, False])
def test_battery_boolean_is_refused(value: bool) -> None:
    with pytest.raises(ProfileError, match="'battery'"):
        TerminalProfile.from_dict("b", with_(battery=value))
