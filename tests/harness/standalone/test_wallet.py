"""The standalone terminal's cards keep their counters in its data folder (``wallet.json``):
a restarted terminal's card does not replay an ATC the issuer (the persisted backend) has
already seen. On a World (virtual time): its backend plays the persisted one, a second
:class:`CardWallet` on the same file plays the restarted terminal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.rig import World, WorldConfig
from harness.standalone.terminal import StandaloneTerminal, StartError, TerminalOptions
from harness.standalone.wallet import WALLET_FILE, CardWallet, WalletError
from simulator.cards import EntryMode


@pytest.fixture
def world_config(world_config: WorldConfig) -> WorldConfig:
    return dataclasses.replace(world_config, preconfigured=True)


def wallet(world: World, path: Path | None) -> CardWallet:
    return CardWallet(path, world.keys.personalise, world.catalogue)


def pay_with(world: World, cards: CardWallet, key: str) -> tuple[str, str | None]:
    """A contactless payment of a small invoice with ``cards``' card ``key``."""
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    world.start_payment(number)
    world.terminal.present_card(cards.card(key), EntryMode.CONTACTLESS)
    outcome = world.finish_payment()
    return outcome.result, outcome.response_code


def test_a_restarted_terminal_s_card_goes_on_from_its_saved_counter(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / WALLET_FILE
    world.associate()
    first = wallet(world, path)
    first.watch(world.terminal)
    start = world.catalogue["visa"].atc
    assert pay_with(world, first, "visa") == ("approved", "00")
    # written by the terminal's step, not at exit: a killed terminal keeps it too
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["cards"]["visa"]["atc"] == start + 1
    assert "4242424242424242" not in path.read_text(encoding="utf-8")
    first.unwatch()

    restarted = wallet(world, path)  # the terminal process started again, same --data
    restarted.watch(world.terminal)
    assert restarted.card("visa").atc == start + 1
    assert pay_with(world, restarted, "visa") == ("approved", "00")
    assert json.loads(path.read_text(encoding="utf-8"))["cards"]["visa"]["atc"] == start + 2

    # what happened before: a card from the catalogue's counter is a replay for the issuer
    forgetful = wallet(world, None)
    assert pay_with(world, forgetful, "visa") == ("declined", "05")


def test_pin_tries_are_kept_and_cards_not_used_stay_in_the_file(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / WALLET_FILE
    path.write_text(
        json.dumps({"version": 1, "cards": {"amex": {"atc": 90, "pin_tries": 3}}}),
        encoding="utf-8",
    )
    cards = wallet(world, path)
    card = cards.card("visa")
    assert not card.verify_pin("0000").ok
    cards.save()
    again = wallet(world, path)
    assert again.card("visa").pin_tries == card.pin_tries == 2
    assert again.card("amex").atc == 90  # kept though this run never used it
    assert again.card("mastercard").atc == world.catalogue["mastercard"].atc


BAD_WALLETS = [
    b"{not json",
    b'"a string"',
    b'{"version": 2, "cards": {}}',
    b'{"version": 1, "cards": []}',
    b'{"version": 1, "cards": {"visa": {"atc": -1, "pin_tries": 3}}}',
    b'{"version": 1, "cards": {"visa": {"atc": 70000, "pin_tries": 3}}}',
    b'{"version": 1, "cards": {"visa": {"atc": 4, "pin_tries": "3"}}}',
    b"\xff\xfe",
]


@pytest.mark.parametrize("content", BAD_WALLETS)
def test_an_unreadable_wallet_is_refused_and_left_as_it_is(
    world: World, tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / WALLET_FILE
    path.write_bytes(content)
    with pytest.raises(WalletError, match=str(path)):
        wallet(world, path)
    assert path.read_bytes() == content


def test_the_standalone_terminal_s_cards_come_from_its_data_folder(tmp_path: Path) -> None:
    (tmp_path / WALLET_FILE).write_text(
        json.dumps({"version": 1, "cards": {"visa": {"atc": 500, "pin_tries": 1}}}),
        encoding="utf-8",
    )
    options = TerminalOptions(transport="tcp-client:127.0.0.1:9", data=tmp_path)
    terminal = StandaloneTerminal(options)  # nothing started
    assert (terminal.card("visa").atc, terminal.card("visa").pin_tries) == (500, 1)
    assert terminal.card("visa") is terminal.card("visa")

    (tmp_path / WALLET_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(StartError, match="compteurs des cartes illisibles"):
        StandaloneTerminal(options)
