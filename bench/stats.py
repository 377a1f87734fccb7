"""Summaries of repeated wall-time measurements."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Summary:
    """Seconds: ``runs`` samples, median, 95th percentile (nearest rank), min, max, mean."""

    runs: int
    median: float
    p95: float
    min: float
    max: float
    mean: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least ``fraction`` below it."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: Sequence[float]) -> Summary:
    return Summary(
        runs=len(samples),
        median=statistics.median(samples),
        p95=percentile(samples, 0.95),
        min=min(samples),
        max=max(samples),
        mean=statistics.fmean(samples),
    )


def ms(seconds: float) -> str:
    """``12.3 ms`` (or ``1.23 s`` from one second up)."""
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"
