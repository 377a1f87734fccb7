"""The virtual app's flows when things go wrong: lost links, refused pairing, double taps."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.app import PhoneError
from harness.rig import World, WorldConfig


def small_unpaid(world: World) -> str:
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    return number


def test_link_lost_while_waiting_for_the_card_reconnects_and_the_payment_goes_on() -> None:
    with World() as world:
        world.associate()
        number = small_unpaid(world)
        world.start_payment(number)
        link = world.app.link
        assert link is not None
        world.run(link.disconnect())  # the phone's side drops it
        world.run(
            world.wait_until(
                lambda: any("Terminal reconnecté" in line for line in world.app.screen),
                "the app to reconnect",
                world.config.app_timeouts.reconnect,
            )
        )
        assert world.app.link is not None
        assert world.app.link is not link
        assert "Terminal reconnecté : transaction en attente de la carte" in world.app.screen
        world.tap("visa")  # the same payment goes on: no second payment at the backend
        assert world.finish_payment().invoice["status"] == "paid"
        assert [p.status for p in world.store.invoice(number).payments] == ["captured"]


def test_a_terminal_that_never_got_the_payment_says_so_and_nothing_is_charged() -> None:
    with World() as world:
        world.associate()
        number = small_unpaid(world)

        world.at_moment("request_received", world.terminal.drop_links)  # lost on the way
        world.start_payment(number)
        outcome = world.finish_payment()
        assert outcome.result == "aborted"
        assert outcome.message == "Le terminal n'a pas reçu la demande : rien n'a été débité"
        assert "Terminal reconnecté : transaction inconnue du terminal" in world.app.screen
        assert [p.status for p in world.store.invoice(number).payments] == ["aborted"]
        world.start_payment(number)  # and the technician can pay again
        world.tap("visa")
        assert world.finish_payment().invoice["status"] == "paid"


def test_a_second_payment_while_one_is_running_is_refused_and_the_first_goes_on() -> None:
    with World() as world:
        world.associate()
        first = small_unpaid(world)
        second = next(
            i.number
            for i in world.store.invoices.values()
            if i.status == "unpaid" and i.number != first
        )
        world.start_payment(first)
        with pytest.raises(PhoneError) as refused:
            world.start_payment(second)
        assert refused.value.code == "payment_in_progress"
        world.tap("visa")
        assert world.finish_payment().invoice_number == first
        assert world.store.invoice(first).status == "paid"
        assert world.store.invoice(second).payments == []


@pytest.mark.parametrize("answer", ["refuse_on_phone", "refuse_on_terminal"])
def test_a_refused_pairing_can_be_retried(answer: str) -> None:
    config = WorldConfig(pairing_answer=answer)  # type: ignore[arg-type]
    with World(config) as world:
        with pytest.raises(PhoneError):
            world.associate()
        assert world.terminal._links == {}  # the half-open link was closed
        world.config.pairing_answer = "confirm"
        world.associate()
        assert world.app.terminal is not None
        assert world.app.terminal.serial in world.store.terminals


def test_a_new_process_on_the_same_data_folder_reconnects_without_pairing(
    tmp_path: Path,
) -> None:
    config = WorldConfig(data_dir=tmp_path)
    with World(config) as first:
        first.associate()
        code = first.phone.last_pairing_code
        assert code is not None
    with World(WorldConfig(data_dir=tmp_path)) as second:  # a restart of both processes
        assert second.terminal.engine.configured  # setup survived
        assert second.app.terminal is not None  # the app remembers its terminal
        second.associate()
        assert second.phone.last_pairing_code is None  # no pairing code this time
        assert "reconnecté (appairage conservé)" in " ".join(second.app.screen)
        pairing = [s for s in second.terminal.engine.screen.history if "APPAIRAGE" in s.lines]
        assert pairing == []
        number = small_unpaid(second)
        second.start_payment(number)
        second.tap("visa")
        assert second.finish_payment().invoice["status"] == "paid"


def test_after_a_terminal_restart_the_next_payment_reconnects_by_itself() -> None:
    with World() as world:
        world.associate()
        world.restart_terminal()
        number = small_unpaid(world)
        world.start_payment(number)  # no "connexion perdue": the app reconnects first
        assert any(t.startswith("Reconnexion au terminal") for t in world.app.screen)
        world.tap("visa")
        assert world.finish_payment().invoice["status"] == "paid"


def test_associating_while_connected_keeps_the_link(tmp_path: Path) -> None:
    with World() as world:
        world.associate()
        link = world.app.link
        world.associate()
        assert world.app.link is link
        assert world.app.screen[-1].endswith("déjà associé et connecté")


def test_corrupt_bond_files_are_set_aside_and_phones_pair_again(tmp_path: Path) -> None:
    with World(WorldConfig(data_dir=tmp_path)) as world:
        world.associate()
    for bonds in tmp_path.rglob("bonds.json"):
        bonds.write_text("[not, a, mapping", encoding="utf-8")
    with World(WorldConfig(data_dir=tmp_path)) as world:
        assert sorted(p.name for p in tmp_path.rglob("*.corrupt")) == [
            "bonds.json.corrupt",
            "bonds.json.corrupt",
        ]
        world.associate()  # both sides forgot: a fresh pairing
        assert world.phone.last_pairing_code is not None


def test_the_dukpt_counter_goes_on_across_processes(tmp_path: Path) -> None:
    counters = []
    for _run in range(2):  # two processes on one data folder: never the same key twice
        # Each World seeds a fresh backend with the same seed; its transaction ids are still
        # new to the terminal's journal (kept in the data folder), which refuses a known one.
        with World(WorldConfig(data_dir=tmp_path, seed=100)) as world:
            world.associate()
            number = small_unpaid(world)
            world.start_payment(number)
            world.tap("visa")
            world.finish_payment()
            keys = world.terminal.engine.card_data_keys
            assert keys is not None
            counters.append(keys.counter)
    assert counters[1] > counters[0] > 0


def test_the_card_data_key_is_injected_at_first_setup_and_dropped_by_a_factory_reset() -> None:
    def has_key(world: World) -> bool:
        return world.terminal.engine.card_data_keys is not None

    with World() as world:
        assert not world.terminal.engine.configured
        assert not has_key(world)  # fresh from the factory
        world.associate()
        assert has_key(world)  # first setup injected it
        world.restart_terminal()
        assert has_key(world)  # kept in its secure store
        world.factory_reset_terminal()
        assert not has_key(world)
