"""``python -m bench``: every measurement side by side, a table on stdout and a JSON report.

Rows: the floor (Bumble alone), one end-to-end payment in a fresh world, time compression,
firmware download, a fleet of N terminals and phones for each N, and the realistic lane
(RootCanal). Targets are printed next to the figures; nothing here fails on a missed target
(this is a benchmark, not a test). See ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import whatif
from bench.e2e import card_timeouts, firmware_profile, first_setup_with_firmware, one_payment
from bench.floor import run_floor_once
from bench.frames import FrameScript, payment_script
from bench.realistic import Unavailable, one_payment_over_rootcanal
from bench.stats import Summary, ms, summarize

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"

TARGET_RATIO = 2.0  # e2e payment / floor, at most
TARGET_E2E = 0.040  # seconds, median, at most
TARGET_COMPRESSION = 1000.0  # loop seconds per wall second, at least
TARGET_FLEET_SIZE = 100
TARGET_FLEET_WALL = 5.0  # seconds for TARGET_FLEET_SIZE payments
TARGET_FLEET_BYTES = 3 * 2**20  # per terminal
#: a fleet big enough for its quadratic costs to show, small enough to profile in a minute
PROFILE_FLEET_SIZE = 30
#: what the app would scan for if it stopped at the wanted terminal: two advertising intervals
WHAT_IF_SCAN_WINDOW = 0.5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="payments and floors (default 30)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument(
        "--fleet",
        default="10,100,500",
        help="fleet sizes, comma-separated; empty for none (default 10,100,500)",
    )
    parser.add_argument(
        "--fleet-budget",
        type=float,
        default=60.0,
        help="wall seconds a fleet may take before it is stopped and reported unfinished; "
        "0 for no limit (default 60)",
    )
    parser.add_argument(
        "--timeouts", type=int, default=10, help="card timeouts in the compression run"
    )
    parser.add_argument("--no-realistic", action="store_true", help="skip the RootCanal lane")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then write cProfile reports of the e2e payment and of a fleet to reports/ "
        "(separate, untimed runs)",
    )
    parser.add_argument(
        "--what-if",
        action="store_true",
        help="also measure the e2e payment and the fleets with the proposed fixes patched in "
        "(bench/whatif.py; the product code is not changed)",
    )
    parser.add_argument(
        "--json", type=Path, default=REPORTS / "bench.json", help="default reports/bench.json"
    )
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- measuring


def measure_floor(script: FrameScript, runs: int, warmup: int) -> Summary:
    for _ in range(warmup):
        run_floor_once(script)
    return summarize([run_floor_once(script) for _ in range(runs)])


def measure_e2e(runs: int, warmup: int) -> tuple[float, Summary]:
    """The first payment of the process (cold: imports done, caches empty) and the rest."""
    cold = one_payment()
    for _ in range(max(0, warmup - 1)):
        one_payment()
    return cold, summarize([one_payment() for _ in range(runs)])


def run_fleet(size: int, budget: float, extra: list[str]) -> dict[str, Any]:
    """One fleet size in a child process (:mod:`bench.fleet_worker`), stopped at ``budget``
    wall seconds (0: none). The worker's last figures, and how far it got if stopped."""
    command = [sys.executable, "-m", "bench.fleet_worker", str(size), *extra]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    last: dict[str, Any] = {}
    built: dict[str, Any] = {}
    progress: dict[str, Any] = {}
    stopped = False
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            remaining = None if budget <= 0 else budget - (time.perf_counter() - started)
            if remaining is not None and remaining <= 0:
                stopped = True
                break
            if not selector.select(remaining):
                continue
            line = process.stdout.readline()
            if not line:
                break
            event = json.loads(line)
            if event["event"] == "built":
                built = event
            if event["event"] == "progress":
                progress = event
                continue
            last = event
            if event["event"] == "done":
                break
    if stopped:
        process.kill()
    _, stderr = process.communicate()
    if last.get("event") == "done":
        return {"size": size, "finished": True, **last}
    if stopped:
        peak = progress.get("peak_rss_mb")
        start = built.get("rss_start_mb")
        return {
            "size": size,
            "finished": False,
            "budget": budget,
            "build_wall": built.get("wall"),
            "paid_within_budget": last.get("count", 0) if last.get("event") == "paid" else 0,
            "stages_within_budget": progress.get("stages", {}),
            "peak_rss_mb_within_budget": peak,
            "bytes_per_terminal_at_least": None
            if peak is None or start is None
            else (peak - start) * 2**20 / size,
        }
    tail = stderr.strip().splitlines()[-3:]
    return {"size": size, "finished": False, "error": " | ".join(tail) or "worker died"}


# ---------------------------------------------------------------------------- reporting


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, row: str, figure: str, target: str = "", verdict: str = "") -> None:
        self.rows.append((row, figure, target, verdict))
        print(f"  {row}: {figure}" + (f"   [{target}: {verdict}]" if target else ""), flush=True)

    def render(self) -> str:
        headers = ("row", "figure", "target", "verdict")
        widths = [max(len(r[i]) for r in [headers, *self.rows]) for i in range(4)]
        lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        for row in self.rows:
            lines.append(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load,
        "bumble": version("bumble"),
        "looptime": version("looptime"),
        "aiohttp": version("aiohttp"),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return None


@contextlib.contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        with path.open("w") as out:
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)


# ---------------------------------------------------------------------------- main


@contextlib.contextmanager
def section(table: Table, report: dict[str, Any], key: str, row: str) -> Iterator[None]:
    """A part of the bench: if it raises, its row says so and the others still run."""
    try:
        yield
    except Exception as exc:
        report[key] = {"error": f"{type(exc).__name__}: {exc}"}
        table.add(row, f"error: {type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s) for s in args.fleet.split(",") if s.strip()]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(), "targets": _targets()}
    table = Table()
    info = report["machine"]
    print(
        f"tpe-sim bench — {info['date']}, Python {info['python']}, bumble {info['bumble']}, "
        f"{info['cpus']} CPUs, load average {info['load_average_at_start']}",
        flush=True,
    )
    bench_started = time.perf_counter()
    made: dict[str, Any] = {}  # what later sections need from earlier ones

    with section(table, report, "floor", "floor"):
        made["script"] = frames = payment_script()
        report["frames"] = {
            "writes": frames.writes,
            "notifications": frames.notifications,
            "bytes": frames.bytes,
            "steps": frames.steps,
        }
        made["floor"] = floor = measure_floor(frames, args.runs, args.warmup)
        report["floor"] = floor.as_json()
        table.add(
            f"floor: Bumble pair + {frames.writes} writes + {frames.notifications} notifications",
            f"median {ms(floor.median)}, p95 {ms(floor.p95)} ({floor.runs} runs)",
        )

    script: FrameScript | None = made.get("script")
    with section(table, report, "e2e", "e2e contactless payment, fresh world"):
        e2e_section(args, table, report, made.get("floor"))

    if args.what_if and script is not None:
        with section(table, report, "what_if", "what-if (all fixes): floor / e2e"):
            with whatif.applied():
                wi_floor = measure_floor(script, args.runs, args.warmup)
                _, wi_e2e = measure_e2e(args.runs, args.warmup)
            report["what_if"] = {
                "fixes": list(whatif.FIXES),
                "floor": wi_floor.as_json(),
                "e2e": wi_e2e.as_json(),
            }
            table.add(
                "what-if (all fixes): floor / e2e",
                f"median {ms(wi_floor.median)} / {ms(wi_e2e.median)} "
                f"({wi_e2e.median / wi_floor.median:.1f}×)",
            )

    with section(table, report, "compression", "compression: card presentation timeouts"):
        compression = card_timeouts(args.timeouts)
        report["compression"] = {**asdict(compression), "ratio": compression.ratio}
        table.add(
            f"compression: {compression.scenario} ×{compression.repeats}",
            f"{compression.loop_seconds:.0f} s loop in {ms(compression.wall_seconds)} wall: "
            f"{compression.ratio:,.0f}×",
            f"≥ {TARGET_COMPRESSION:,.0f}×",
            verdict(compression.ratio >= TARGET_COMPRESSION),
        )
    with section(table, report, "firmware_download", "compression: firmware download"):
        firmware_section(table, report)

    report["fleet"] = []
    variants: list[tuple[str, list[str]]] = [("", [])]
    if args.what_if:
        variants.append(
            (
                f"what-if (all fixes, scan window {WHAT_IF_SCAN_WINDOW:g} s) ",
                ["--what-if", "--scan-window", str(WHAT_IF_SCAN_WINDOW)],
            )
        )
    for label, extra in variants:
        for size in sizes:
            result = run_fleet(size, args.fleet_budget, list(extra))
            result["what_if"] = bool(extra)
            report["fleet"].append(result)
            _fleet_row(table, label, result)

    row = "realistic: one payment over RootCanal"
    if args.no_realistic:
        report["realistic"] = {"available": False, "reason": "skipped (--no-realistic)"}
        table.add(row, "skipped (--no-realistic)")
    elif script is None:
        report["realistic"] = {"available": False, "reason": "no frame script (floor failed)"}
        table.add(row, "skipped: the floor failed")
    else:
        with section(table, report, "realistic", row):
            realistic_section(table, report, script)

    if args.profile:
        report["profiles"] = profile_section(args, sizes)
        for path in report["profiles"]:
            print(f"  profile: {path}", flush=True)

    report["bench_wall_seconds"] = time.perf_counter() - bench_started
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print()
    print(table.render())
    print(f"\n{report['bench_wall_seconds']:.0f} s; JSON in {_relative(args.json)}")
    return 0


def profile_section(args: argparse.Namespace, sizes: list[int]) -> list[str]:
    """cProfile reports, from runs of their own after the timed ones (a profiler slows what
    it watches several times over): 10 e2e payments, and a fleet of
    :data:`PROFILE_FLEET_SIZE` (with the what-if fixes too when asked for)."""
    written = []
    path = REPORTS / "bench-profile-e2e.txt"
    with profiled(path):
        for _ in range(10):
            one_payment()
    written.append(_relative(path))
    if sizes:
        size = PROFILE_FLEET_SIZE
        variants: list[tuple[str, list[str]]] = [("", [])]
        if args.what_if:
            variants.append(("-whatif", ["--what-if", "--scan-window", str(WHAT_IF_SCAN_WINDOW)]))
        for suffix, extra in variants:
            path = REPORTS / f"bench-profile-fleet-{size}{suffix}.txt"
            run_fleet(size, 0, [*extra, "--profile", str(path)])
            written.append(_relative(path))
    return written


def e2e_section(
    args: argparse.Namespace, table: Table, report: dict[str, Any], floor: Summary | None
) -> None:
    cold, e2e = measure_e2e(args.runs, args.warmup)
    ratio = e2e.median / floor.median if floor is not None else None
    report["e2e"] = {**e2e.as_json(), "cold_first_run": cold, "ratio_to_floor": ratio}
    table.add(
        "e2e contactless payment, fresh world",
        f"median {ms(e2e.median)}, p95 {ms(e2e.p95)} ({e2e.runs} runs; first {ms(cold)})",
        f"≤ {TARGET_E2E * 1000:g} ms",
        verdict(e2e.median <= TARGET_E2E),
    )
    if ratio is not None:
        table.add(
            "e2e / floor", f"{ratio:.1f}×", f"≤ {TARGET_RATIO:g}×", verdict(ratio <= TARGET_RATIO)
        )


def firmware_section(table: Table, report: dict[str, Any]) -> None:
    profile = firmware_profile()
    if profile is None:
        firmware = "unavailable: no terminal profile has a firmware download (firmware_update)"
        report["firmware_download"] = {"available": False, "reason": firmware}
        table.add("compression: firmware download", firmware)
        return
    setup = first_setup_with_firmware(profile)
    report["firmware_download"] = {"available": True, **asdict(setup), "ratio": setup.ratio}
    table.add(
        f"compression: {setup.scenario}",
        f"{setup.loop_seconds:.0f} s loop in {ms(setup.wall_seconds)} wall: {setup.ratio:,.0f}×",
        f"≥ {TARGET_COMPRESSION:,.0f}×",
        verdict(setup.ratio >= TARGET_COMPRESSION),
    )


def realistic_section(table: Table, report: dict[str, Any], script: FrameScript) -> None:
    try:
        real = one_payment_over_rootcanal(script)
    except Unavailable as exc:
        report["realistic"] = {"available": False, "reason": str(exc)}
        table.add("realistic: one payment over RootCanal", f"unavailable: {exc}")
        return
    report["realistic"] = {"available": True, **asdict(real)}
    errors = f"; {len(real.teardown_errors)} error(s) at teardown" if real.teardown_errors else ""
    table.add(
        f"realistic: one payment over RootCanal {real.rootcanal_version}",
        f"{ms(real.payment_wall)} wall ({ms(real.pay_wall)} paying); "
        f"floor over RootCanal {ms(real.floor_wall)}{errors}",
    )


def _fleet_row(table: Table, label: str, result: dict[str, Any]) -> None:
    size = result["size"]
    name = f"{label}fleet N={size}"
    target = (
        f"≤ {TARGET_FLEET_WALL:g} s, ≤ {TARGET_FLEET_BYTES / 2**20:g} MB/terminal"
        if size == TARGET_FLEET_SIZE
        else ""
    )
    if result.get("finished"):
        per_terminal = result["bytes_per_terminal"]
        failures = len(result["failures"])
        figure = (
            f"{result['pay_wall']:.2f} s paying ({result['build_wall']:.2f} s building), "
            f"{result['payments_per_second']:.1f} payments/s, "
            f"{per_terminal / 2**20:.2f} MB/terminal"
            + (f", {failures} failed" if failures else "")
            + (
                f", {len(result['invariant_violations'])} invariant violations"
                if result["invariant_violations"]
                else ""
            )
        )
        ok = result["pay_wall"] <= TARGET_FLEET_WALL and per_terminal <= TARGET_FLEET_BYTES
        table.add(name, figure, target, verdict(ok) if target else "")
    elif "error" in result:
        table.add(name, f"error: {result['error']}", target, "MISSED" if target else "")
    else:
        stages = result["stages_within_budget"]
        reached = ", ".join(f"{stages.get(stage, 0)} {stage}" for stage in ("associated", "paid"))
        memory = result["bytes_per_terminal_at_least"]
        figure = (
            f"stopped at the {result['budget']:g} s budget ({result['build_wall']:.2f} s "
            f"building): {reached} of {size}"
            + ("" if memory is None else f"; ≥ {memory / 2**20:.2f} MB/terminal so far")
        )
        table.add(name, figure, target, "MISSED" if target else "")


def _targets() -> dict[str, Any]:
    return {
        "e2e_median_seconds_max": TARGET_E2E,
        "e2e_to_floor_ratio_max": TARGET_RATIO,
        "compression_min": TARGET_COMPRESSION,
        "fleet_size": TARGET_FLEET_SIZE,
        "fleet_wall_seconds_max": TARGET_FLEET_WALL,
        "fleet_bytes_per_terminal_max": TARGET_FLEET_BYTES,
    }


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(ROOT))
    return str(path)
