"""The world: virtual time, calendar, clean shutdown, determinism."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import warnings

import pytest

from harness.rig import World, WorldConfig, WorldTimeout
from simulator.terminal import ProfileError, State, Timeouts


def first_small_unpaid(world: World) -> str:
    number = world.unpaid_invoice(at_most_cents=5000)
    assert number is not None
    return number


def test_loop_time_runs_ahead_of_wall_time() -> None:
    with World() as world:
        world.associate()
        world.wait(600.0)  # ten minutes of loop time
        assert world.loop_elapsed >= 600.0
        assert world.wall_elapsed < 5.0  # generous: this is not a benchmark


def test_calendar_is_scenario_date_plus_loop_time() -> None:
    start = dt.datetime(2027, 3, 14, 15, 9, tzinfo=dt.UTC)
    with World(WorldConfig(scenario_date=start)) as world:
        world.wait(90.0)
        assert world.calendar() - start == dt.timedelta(seconds=world.loop_elapsed)
        assert world.calendar() >= start + dt.timedelta(seconds=90)


def test_card_presentation_timeout_aborts_and_charges_nothing() -> None:
    config = WorldConfig(timeouts=Timeouts(card_presentation=45.0))
    with World(config) as world:
        world.associate()
        number = first_small_unpaid(world)
        world.start_payment(number)
        started = world.loop_elapsed
        outcome = world.finish_payment()
        assert outcome.result == "aborted"
        assert outcome.message == "Délai de présentation de la carte dépassé"
        assert world.loop_elapsed - started == pytest.approx(45.0, abs=0.01)
        assert world.store.invoice(number).status == "unpaid"
        world.wait(config.timeouts.result_display)
        assert world.terminal.engine.state is State.IDLE


def test_wait_until_times_out_with_a_description() -> None:
    with World() as world, pytest.raises(WorldTimeout, match="terminal state 'idle'"):
        world.run(world.wait_until(lambda: False, "something that never happens", 3.0))


def test_same_seed_same_world_and_same_demo_invoice() -> None:
    with World(WorldConfig(seed=7)) as a, World(WorldConfig(seed=7)) as b:
        assert [(i.number, i.amount_cents) for i in a.store.invoices.values()] == [
            (i.number, i.amount_cents) for i in b.store.invoices.values()
        ]


def test_world_closes_cleanly_leaving_no_task_or_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        world = World()
        world.open()
        world.associate()
        world.start_payment(first_small_unpaid(world))
        world.tap("visa")
        world.finish_payment()
        world.close()
        loop = world.loop
        del world
        gc.collect()
    assert loop.is_closed()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning | RuntimeWarning)]
    assert asyncio.all_tasks(loop) == set()


def test_a_terminal_cannot_be_added_twice_nor_a_phone_be_out_of_range_for_negative_time() -> None:
    with World(WorldConfig(preconfigured=True)) as world:
        world.add_terminal("autre_marchand")
        with pytest.raises(ProfileError, match="SIM0005 is already in the shop"):
            world.add_terminal("autre_marchand")
        with pytest.raises(ProfileError, match="SIM0001 is already in the shop"):
            world.add_terminal("standard")
        with pytest.raises(ValueError, match="must be 0 or more"):
            world.out_of_range(-5)
