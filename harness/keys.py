"""The test keys of ``fixtures/keys.yaml``: DUKPT base derivation keys, the terminals' initial
key IDs, and the issuers' EMV master keys.

Read by the backend (the processor derives card-data keys from the BDK and checks cryptograms
with the issuers' keys) and by the world builders, which play the key-injection facility (a
terminal gets the initial key of its initial key ID) and the card personalisation bureau (a
card gets the ICC master keys of its brand's issuer) until the terminal's first setup injects
its key itself.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simulator.cards import CardProfile, IssuerMasterKeys, VirtualCard
from simulator.cards.catalogue import SAFE_LOADER
from simulator.protocol.dukpt import BDK_ID_SIZE, derive_initial_key

KEYS_FILE = "keys.yaml"
_HEX = re.compile(r"[0-9A-Fa-f]*")
KEYS_PARTS = ("ac", "smi", "smc")


class KeyFixtureError(ValueError):
    """A keys file that does not hold together; the message names the file and the field."""


@dataclass(frozen=True)
class KeyFixture:
    """Everything in ``keys.yaml``. Test keys only; ``repr`` shows no key."""

    bdks: Mapping[bytes, bytes] = field(repr=False)  # BDK ID (4 bytes) -> BDK
    terminal_key_ids: Mapping[str, bytes]  # serial -> initial key ID (8 bytes)
    issuer_master_keys: Mapping[str, IssuerMasterKeys] = field(repr=False)  # brand -> IMKs

    def initial_key_id(self, serial: str) -> bytes:
        """The initial key ID injected into terminal ``serial``: its entry in the file, else
        the first BDK's ID and the first 4 bytes of SHA-256 of the serial."""
        listed = self.terminal_key_ids.get(serial)
        if listed is not None:
            return listed
        first = next(iter(self.bdks))
        return first + hashlib.sha256(serial.encode()).digest()[:4]

    def initial_key(self, initial_key_id: bytes) -> bytes:
        """The initial key for ``initial_key_id``, derived from the BDK its first 4 bytes name
        (what the key-injection facility loads into the terminal)."""
        bdk = self.bdks.get(initial_key_id[:BDK_ID_SIZE])
        if bdk is None:
            raise KeyFixtureError(
                f"no BDK {initial_key_id[:BDK_ID_SIZE].hex().upper()} for initial key ID "
                f"{initial_key_id.hex().upper()}"
            )
        return derive_initial_key(bdk, initial_key_id)

    def terminal_keys(self, serial: str) -> tuple[bytes, bytes]:
        """(initial key, initial key ID) to build terminal ``serial`` with."""
        initial_key_id = self.initial_key_id(serial)
        return self.initial_key(initial_key_id), initial_key_id

    def issuer_keys(self, brand: str) -> IssuerMasterKeys:
        try:
            return self.issuer_master_keys[brand.upper()]
        except KeyError:
            known = ", ".join(sorted(self.issuer_master_keys))
            raise KeyFixtureError(
                f"no issuer master keys for brand {brand!r} (known: {known})"
            ) from None

    def personalise(self, profile: CardProfile) -> VirtualCard:
        """The physical card of ``profile``, with the ICC master keys of its brand's issuer."""
        return VirtualCard(profile, self.issuer_keys(profile.brand))


def load_keys(fixtures: Path) -> KeyFixture:
    """Read ``fixtures/keys.yaml``; :class:`KeyFixtureError` names the faulty field."""
    path = fixtures / KEYS_FILE
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise KeyFixtureError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise KeyFixtureError(f"{path}: expected a mapping at the top level")

    def fail(name: str, why: str) -> KeyFixtureError:
        return KeyFixtureError(f"{path}: field {name!r} {why}")

    def hex_bytes(name: str, value: Any, sizes: tuple[int, ...]) -> bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) % 2:
            raise fail(name, "must be a string of hex digits")
        raw = bytes.fromhex(value)
        if len(raw) not in sizes:
            raise fail(name, f"must be {' or '.join(map(str, sizes))} bytes")
        return raw

    dukpt = data.get("dukpt")
    if not isinstance(dukpt, dict) or not isinstance(dukpt.get("bdks"), dict) or not dukpt["bdks"]:
        raise fail("dukpt.bdks", "must map BDK IDs to keys")
    bdks: dict[bytes, bytes] = {}
    for bdk_id, key in dukpt["bdks"].items():
        name = f"dukpt.bdks.{bdk_id}"
        bdks[hex_bytes(name, str(bdk_id), (BDK_ID_SIZE,))] = hex_bytes(name, key, (16, 24, 32))
    terminals = dukpt.get("terminals") or {}
    if not isinstance(terminals, dict):
        raise fail("dukpt.terminals", "must map serials to initial key IDs")
    key_ids: dict[str, bytes] = {}
    for serial, key_id in terminals.items():
        name = f"dukpt.terminals.{serial}"
        raw = hex_bytes(name, key_id, (8,))
        if raw[:BDK_ID_SIZE] not in bdks:
            raise fail(name, "starts with a BDK ID that dukpt.bdks does not list")
        key_ids[str(serial)] = raw
    imks = data.get("issuer_master_keys")
    if not isinstance(imks, dict) or not imks:
        raise fail("issuer_master_keys", "must map card brands to keys")
    issuer_keys: dict[str, IssuerMasterKeys] = {}
    for brand, keys in imks.items():
        name = f"issuer_master_keys.{brand}"
        if not isinstance(keys, dict):
            raise fail(name, "must hold ac, smi and smc")
        issuer_keys[str(brand).upper()] = IssuerMasterKeys(
            **{part: hex_bytes(f"{name}.{part}", keys.get(part), (16,)) for part in KEYS_PARTS}
        )
    return KeyFixture(bdks=bdks, terminal_key_ids=key_ids, issuer_master_keys=issuer_keys)
