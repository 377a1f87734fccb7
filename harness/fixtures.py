"""Where the shared fixture files live (cards, terminals, merchant)."""

from __future__ import annotations

import os
from pathlib import Path


def fixtures_dir() -> Path:
    """``$TPE_SIM_FIXTURES`` if set, else the repository's ``fixtures/`` folder."""
    override = os.environ.get("TPE_SIM_FIXTURES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "fixtures"
