"""pytest plugin (entry point ``pytest11``): the ``world`` fixture, options, step library,
timing summary and failure reports.

Fixtures are thin wrappers over :class:`harness.rig.World`, which scripts and the CLI use too.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_bdd.reporting import ReportContext, test_report_context_registry

from harness.fixtures import fixtures_dir
from harness.leaks import LogRecorder, pan_leaks
from harness.rig import LINKS, World, WorldConfig

STEP_MODULES = (
    "harness.steps.paiement",
    "harness.steps.porteur",
    "harness.steps.empreinte",
    "harness.steps.association",
    "harness.steps.incidents",
)
LOOPTIME_PLUGINS = ("looptime_plugin", "looptime_chronometers", "looptime_timeproxies")
_WORLD_KEY = pytest.StashKey[World]()
_LOGS_KEY = pytest.StashKey[LogRecorder]()
_TIMINGS_KEY = pytest.StashKey[list[tuple[str, float, float]]]()
_CONFIG: pytest.Config | None = None  # the session's config, for the report hook


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tpe-sim", "tpe-sim virtual terminal worlds")
    group.addoption(
        "--tpe-seed",
        type=int,
        default=None,
        help="Faker seed for the generated customers and invoices (default: fixtures' seed)",
    )
    group.addoption(
        "--tpe-realtime",
        action="store_true",
        help="run worlds on the wall clock instead of virtual time (slow; for debugging)",
    )
    group.addoption(
        "--tpe-terminal",
        default="standard",
        help="terminal profile of terminals.yaml the worlds start with (default: standard)",
    )
    group.addoption(
        "--tpe-fixtures",
        type=Path,
        default=None,
        help="folder holding cards.yaml, terminals.yaml and merchant.yaml",
    )
    group.addoption(
        "--tpe-link",
        choices=LINKS,
        default="local",
        help="how the worlds' devices hear each other: local (Bumble's in-process link, "
        "default) or rootcanal (one RootCanal virtual controller per world, on the wall "
        "clock: implies --tpe-realtime)",
    )
    group.addoption(
        "--tpe-preconfigured",
        action="store_true",
        help="worlds start with a terminal configured at the factory (no first setup: "
        "saves its minutes on the wall clock)",
    )
    group.addoption(
        "--tpe-snoop",
        type=Path,
        default=None,
        metavar="DIR",
        help="save the HCI traffic of every world device in btsnoop files (Wireshark), one "
        "folder per test under DIR",
    )


def pytest_configure(config: pytest.Config) -> None:
    # looptime's own pytest plugin (installed with looptime) breaks every fixture when
    # pytest-asyncio is absent; worlds build their looptime loops themselves, so drop it then.
    if not config.pluginmanager.has_plugin("asyncio"):
        for name in LOOPTIME_PLUGINS:
            plugin = config.pluginmanager.get_plugin(name)
            if plugin is not None:
                config.pluginmanager.unregister(plugin)
    for module in STEP_MODULES:
        config.pluginmanager.import_plugin(module)
    config.stash[_TIMINGS_KEY] = []
    global _CONFIG
    _CONFIG = config


@pytest.fixture
def world_config(request: pytest.FixtureRequest) -> WorldConfig:
    """The configuration of the test's world; override this fixture to change it."""
    option = request.config.getoption
    return WorldConfig(
        fixtures=option("--tpe-fixtures") or fixtures_dir(),
        seed=option("--tpe-seed"),
        # RootCanal runs on the wall clock only
        fast=not option("--tpe-realtime") and option("--tpe-link") == "local",
        terminal=option("--tpe-terminal"),
        link=option("--tpe-link"),
        preconfigured=option("--tpe-preconfigured"),
    )


@pytest.fixture
def world(request: pytest.FixtureRequest, world_config: WorldConfig) -> Iterator[World]:
    """A running world (terminal, phone, backend on one loop), closed after the test."""
    snoop = request.config.getoption("--tpe-snoop")
    if snoop is not None and world_config.snoop_dir is None:
        folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid).strip("_")
        world_config = dataclasses.replace(world_config, snoop_dir=snoop / folder)
    the_world = World(world_config)
    recorder = LogRecorder()
    request.node.stash[_LOGS_KEY] = recorder
    root = logging.getLogger()
    root.addHandler(recorder)
    product_loggers = [logging.getLogger(name) for name in ("harness", "simulator")]
    levels = [logger.level for logger in product_loggers]
    for logger in product_loggers:  # the product's own debug logs are scanned for PANs too
        logger.setLevel(logging.DEBUG)
    the_world.open()
    request.node.stash[_WORLD_KEY] = the_world
    try:
        yield the_world
    finally:
        root.removeHandler(recorder)
        for logger, level in zip(product_loggers, levels, strict=True):
            logger.setLevel(level)
        loop_s, wall_s = the_world.loop_elapsed, the_world.wall_elapsed
        the_world.close()
        request.node.user_properties.append(("loop_seconds", round(loop_s, 6)))
        request.node.user_properties.append(("wall_seconds", round(wall_s, 6)))


def pytest_bdd_after_scenario(
    request: pytest.FixtureRequest, feature: object, scenario: object
) -> None:
    """After every scenario: no money taken with the invoice unpaid, no invoice paid without
    an approved payment (the backend's bookkeeping invariants)."""
    the_world = request.node.stash.get(_WORLD_KEY, None)
    if the_world is None:
        return
    problems = the_world.store.check_invariants()
    assert not problems, "payment bookkeeping broken:\n" + "\n".join(problems)
    recorder = request.node.stash.get(_LOGS_KEY, None)
    leaks = pan_leaks(the_world, recorder.lines if recorder else ())
    assert not leaks, "full card number written where it must not be:\n" + "\n".join(leaks)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    the_world = item.stash.get(_WORLD_KEY, None)
    if the_world is not None and report.failed:
        report.sections.append(("tpe-sim world", failure_report(the_world)))
    return report


def failure_report(world: World) -> str:
    """What a developer needs when a scenario fails: screens, messages, backend requests."""
    engine = world.terminal.engine
    parts = [f"state: {engine.state.value}   loop time: {world.loop_elapsed:.3f} s", ""]
    parts.append("terminal screen history:")
    parts += [f"  {shot}" for shot in engine.screen.history]
    parts.append("last commands received by the terminal:")
    parts += [f"  {cmd!r}" for cmd in list(world.terminal.commands_received)[-10:]]
    parts.append("last events sent by the terminal:")
    parts += [f"  {evt!r}" for evt in list(world.terminal.events_sent)[-10:]]
    parts.append("app screen (last 10):")
    parts += [f"  {text}" for text in world.app.screen[-10:]]
    parts.append("backend requests (last 10):")
    parts += [f"  {record}" for record in list(world.backend.request_log)[-10:]]
    return "\n".join(parts)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Carry what the controller needs across pytest-xdist: pytest-bdd's scenario (for the
    Cucumber JSON report, which pytest-bdd only writes from its own process's registry) and
    the world's loop and wall time (for the summary)."""
    context = test_report_context_registry.get(report)
    if context is not None:  # where the test ran: ride on the report
        report.tpe_bdd_context = {"scenario": context.scenario, "name": context.name}  # type: ignore[attr-defined]
    elif (carried := getattr(report, "tpe_bdd_context", None)) is not None:
        test_report_context_registry[report] = ReportContext(**carried)  # from a worker
    if report.when == "teardown":
        properties: dict[str, Any] = dict(report.user_properties)
        if "loop_seconds" in properties and _CONFIG is not None:
            loop_s, wall_s = float(properties["loop_seconds"]), float(properties["wall_seconds"])
            _CONFIG.stash[_TIMINGS_KEY].append((report.nodeid, loop_s, wall_s))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    timings = config.stash.get(_TIMINGS_KEY, [])
    if not timings:
        return
    terminalreporter.section("tpe-sim worlds: loop time vs wall time")
    for nodeid, loop_s, wall_s in timings:
        terminalreporter.write_line(f"{loop_s:9.3f} s loop  {wall_s:7.3f} s wall  {nodeid}")
