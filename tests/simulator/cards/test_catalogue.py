"""The card catalogue: the fixture file, and errors that name their source."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from simulator.cards import Catalogue, CatalogueError, luhn_valid

CARDS_FILE = Path(__file__).resolve().parents[3] / "fixtures" / "cards.yaml"


def fixture_entries() -> dict[str, dict[str, object]]:
    data = yaml.safe_load(CARDS_FILE.read_text(encoding="utf-8"))
    cards: dict[str, dict[str, object]] = data["cards"]
    return cards


def test_fixture_catalogue_loads_every_card() -> None:
    catalogue = Catalogue.load(CARDS_FILE)
    entries = fixture_entries()
    assert set(catalogue) == set(entries)
    assert len(catalogue) == len(entries)
    for key, entry in entries.items():
        assert catalogue[key].key == key
        assert catalogue[key].pan == entry["pan"]
        issuer = entry.get("issuer") or {}
        assert isinstance(issuer, dict)
        assert catalogue[key].issuer_response_code == issuer.get("response_code", "00")


def test_fixture_pans_pass_luhn_and_are_unique() -> None:
    pans = [str(entry["pan"]) for entry in fixture_entries().values()]
    assert all(luhn_valid(pan) for pan in pans)
    assert len(set(pans)) == len(pans)


def test_by_pan() -> None:
    catalogue = Catalogue.load(CARDS_FILE)
    for key in catalogue:
        assert catalogue.by_pan(catalogue[key].pan) == catalogue[key]
    assert catalogue.by_pan("4000000000000010") is None  # a valid Luhn PAN of no card


def test_unknown_key_lists_the_known_ones() -> None:
    catalogue = Catalogue.from_text(CARDS_FILE.read_text(encoding="utf-8"))
    with pytest.raises(KeyError) as info:
        catalogue["diners"]
    message = info.value.args[0]
    assert "'diners'" in message
    assert f"known: {', '.join(sorted(fixture_entries()))}" in message


def test_broken_yaml_names_the_source() -> None:
    with pytest.raises(CatalogueError, match=r"^my_cards\.yaml: not valid YAML"):
        Catalogue.from_text("cards:\n  visa: [unclosed\n", source="my_cards.yaml")


@pytest.mark.parametrize(
    "text", ["", "visa:\n  pan: '4242424242424242'\n", "cards:\n", "cards: [visa]\n", "- 1\n"]
)
def test_missing_cards_mapping_names_the_source(text: str) -> None:
    with pytest.raises(CatalogueError, match=r"^other\.yaml: expected a top-level 'cards:'"):
        Catalogue.from_text(text, source="other.yaml")


def test_card_error_names_source_card_and_field(tmp_path: Path) -> None:
    path = tmp_path / "cards.yaml"
    path.write_text(
        "cards:\n"
        "  good:\n"
        "    pan: '4242424242424242'\n"
        "    expiry: '2029-12'\n"
        "    brand: VISA\n"
        "    applications: [{aid: A0000000031010}]\n"
        "  typo:\n"
        "    pan: '4242424242424241'\n"
        "    expiry: '2029-12'\n"
        "    brand: VISA\n"
        "    applications: [{aid: A0000000031010}]\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogueError) as info:
        Catalogue.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: card 'typo': field 'pan'")
    assert "Luhn" in message


def test_default_source_is_named() -> None:
    with pytest.raises(CatalogueError, match=r"^<text>: "):
        Catalogue.from_text("cards: 3")


def test_two_cards_with_one_number_are_refused() -> None:
    text = """
cards:
  a: {pan: "4242424242424242", expiry: "2029-12", brand: VISA,
      applications: [{aid: "A0000000031010"}]}
  b: {pan: "4242424242424242", expiry: "2024-01", brand: VISA,
      applications: [{aid: "A0000000031010"}]}
"""
    with pytest.raises(
        CatalogueError, match=r"^mine\.yaml: card 'b': field 'pan' is also card 'a'"
    ):
        Catalogue.from_text(text, source="mine.yaml")
