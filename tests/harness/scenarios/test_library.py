"""Every script of the library (``scenarios/*.yaml``) runs green through ``tpe-sim scenario
run``; the pending ones (``scenarios/pending/``) at least load."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.scenarios.model import load, script_paths

LIBRARY = Path(__file__).resolve().parents[3] / "scenarios"


def test_every_script_of_the_library_passes(capsys: pytest.CaptureFixture[str]) -> None:
    scripts = script_paths([LIBRARY])
    assert len(scripts) >= 20
    code = main(["scenario", "run", str(LIBRARY)])
    out = capsys.readouterr().out
    assert code == 0, out
    verdicts = [line for line in out.splitlines() if line[:1] in "✓✗"]
    assert len(verdicts) == len(scripts)
    assert all(line.startswith("✓") for line in verdicts), out


def test_every_script_states_its_expected_outcome() -> None:
    for path in script_paths([LIBRARY, LIBRARY / "pending"]):
        scenario = load(path)
        assert scenario.description, f"{path}: no description"
        assert scenario.expect.lines, f"{path}: no expectation"
