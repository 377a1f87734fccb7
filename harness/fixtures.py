"""Where the shared fixture files live (cards, terminals, merchant)."""

from __future__ import annotations

import os
from pathlib import Path


def fixtures_dir() -> Path:
    """``$TPE_SIM_FIXTURES`` if set, else the repository's ``fixtures/`` folder."""
    override = os.environ.get("TPE_SIM_FIXTURES")
    if override:
        return Path(override)
    here = Path(__file__).resolve().parents[1] / "fixtures"
    if not here.is_dir():
        raise FileNotFoundError(
            f"no fixtures folder at {here}: tpe-sim runs from a checkout (pip install -e .); "
            "elsewhere set TPE_SIM_FIXTURES (or --tpe-fixtures) to a folder holding cards.yaml, "
            "terminals.yaml, merchant.yaml and keys.yaml"
        )
    return here
