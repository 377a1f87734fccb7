"""One fleet size in its own process: ``python -m bench.fleet_worker SIZE``.

A child process per size so that each starts from a clean heap and its peak RSS is its own.
It prints JSON lines on stdout, flushed as they happen, so that the parent can stop it at a
wall-time budget and still say how far it got:

* ``{"event": "built", ...}`` once the fleet is open (terminals advertising, phones on);
* ``{"event": "paid", "count": k, "wall": s}`` each time a payment ends paid;
* ``{"event": "done", ...}`` with every figure once all flows ended and the fleet closed.

Memory per terminal is the process's peak RSS minus its RSS before the fleet was built,
divided by the size: it covers the terminal, its phone and app, and its share of the backend
(with ``--tracemalloc``: the peak of Python allocations instead, a slower run).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import pstats
import resource
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from bench import whatif
from harness.fleet import Fleet, FleetConfig


def rss_bytes() -> int:
    """The current resident set size (Linux ``/proc/self/statm``; else the peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return peak_rss_bytes()
    return pages * resource.getpagesize()


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts in KiB


_EMIT_LOCK = threading.Lock()
HEARTBEAT_SECONDS = 2.0


def emit(**fields: Any) -> None:
    line = json.dumps(fields)
    with _EMIT_LOCK:
        print(line, flush=True)


def heartbeat(stages: Counter[str], since: float, stop: threading.Event) -> None:
    """Every few wall seconds: how many members reached each stage, and the peak RSS (so a
    fleet stopped at its budget still tells how far it got and what it weighed)."""
    while not stop.wait(HEARTBEAT_SECONDS):
        emit(
            event="progress",
            wall=time.perf_counter() - since,
            stages=dict(stages),
            peak_rss_mb=peak_rss_bytes() / 2**20,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", type=int)
    parser.add_argument("--tracemalloc", action="store_true", help="trace Python allocations")
    parser.add_argument("--profile", type=Path, help="write a cProfile report of the payments")
    parser.add_argument(
        "--what-if", action="store_true", help="with the proposed fixes (bench/whatif.py)"
    )
    parser.add_argument(
        "--scan-window",
        type=float,
        help="loop seconds the app lists terminals for (AppTimeouts.scan_window)",
    )
    args = parser.parse_args(argv)
    if args.what_if:
        with whatif.applied():
            return measure(args)
    return measure(args)


def measure(args: argparse.Namespace) -> int:
    size: int = args.size

    rss_start = rss_bytes()
    if args.tracemalloc:
        tracemalloc.start()
    started = time.perf_counter()
    config = FleetConfig(size=size)
    if args.scan_window is not None:
        config.app_timeouts = dataclasses.replace(config.app_timeouts, scan_window=args.scan_window)
    fleet = Fleet(config)
    fleet.open()
    built = time.perf_counter()
    emit(
        event="built",
        size=size,
        wall=built - started,
        rss_start_mb=rss_start / 2**20,
        rss_mb=rss_bytes() / 2**20,
    )

    stages: Counter[str] = Counter()

    def on_stage(stage: str, _text: str) -> None:
        stages[stage] += 1
        if stage == "paid":
            emit(event="paid", count=stages["paid"], wall=time.perf_counter() - built)

    for member in fleet.members:
        member.app.listeners.append(on_stage)
    profiler = cProfile.Profile() if args.profile else None
    stop = threading.Event()
    threading.Thread(target=heartbeat, args=(stages, built, stop), daemon=True).start()
    try:
        if profiler is not None:
            profiler.enable()
        outcomes = fleet.pay_all(strict=False)
        if profiler is not None:
            profiler.disable()
        paid_at = time.perf_counter()
        loop_seconds = fleet.loop_elapsed
        failures = [
            {"member": m.index, "terminal": m.profile.name, "error": str(m.error)}
            for m in fleet.failed
        ]
        invariants = fleet.store.check_invariants()
        invoices_paid = sum(1 for inv in fleet.store.invoices.values() if inv.status == "paid")
    finally:
        stop.set()
        fleet.close()
    closed = time.perf_counter()
    traced_peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else None
    peak = peak_rss_bytes()
    if profiler is not None:
        with args.profile.open("w") as out:
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
    pay_wall = paid_at - built
    emit(
        event="done",
        size=size,
        build_wall=built - started,
        pay_wall=pay_wall,
        close_wall=closed - paid_at,
        total_wall=closed - started,
        loop_seconds=loop_seconds,
        scan_window=config.app_timeouts.scan_window,
        payments_paid=invoices_paid,
        outcomes=len(outcomes),
        payments_per_second=invoices_paid / pay_wall if pay_wall > 0 else None,
        failures=failures,
        invariant_violations=invariants,
        rss_start_mb=rss_start / 2**20,
        peak_rss_mb=peak / 2**20,
        bytes_per_terminal=(peak - rss_start) / size,
        traced_peak_bytes_per_terminal=None if traced_peak is None else traced_peak / size,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
