"""Steps of faults and recovery ("incidents"): scenario scripts and faults from Gherkin.

``le porteur suit le script « nom »`` plays ``scenarios/nom.yaml`` (or a path) on the
scenario's world with :func:`harness.scenarios.runner.play`; the steps after it check the
verdict. The fault steps arm the world's fault facade directly.
"""

from __future__ import annotations

from pathlib import Path

from pytest_bdd import given, parsers, then, when

from harness.rig import World
from harness.scenarios.model import MOMENTS, load
from harness.scenarios.runner import Verdict, play
from harness.steps.paiement import parse_euros

#: Where ``le porteur suit le script « nom »`` looks for ``nom.yaml``.
SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "scenarios"


def find_script(name: str) -> Path:
    """``scenarios/<name>.yaml``, else ``scenarios/pending/<name>.yaml``, else ``name`` as a
    path."""
    for candidate in (
        SCENARIOS_DIR / f"{name}.yaml",
        SCENARIOS_DIR / "pending" / f"{name}.yaml",
        Path(name),
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no scenario script {name!r} in {SCENARIOS_DIR} nor at that path")


@when(parsers.parse("le porteur suit le script « {name} »"), target_fixture="verdict")
def follow_script(world: World, name: str) -> Verdict:
    return play(world, load(find_script(name), fixtures=world.config.fixtures))


@then("le script se déroule comme prévu")
def script_as_expected(verdict: Verdict) -> None:
    assert verdict.passed, (
        f"script {verdict.scenario.name}: {verdict.status} — {verdict.outcome}\n"
        + verdict.explain()
        + "\n"
        + "\n".join(verdict.notes)
    )


@then(parsers.parse("le résultat du script est « {result} »"))
def script_result(verdict: Verdict, result: str) -> None:
    assert verdict.result == result, f"result {verdict.result}: {verdict.outcome}"


@then("aucun montant n'est débité")
def nothing_charged(verdict: Verdict) -> None:
    assert verdict.charged_cents == 0, f"charged {verdict.charged_cents} cents: {verdict.outcome}"


@then(parsers.parse("le montant débité est de {amount}"))
def amount_charged(verdict: Verdict, amount: str) -> None:
    assert verdict.charged_cents == parse_euros(amount), verdict.outcome


@then("le terminal revient à l'accueil")
def terminal_idle(world: World) -> None:
    world.run(
        world.wait_until(
            lambda: world.terminal.engine.state.value == "idle", "the welcome screen", 120.0
        )
    )


# ------------------------------------------------------------------ faults
@given(parsers.parse("le lien Bluetooth sera coupé au moment « {moment} »"))
def drop_link_at(world: World, moment: str) -> None:
    if moment not in MOMENTS:
        raise ValueError(f"unknown moment {moment!r} (moments: {', '.join(MOMENTS)})")

    async def drop() -> None:
        await world.terminal.drop_links()

    world.at_moment(moment, drop)


@when("le lien Bluetooth est coupé")
def drop_link_now(world: World) -> None:
    world.drop_link()


@when(parsers.parse("le téléphone sort de portée pendant {seconds:d} secondes"))
def out_of_range(world: World, seconds: int) -> None:
    world.out_of_range(seconds)


@given(parsers.parse("la batterie du terminal est à {level:d} %"))
@when(parsers.parse("la batterie du terminal tombe à {level:d} %"))
def battery(world: World, level: int) -> None:
    world.set_battery(level)
