"""EMV cryptograms: the card's ARQC, the issuer's check and ARPC, the chip's ARPC check."""

from __future__ import annotations

import datetime as dt
import warnings

import pytest

from simulator.cards import (
    CardCryptography,
    CardProfile,
    EntryMode,
    IssuerMasterKeys,
    TransactionData,
    VirtualCard,
)
from simulator.cards.cryptogram import CryptogramVersion, cryptogram_version

#: Known answer, Visa CVN 18: pyemv's own test (tests/test_cvn_hsm.py, "test_visa_cvn18", whose
#: values its author checked against an HSM), run here through this module's tag mapping.
HSM_KEYS = IssuerMasterKeys(
    ac=bytes.fromhex("0123456789ABCDEFFEDCBA9876543210"),
    smi=bytes.fromhex("FEDCBA98765432100123456789ABCDEF"),
    smc=bytes.fromhex("89ABCDEF0123456776543210FEDCBA98"),
)
HSM_EMV = {
    "9F02": "000000004000",
    "9F03": "000000000000",
    "9F1A": "0124",
    "95": "8000048000",
    "5F2A": "0124",
    "9A": "191105",
    "9C": "01",
    "9F37": "52BF4585",
    "82": "1800",
    "9F36": "001C",
    "9F10": "06011203A0B800",
}
HSM_ARQC = "7A788EA6B8A3E733"
HSM_ARPC_CSU_00000000 = "9AF514C1"

KEYS = IssuerMasterKeys(
    ac=bytes.fromhex("0123456789ABCDEF0123456789ABCDEF"),
    smi=bytes.fromhex("1032547698BADCFE1032547698BADCFE"),
    smc=bytes.fromhex("2301674589EFCDAB2301674589EFCDAB"),
)
OTHER_KEYS = IssuerMasterKeys(ac=bytes(range(16)), smi=KEYS.smi, smc=KEYS.smc)
TXN = TransactionData(
    amount=4250,
    currency_code="0978",
    country_code="0250",
    date=dt.date(2026, 12, 3),
    unpredictable_number="1A2B3C4D",
)


def profile(brand: str = "VISA", pan: str = "4242424242424242", **extra: object) -> CardProfile:
    aid = {"VISA": "A0000000031010", "MASTERCARD": "A0000000041010"}.get(brand, "A0000000421010")
    data = {
        "pan": pan,
        "expiry": "2029-12",
        "brand": brand,
        "applications": [{"aid": aid}],
        **extra,
    }
    return CardProfile.from_dict("test", data)


def test_visa_cvn18_known_answer() -> None:
    card = CardCryptography("VISA", HSM_KEYS, "1234567890123456", "00")
    assert card.version is CryptogramVersion.VISA_CVN18
    assert card.arqc(HSM_EMV) == HSM_ARQC
    tag_91 = card.issuer_authentication_data(HSM_ARQC, "001C", "05")  # declined: CSU 00000000
    assert tag_91 == HSM_ARPC_CSU_00000000 + "00000000"


@pytest.mark.parametrize(
    ("brand", "version"),
    [
        ("VISA", CryptogramVersion.VISA_CVN18),
        ("MASTERCARD", CryptogramVersion.MASTERCARD_CVN16),
        ("mastercard", CryptogramVersion.MASTERCARD_CVN16),
        ("CB", CryptogramVersion.VISA_CVN18),
        ("AMEX", CryptogramVersion.VISA_CVN18),
    ],
)
def test_cryptogram_version_by_brand(brand: str, version: CryptogramVersion) -> None:
    assert cryptogram_version(brand) is version


@pytest.mark.parametrize(
    ("brand", "pan"), [("VISA", "4242424242424242"), ("MASTERCARD", "5555555555554444")]
)
def test_the_card_signs_its_read_and_the_issuer_verifies_it(brand: str, pan: str) -> None:
    card = VirtualCard(profile(brand, pan, atc=41), KEYS)
    read = card.read(EntryMode.CONTACTLESS, TXN)
    issuer = CardCryptography(brand, KEYS, pan)
    assert read.emv["9F36"] == "002A"
    assert read.emv["9F10"] == issuer.issuer_application_data
    assert len(read.emv["9F26"]) == 16
    assert issuer.verify_arqc(read.emv)
    # another issuer key, another card number, another counter: no match
    assert not CardCryptography(brand, OTHER_KEYS, pan).verify_arqc(read.emv)
    assert not CardCryptography(brand, KEYS, "4000056655665556").verify_arqc(read.emv)
    assert card.read(EntryMode.CONTACTLESS, TXN).emv["9F26"] != read.emv["9F26"]


@pytest.mark.parametrize("tag", ["9F02", "9F03", "9F1A", "95", "5F2A", "9A", "9C", "9F37", "82"])
@pytest.mark.parametrize("brand", ["VISA", "MASTERCARD"])
def test_any_signed_element_changed_breaks_the_cryptogram(tag: str, brand: str) -> None:
    card = VirtualCard(profile(brand, "5555555555554444"), KEYS)
    emv = dict(card.read(EntryMode.CHIP, TXN).emv)
    value = bytearray(bytes.fromhex(emv[tag]))
    value[-1] ^= 0x01
    emv[tag] = value.hex().upper()
    assert not CardCryptography(brand, KEYS, "5555555555554444").verify_arqc(emv)


@pytest.mark.parametrize(
    "emv",
    [
        {},
        {"9F26": "00" * 8},
        {**HSM_EMV, "9F02": "not hex", "9F26": HSM_ARQC},
        {**HSM_EMV, "9F26": HSM_ARQC, "9F10": None},
    ],
)
def test_missing_or_malformed_data_does_not_verify(emv: dict[str, str]) -> None:
    assert not CardCryptography("VISA", HSM_KEYS, "1234567890123456").verify_arqc(emv)
    assert CardCryptography("VISA", HSM_KEYS, "1234567890123456").verify_arqc(
        {**HSM_EMV, "9F26": HSM_ARQC}
    )


@pytest.mark.parametrize("brand", ["VISA", "MASTERCARD"])
def test_the_chip_completes_only_with_the_issuers_authentic_approval(brand: str) -> None:
    pan = "5555555555554444"
    card = VirtualCard(profile(brand, pan), KEYS)
    emv = card.read(EntryMode.CHIP, TXN).emv
    issuer = CardCryptography(brand, KEYS, pan)
    approved = issuer.issuer_authentication_data(emv["9F26"], emv["9F36"], "00")
    declined = issuer.issuer_authentication_data(emv["9F26"], emv["9F36"], "05")
    forged = CardCryptography(brand, OTHER_KEYS, pan).issuer_authentication_data(
        emv["9F26"], emv["9F36"], "00"
    )
    flipped = approved[:-1] + ("0" if approved[-1] != "0" else "1")
    assert card.complete(True, arpc=approved)
    assert not card.complete(True, arpc=declined)  # authentic, but the issuer declines
    assert not card.complete(True, arpc=forged)
    assert not card.complete(True, arpc=flipped)
    assert not card.complete(True, arpc=None)
    assert not card.complete(True, arpc="zz")
    assert not card.complete(False, arpc=approved)


def test_an_arpc_answers_one_arqc_only() -> None:
    card = VirtualCard(profile(), KEYS)
    issuer = CardCryptography("VISA", KEYS, "4242424242424242")
    first = card.read(EntryMode.CHIP, TXN).emv
    old = issuer.issuer_authentication_data(first["9F26"], first["9F36"], "00")
    card.read(EntryMode.CHIP, TXN)  # the next transaction
    assert not card.complete(True, arpc=old)


def test_a_card_that_declines_on_its_own_ignores_the_arpc() -> None:
    card = VirtualCard(profile(second_ac="decline"), KEYS)
    emv = card.read(EntryMode.CHIP, TXN).emv
    issuer = CardCryptography("VISA", KEYS, "4242424242424242")
    assert not card.complete(
        True, issuer.issuer_authentication_data(emv["9F26"], emv["9F36"], "00")
    )


def test_a_card_without_keys_makes_no_cryptogram_and_never_completes() -> None:
    card = VirtualCard(profile())
    emv = card.read(EntryMode.CHIP, TXN).emv
    assert "9F26" not in emv
    assert "9F10" not in emv
    assert not card.complete(True, arpc="00" * 8)


def test_keys_are_checked_and_never_shown() -> None:
    assert KEYS.ac.hex() not in repr(KEYS).lower()
    assert "0123456789" not in repr(CardCryptography("VISA", KEYS, "4242424242424242"))
    with pytest.raises(ValueError, match="16 bytes"):
        IssuerMasterKeys(ac=bytes(8), smi=KEYS.smi, smc=KEYS.smc)


def test_tdes_deprecation_warnings_stay_inside_the_module() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        card = VirtualCard(profile(), KEYS)
        emv = card.read(EntryMode.CHIP, TXN).emv
        CardCryptography("VISA", KEYS, "4242424242424242").verify_arqc(emv)
    assert caught == []


def test_the_card_model_and_the_issuer_share_one_table_of_rids() -> None:
    from simulator.cards import card, cryptogram

    assert card.RID_BRANDS is cryptogram.RID_BRANDS  # re-exported, not a copy
    assert cryptogram.RID_BRANDS["A000000004"] == "MASTERCARD"
