"""``tpe-sim scenario run FILE…``: play scenario scripts, one world each, and judge them.

One line per script (✓ or ✗, name, outcome, loop time), a failure's details indented below.
Exit status: 0 when every script passed, 1 when one failed (or could not be played), 2 when
a script is invalid (its error names the file, the line and the field; the valid ones still
run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from harness.scenarios.model import Known, Scenario, ScenarioError, load, script_paths


def add_parser(commands: Any) -> None:
    """Register ``scenario run`` on the ``tpe-sim`` sub-command parsers."""
    scenario = commands.add_parser("scenario", help="scenario scripts (scenarios/*.yaml)")
    actions = scenario.add_subparsers(dest="scenario_command", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="play scripts, each in its own world on virtual time, and check what they expect",
        description="Play each script in its own world (virtual time) and check its "
        "expectation. Exit 0: all passed; 1: one failed; 2: one is invalid.",
    )
    run.add_argument(
        "targets",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="script files, or folders (their *.yaml, sub-folders excluded)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=None,
        help="Faker seed for the scripts that set none (default: the fixtures' seed)",
    )
    run.add_argument(
        "-v",
        "--details",
        action="store_true",
        help="print what happened in every script (steps, faults, app messages), not only "
        "in failing ones",
    )
    run.add_argument("--fixtures", type=Path, default=None, help=argparse.SUPPRESS)


def run_command(args: argparse.Namespace) -> int:
    from harness.fixtures import fixtures_dir
    from harness.scenarios.runner import run_scenario

    fixtures: Path = args.fixtures or fixtures_dir()
    try:
        known = Known.from_fixtures(fixtures)
    except Exception as exc:  # a broken catalogue or profiles file
        print(f"tpe-sim: cannot load the fixtures: {exc}", file=sys.stderr)
        return 2
    paths = script_paths(args.targets)
    if not paths:
        print("tpe-sim: no scenario script (*.yaml) found there", file=sys.stderr)
        return 2
    scripts: list[Scenario] = []
    invalid = 0
    for path in paths:
        try:
            scripts.append(load(path, known))
        except ScenarioError as exc:
            invalid += 1
            print(f"✗ invalid script: {exc}", file=sys.stderr)
    failed = 0
    wall_start = time.perf_counter()
    loop_total = 0.0
    for number, scenario in enumerate(scripts, 1):
        if len(scripts) > 1:
            print(f"[{number}/{len(scripts)}] {scenario.name} …", file=sys.stderr, flush=True)
        verdict = run_scenario(scenario, fixtures=fixtures, seed=args.seed)
        loop_total += verdict.loop_seconds
        mark = "✓" if verdict.passed else "✗"
        label = verdict.outcome if verdict.status != "error" else "could not be played"
        print(f"{mark} {scenario.name} — {label} ({verdict.loop_seconds:.3f} s loop time)")
        if not verdict.passed:
            failed += 1
            for line in verdict.explain().splitlines():
                print(f"    {line}")
        if not verdict.passed or args.details:
            if scenario.description:
                print(f"    script: {scenario.description}")
            print(f"    file: {scenario.source}")
            for note in verdict.notes:
                print(f"      {note}")
    if len(paths) > 1:
        wall = time.perf_counter() - wall_start
        print(
            f"{len(scripts) - failed} passed, {failed} failed, {invalid} invalid "
            f"({loop_total:.1f} s loop time, {wall:.1f} s wall)"
        )
    if invalid:
        return 2
    return 1 if failed else 0
