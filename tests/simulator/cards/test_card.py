"""Card profiles (validation, Luhn) and the virtual card's read: EMV data, ATC, secrecy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.cards import (
    CardError,
    CardProfile,
    CatalogueError,
    EntryMode,
    TransactionData,
    VirtualCard,
    luhn_valid,
)

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures"
VALID: dict[str, Any] = {
    "pan": "4242424242424242",
    "expiry": "2029-12",
    "brand": "visa",
    "holder": "M DUPONT",
    "pin": "98765",
    "atc": 41,
    "applications": [{"aid": "a0000000031010", "label": "VISA", "priority": 1}],
}
TXN = TransactionData(
    amount=4250,
    currency_code="0978",
    country_code="0250",
    date=dt.date(2026, 12, 3),
    unpredictable_number="1A2B3C4D",
)


def profile(**changes: Any) -> CardProfile:
    data = {**VALID, **changes}
    return CardProfile.from_dict("test_card", {k: v for k, v in data.items() if v is not None})


# ------------------------------------------------------------------------------ Luhn
@pytest.mark.parametrize(
    "pan",
    [
        "4242424242424242",
        "5555555555554444",
        "4000000000000002",
        "378282246310005",
        "4000002500001001",
        "79927398713",  # the textbook example
    ],
)
def test_luhn_accepts_published_test_numbers(pan: str) -> None:
    assert luhn_valid(pan)


@pytest.mark.parametrize("pan", ["4242424242424241", "79927398710", "1234567812345678"])
def test_luhn_refuses_bad_numbers(pan: str) -> None:
    assert not luhn_valid(pan)


@given(position=st.integers(0, 15), delta=st.integers(1, 9))
def test_luhn_detects_every_single_digit_error(position: int, delta: int) -> None:
    pan = list("4242424242424242")
    pan[position] = str((int(pan[position]) + delta) % 10)
    assert not luhn_valid("".join(pan))


# ------------------------------------------------------------------------------ from_dict
def test_from_dict_builds_the_profile() -> None:
    card = CardProfile.from_dict(
        "two_apps",
        {
            **VALID,
            "applications": [
                {"aid": "A0000000422010", "label": "CB DEBIT", "priority": 2},
                {"aid": "a0000000031010", "priority": 1},
            ],
            "issuer": {"response_code": "05"},
            "contactless": False,
        },
    )
    assert card.key == "two_apps"
    assert card.brand == "VISA"
    assert (card.expiry_year, card.expiry_month, card.expiry) == (2029, 12, "2912")
    assert card.last4 == "4242"
    assert [a.aid for a in card.applications] == ["A0000000031010", "A0000000422010"]
    # The label defaults to the brand as written in the file (not upper-cased like ``brand``).
    assert card.applications[0].label.upper() == card.brand
    assert card.issuer_response_code == "05"
    assert card.contactless is False
    assert card.atc == 41
    assert card.pin_tries == 3


def test_expired_on_compares_year_and_month() -> None:
    card = profile()
    assert not card.expired_on(dt.date(2029, 12, 31))
    assert card.expired_on(dt.date(2030, 1, 1))


FIELD_ERRORS: dict[str, tuple[dict[str, Any], str]] = {
    "pan missing": ({"pan": None}, "pan"),
    "pan not digits": ({"pan": "4242-4242-4242-4242"}, "pan"),
    "pan as a number": ({"pan": 4242424242424242}, "pan"),
    "pan too short": ({"pan": "42424242426"}, "pan"),
    "pan too long": ({"pan": "4" * 20}, "pan"),
    "pan fails Luhn": ({"pan": "4242424242424241"}, "pan"),
    "expiry missing": ({"expiry": None}, "expiry"),
    "expiry month 13": ({"expiry": "2029-13"}, "expiry"),
    "expiry without month": ({"expiry": "2029"}, "expiry"),
    "expiry with day": ({"expiry": "2029-12-01"}, "expiry"),
    "expiry as words": ({"expiry": "décembre"}, "expiry"),
    "brand missing": ({"brand": None}, "brand"),
    "applications missing": ({"applications": None}, "applications"),
    "applications empty": ({"applications": []}, "applications"),
    "aid missing": ({"applications": [{"label": "VISA"}]}, "applications[0].aid"),
    "aid not hex": ({"applications": [{"aid": "A00000000310ZZ"}]}, "applications[0].aid"),
    "aid too short": ({"applications": [{"aid": "A000000003"[:8]}]}, "applications[0].aid"),
    "aid too long": ({"applications": [{"aid": "A0" * 17}]}, "applications[0].aid"),
    "second aid bad": (
        {"applications": [{"aid": "A0000000031010"}, {"aid": "xyz"}]},
        "applications[1].aid",
    ),
    "issuer not a mapping": ({"issuer": "05"}, "issuer"),
    "response code length": ({"issuer": {"response_code": "005"}}, "issuer.response_code"),
    "negative atc": ({"atc": -1}, "atc"),
    "pin_tries as text": ({"pin_tries": "3"}, "pin_tries"),
    "pin with letters": ({"pin": "12a4"}, "pin"),
    "pin too short": ({"pin": "123"}, "pin"),
    "pin too long": ({"pin": "1" * 13}, "pin"),
}


@pytest.mark.parametrize(("changes", "field"), FIELD_ERRORS.values(), ids=FIELD_ERRORS.keys())
def test_from_dict_errors_name_the_card_and_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(CatalogueError) as info:
        profile(**changes)
    message = str(info.value)
    assert message.startswith(f"card 'test_card': field '{field}' ")


def test_from_dict_refuses_a_non_mapping() -> None:
    with pytest.raises(CatalogueError, match="card 'x': must be a mapping"):
        CardProfile.from_dict("x", ["4242424242424242"])


# ------------------------------------------------------------------------------ read
def test_read_returns_the_card_records_and_emv_data() -> None:
    card = VirtualCard(profile())
    read = card.read(EntryMode.CONTACTLESS, TXN)
    assert read.pan == VALID["pan"]
    assert read.expiry == "2912"
    assert read.brand == "VISA"
    assert read.application.aid == "A0000000031010"
    assert read.entry_mode is EntryMode.CONTACTLESS
    emv = read.emv
    assert emv["9F02"] == f"{TXN.amount:012d}" == "000000004250"
    assert emv["5F2A"] == TXN.currency_code
    assert emv["9F1A"] == TXN.country_code
    assert emv["9A"] == "261203"
    assert emv["9F37"] == TXN.unpredictable_number
    assert emv["9F36"] == f"{41 + 1:04X}"
    assert emv["4F"] == "A0000000031010"
    assert bytes.fromhex(emv["50"]).decode() == "VISA"
    assert "5A" not in emv  # the PAN is not an EMV element sent in clear
    assert VALID["pan"] not in emv.values()


def test_each_read_increments_the_atc() -> None:
    card = VirtualCard(profile(atc=41))
    atcs = [int(card.read(EntryMode.CONTACTLESS, TXN).emv["9F36"], 16) for _ in range(3)]
    assert atcs == [42, 43, 44]
    assert card.atc == 44
    assert card.profile.atc == 41  # the profile (catalogue) is not changed


def test_two_cards_from_one_profile_keep_their_own_counter() -> None:
    card_profile = profile(atc=0)
    first, second = VirtualCard(card_profile), VirtualCard(card_profile)
    first.read(EntryMode.CONTACTLESS, TXN)
    first.read(EntryMode.CONTACTLESS, TXN)
    assert second.read(EntryMode.CONTACTLESS, TXN).emv["9F36"] == "0001"


def test_amount_is_twelve_digits_in_minor_units() -> None:
    card = VirtualCard(profile())
    for amount in (1, 5000, 99_999_999):
        txn = TransactionData(amount, "0978", "0250", dt.date(2026, 1, 2), "00000000")
        value = card.read(EntryMode.CONTACTLESS, txn).emv["9F02"]
        assert len(value) == 12
        assert int(value) == amount


def test_contactless_read_of_a_contact_only_card_is_refused_without_counting() -> None:
    card = VirtualCard(profile(contactless=False))
    with pytest.raises(CardError, match="contactless"):
        card.read(EntryMode.CONTACTLESS, TXN)
    assert card.atc == 41
    assert card.read(EntryMode.CHIP, TXN).emv["82"] != ""  # chip still works


def test_pan_and_pin_never_appear_in_reprs() -> None:
    card_profile = profile()
    card = VirtualCard(card_profile)
    read = card.read(EntryMode.CONTACTLESS, TXN)
    for text in (repr(card_profile), repr(read), repr(card), str(card_profile), str(read)):
        assert VALID["pan"] not in text
        assert VALID["pan"][:6] not in text
        assert VALID["pin"] not in text
    assert "4242" in repr(card)  # the last four identify it


def test_entry_mode_receipt_labels() -> None:
    assert EntryMode.CONTACTLESS.receipt_label == "SANS CONTACT"
    assert EntryMode.CHIP.receipt_label == "PUCE"


# ------------------------------------------------------------------------------ known bugs
def test_bad_priority_is_a_catalogue_error() -> None:
    with pytest.raises(CatalogueError, match=r"applications\[0\]\.priority"):
        profile(applications=[{"aid": "A0000000031010", "priority": "high"}])


@pytest.mark.parametrize("pan", ["４２４２４２４２４２４２４２４２", "4242424242424²42"])
def test_pan_must_be_ascii_digits(pan: str) -> None:
    with pytest.raises(CatalogueError, match="'pan'"):
        profile(pan=pan)


def test_contactless_must_be_a_boolean() -> None:
    with pytest.raises(CatalogueError, match="'contactless'"):
        profile(contactless="false")


def test_atc_must_not_be_a_boolean() -> None:
    with pytest.raises(CatalogueError, match="'atc'"):
        profile(atc=True)


def test_a_right_pin_resets_the_try_counter_to_the_limit_of_three() -> None:
    data = {
        "pan": "4242424242424242",
        "expiry": "2029-12",
        "brand": "VISA",
        "pin": "1234",
        "pin_tries": 1,
        "applications": [{"aid": "A0000000031010"}],
    }
    the_card = VirtualCard(CardProfile.from_dict("one_try_left", data))
    assert the_card.verify_pin("1234").ok
    assert the_card.pin_tries == 3
