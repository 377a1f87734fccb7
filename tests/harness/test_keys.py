"""The test keys fixture (fixtures/keys.yaml) and what the world builds with it."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import yaml

from harness.keys import KeyFixtureError, load_keys
from simulator.cards import CardCryptography, Catalogue, EntryMode, TransactionData
from simulator.protocol.dukpt import derive_initial_key

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
KEYS = load_keys(FIXTURES)
CATALOGUE = Catalogue.load(FIXTURES / "cards.yaml")


def test_the_fixture_has_a_bdk_every_terminal_id_and_every_catalogue_brand() -> None:
    assert KEYS.bdks
    assert all(len(bdk) in (16, 24, 32) for bdk in KEYS.bdks.values())
    terminals = yaml.safe_load((FIXTURES / "terminals.yaml").read_text())["terminals"]
    for profile in terminals.values():
        assert KEYS.initial_key_id(profile["serial"])[:4] in KEYS.bdks
    for card in CATALOGUE.values():
        KEYS.issuer_keys(card.brand)  # no KeyFixtureError


def test_a_listed_terminal_gets_its_initial_key_from_the_bdk() -> None:
    initial_key, initial_key_id = KEYS.terminal_keys("SIM0001")
    assert initial_key_id == bytes.fromhex("5E1A000100000001")
    assert initial_key == derive_initial_key(KEYS.bdks[initial_key_id[:4]], initial_key_id)


def test_an_unlisted_terminal_gets_a_derivation_id_from_its_serial() -> None:
    initial_key_id = KEYS.initial_key_id("SIM0001-0042")
    first_bdk_id = next(iter(KEYS.bdks))
    assert initial_key_id == first_bdk_id + hashlib.sha256(b"SIM0001-0042").digest()[:4]
    assert KEYS.initial_key_id("SIM0001-0043") != initial_key_id


def test_personalised_cards_make_cryptograms_their_issuer_verifies() -> None:
    profile = CATALOGUE["mastercard"]
    card = KEYS.personalise(profile)
    txn = TransactionData(
        amount=100,
        currency_code="0978",
        country_code="0250",
        date=dt.date(2026, 12, 3),
        unpredictable_number="00000001",
    )
    emv = card.read(EntryMode.CONTACTLESS, txn).emv
    issuer = CardCryptography(profile.brand, KEYS.issuer_keys(profile.brand), profile.pan)
    assert issuer.verify_arqc(emv)


def test_repr_shows_no_key() -> None:
    text = repr(KEYS)
    assert all(bdk.hex() not in text.lower() for bdk in KEYS.bdks.values())
    assert KEYS.issuer_keys("VISA").ac.hex() not in text.lower()


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "keys.yaml").write_text(text, encoding="utf-8")
    return tmp_path


GOOD_IMKS = """
issuer_master_keys:
  VISA: {ac: "00112233445566778899AABBCCDDEEFF", smi: "00112233445566778899AABBCCDDEEFF",
         smc: "00112233445566778899AABBCCDDEEFF"}
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list", "mapping at the top level"),
        ("dukpt: {}\n" + GOOD_IMKS, "'dukpt.bdks' must map"),
        ('dukpt: {bdks: {"5E1A": "00112233445566778899AABBCCDDEEFF"}}\n' + GOOD_IMKS, "4 bytes"),
        ('dukpt: {bdks: {"5E1A0001": "XYZ"}}\n' + GOOD_IMKS, "hex digits"),
        ('dukpt: {bdks: {"5E1A0001": "0011"}}\n' + GOOD_IMKS, "16 or 24 or 32 bytes"),
        (
            'dukpt: {bdks: {"5E1A0001": "00112233445566778899AABBCCDDEEFF"},'
            ' terminals: {SIM1: "FFFFFFFF00000001"}}\n' + GOOD_IMKS,
            "BDK ID that dukpt.bdks does not list",
        ),
        ('dukpt: {bdks: {"5E1A0001": "00112233445566778899AABBCCDDEEFF"}}\n', "issuer_master"),
        (
            'dukpt: {bdks: {"5E1A0001": "00112233445566778899AABBCCDDEEFF"}}\n'
            'issuer_master_keys: {VISA: {ac: "00"}}\n',
            "issuer_master_keys.VISA.ac",
        ),
        ("dukpt: [", "not valid YAML"),
    ],
)
def test_a_broken_keys_file_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(KeyFixtureError, match=message):
        load_keys(write(tmp_path, text))


def test_an_unknown_brand_is_named() -> None:
    with pytest.raises(KeyFixtureError, match="no issuer master keys for brand 'DINERS'"):
        KEYS.issuer_keys("DINERS")
