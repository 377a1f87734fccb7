"""Steps of "Associez votre application à votre TPE": discovery, pairing, bonding, setup."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_bdd import given, parsers, then, when

from harness.app import MENU_TERMINALS, FoundTerminal, PhoneError
from harness.rig import World


@dataclass
class Attempt:
    """What the last association attempt gave: the terminal, or the error the user read."""

    error: PhoneError | None = None
    loop_seconds: float = 0.0
    started_at: float = 0.0  # loop time when the attempt began
    terminals: list[FoundTerminal] = field(default_factory=list)


@given(parsers.parse("un terminal « {profile} » sorti de sa boîte"))
def terminal_of_profile(world: World, profile: str) -> None:
    world.use_terminal(profile)
    assert not world.terminal.engine.configured


@given("le Bluetooth du téléphone est désactivé")
def bluetooth_off(world: World) -> None:
    world.phone.bluetooth_on = False


@given("la localisation (GPS) du téléphone est désactivée")
def location_off(world: World) -> None:
    world.phone.location_on = False


@given("le terminal est éteint")
def terminal_off(world: World) -> None:
    world.switch_off_terminal()


@given("le terminal de paiement a été associé puis la liaison coupée")
def associated_then_disconnected(world: World) -> None:
    world.associate()
    assert world.app.link is not None
    world.run(world.app.link.disconnect())
    world.app.link = None


@when(f"le technicien ouvre le menu « {MENU_TERMINALS} »", target_fixture="attempt")
def open_menu(world: World) -> Attempt:
    attempt = Attempt()
    try:
        attempt.terminals = world.run(world.app.list_terminals())
    except PhoneError as error:
        attempt.error = error
    return attempt


@when("le technicien associe le terminal", target_fixture="attempt")
@when("le technicien associe à nouveau le terminal", target_fixture="attempt")
def associate(world: World) -> Attempt:
    attempt = Attempt(started_at=world.loop.time())
    started = world.loop_elapsed
    try:
        world.associate()
    except PhoneError as error:
        attempt.error = error
    attempt.loop_seconds = world.loop_elapsed - started
    return attempt


@when("le technicien refuse le code sur le téléphone")
def refuse_on_phone(world: World) -> None:
    world.config.pairing_answer = "refuse_on_phone"


@when("le commerçant refuse le code sur le terminal")
def refuse_on_terminal(world: World) -> None:
    world.config.pairing_answer = "refuse_on_terminal"


@when("le technicien accepte désormais le code")
def accept_code(world: World) -> None:
    world.config.pairing_answer = "confirm"


@when("le terminal redémarre")
def terminal_restarts(world: World) -> None:
    world.restart_terminal()


@when("l'application redémarre")
def app_restarts(world: World) -> None:
    world.restart_app()


@when("le technicien oublie le terminal")
def forget(world: World) -> None:
    world.forget_terminal()


@when("le terminal est réinitialisé aux réglages d'usine")
def factory_reset(world: World) -> None:
    world.factory_reset_terminal()


@when(
    parsers.parse("la liaison est coupée pendant la configuration à {percent:d} %"),
    target_fixture="cut_at",
)
def cut_during_setup(world: World, percent: int) -> int:
    task = world.spawn(world.app.associate_terminal())
    world.run(
        world.wait_until(
            lambda: world.terminal.engine._setup_percent() >= percent or task.done(),
            f"setup to reach {percent} %",
            3600.0,
        )
    )
    assert not task.done(), "setup ended before the link could be cut"
    link = world.app.link
    assert link is not None
    world.run(link.disconnect())
    world.run(world.wait_until(task.done, "the app to notice", 60.0))
    error = task.exception()
    assert isinstance(error, PhoneError), error
    assert error.code == "setup_interrupted"
    return len(world.app.screen)


@then(
    parsers.parse(
        "la liste montre le terminal « {name} » avec son numéro, son signal et sa batterie"
    )
)
def listed(world: World, attempt: Attempt, name: str) -> None:
    assert attempt.error is None, attempt.error
    (found,) = [t for t in attempt.terminals if t.name == name]
    assert found.serial == name.removeprefix("TPE-")
    assert found.battery == world.terminal.engine.battery
    assert any(
        f"{name} — n° {found.serial} — signal {found.rssi} dBm — batterie {found.battery} %" in text
        for text in world.app.screen
    )


@then(parsers.parse("l'association échoue avec le message « {message} »"))
@then(parsers.parse("la recherche échoue avec le message « {message} »"))
def fails_with(attempt: Attempt, message: str) -> None:
    assert attempt.error is not None, "it did not fail"
    assert message in attempt.error.message, attempt.error.message


@then("le terminal est associé au compte du commerçant")
def associated(world: World, attempt: Attempt) -> None:
    assert attempt.error is None, attempt.error
    assert world.app.terminal is not None
    assert world.app.terminal.serial in world.store.terminals


@then("rien n'est enregistré : ni appairage ni association")
def nothing_stored(world: World) -> None:
    assert world.run(world.terminal.bonded_phones()) == []
    assert world.app.terminal is None
    assert world.profile.serial not in world.store.terminals


@then("le téléphone s'est reconnecté sans nouvel appairage")
def reconnected_without_pairing(world: World, attempt: Attempt) -> None:
    assert attempt.error is None, attempt.error
    assert any("reconnecté (appairage conservé)" in text for text in world.app.screen[-8:])
    shots = [s for s in world.terminal.engine.screen.history if s.at >= attempt.started_at]
    codes = [shot for shot in shots if "APPAIRAGE" in shot.lines]
    assert codes == [], f"a new pairing took place: {codes}"


@then("le téléphone n'a plus d'appairage avec le terminal")
def no_bond_on_phone(world: World) -> None:
    keystore = world.phone.device.keystore
    assert keystore is not None
    assert world.run(keystore.get_all()) == []
    assert world.app.terminal is None


@then(parsers.parse("la configuration a duré au moins {minutes:d} minutes de temps simulé"))
def setup_took(attempt: Attempt, minutes: int) -> None:
    assert attempt.error is None, attempt.error
    assert attempt.loop_seconds >= minutes * 60, attempt.loop_seconds


@then(parsers.parse("le terminal a le logiciel « {version} »"))
def firmware(world: World, version: str) -> None:
    assert world.terminal.engine.firmware == version


@then(parsers.parse("la configuration a repris à {percent:d} % au moins"))
def resumed(world: World, cut_at: int, percent: int) -> None:
    progress = [
        int(text.rsplit(" ", 2)[-2])
        for text in world.app.screen[cut_at:]
        if text.startswith("Téléchargement de la configuration")
    ]
    assert progress, "no progress after the reconnection"
    assert progress[0] >= percent, f"setup went back to {progress[0]} %"


@when(
    parsers.parse("le téléphone n°{number:d} du commerçant associe le terminal"),
    target_fixture="attempt",
)
def other_phone_associates(world: World, number: int) -> Attempt:
    app = world.add_phone(number)
    attempt = Attempt(started_at=world.loop.time())
    try:
        world.run(app.associate_terminal())
    except PhoneError as error:
        attempt.error = error
    return attempt


@then(parsers.parse("le terminal garde {count:d} appairage"))
@then(parsers.parse("le terminal garde {count:d} appairages"))
def bonds_kept(world: World, count: int) -> None:
    assert len(world.run(world.terminal.bonded_phones())) == count


@when(parsers.parse("le terminal est rechargé à {level:d} %"))
def recharge(world: World, level: int) -> None:
    world.terminal.set_battery(level)


@when(parsers.parse("le technicien associe le terminal « {name} »"), target_fixture="attempt")
def associate_named(world: World, name: str) -> Attempt:
    attempt = Attempt(started_at=world.loop.time())
    try:
        world.run(world.app.associate_terminal(name))
    except PhoneError as error:
        attempt.error = error
    return attempt
