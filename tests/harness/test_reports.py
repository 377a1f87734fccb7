"""Reports for CI: `make test` writes JUnit XML and Cucumber JSON under reports/, and a failing
scenario prints what its world saw (pytester runs of generated features)."""

from __future__ import annotations

import json
import shlex
import tomllib
import xml.etree.ElementTree as ET
from itertools import takewhile
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
PAY = (
    "le technicien ouvre la facture dans le menu Facturation "
    "et clique sur « Déclencher un paiement par carte via le terminal »"
)
PASSING = "Le client règle sa facture sans contact"
FAILING = "Le terminal n'affiche pas le texte attendu"
NEVER_SHOWN = "UN TEXTE QUI N'APPARAÎT JAMAIS"
FEATURE = f"""\
# language: fr
Fonctionnalité: Rapports pour la CI
  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et le terminal de paiement est associé à l'application mobile
    Et une facture impayée de 12,00 € pour un client généré
    Quand {PAY}

  Scénario: {PASSING}
    Quand le client présente sa carte « visa » sans contact
    Et le paiement se termine
    Alors la facture est payée

  Scénario: {FAILING}
    Alors le terminal affiche « {NEVER_SHOWN} »
"""
TEST_MODULE = "from pytest_bdd import scenarios\nscenarios('rapports.feature')\n"


def unit_recipe() -> list[str]:
    """The shell words of the Makefile's `unit` recipe."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("unit:"))
    recipe = takewhile(lambda line: line.startswith("\t"), lines[start + 1 :])
    return shlex.split(" ".join(recipe))


def report_options() -> list[str]:
    return [w for w in unit_recipe() if w.startswith(("--junitxml=", "--cucumberjson="))]


def test_make_unit_writes_junit_xml_and_cucumber_json_under_reports() -> None:
    assert report_options() == [
        "--junitxml=reports/junit.xml",
        "--cucumberjson=reports/cucumber.json",
    ]
    words = unit_recipe()
    # pytest-bdd does not create the folder of its Cucumber JSON file.
    assert words[:3] == ["mkdir", "-p", "reports"]
    assert "reports/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    # Not in addopts: plain `pytest` runs (and pytester's) write no report files.
    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    addopts = pytest_ini["tool"]["pytest"]["ini_options"].get("addopts", "")
    assert "--junitxml" not in addopts
    assert "--cucumberjson" not in addopts


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".feature", rapports=FEATURE)
    pytester.makepyfile(test_rapports=TEST_MODULE)
    return pytester


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_the_reports_hold_the_scenarios_their_steps_and_outcomes(
    project: pytest.Pytester, workers: list[str]
) -> None:
    (project.path / "reports").mkdir()  # as `make unit` does
    result = project.runpytest("-p", "no:cacheprovider", *workers, *report_options())
    result.assert_outcomes(passed=1, failed=1)

    junit = ET.parse(project.path / "reports" / "junit.xml").getroot()
    cases = {case.get("name"): case for case in junit.iter("testcase")}
    passed = cases["test_le_client_règle_sa_facture_sans_contact"]
    failed = cases["test_le_terminal_naffiche_pas_le_texte_attendu"]
    assert passed.find("failure") is None
    failure = failed.find("failure")
    assert failure is not None
    assert NEVER_SHOWN in str(failure.get("message"))
    properties = {p.get("name") for p in passed.iter("property")}
    assert {"loop_seconds", "wall_seconds"} <= properties  # the world's timings

    (feature,) = json.loads((project.path / "reports" / "cucumber.json").read_text("utf-8"))
    assert feature["name"] == "Rapports pour la CI"
    assert feature["language"] == "fr"
    scenarios = {element["name"]: element for element in feature["elements"]}
    assert set(scenarios) == {PASSING, FAILING}
    passing_steps = [(s["name"], s["result"]["status"]) for s in scenarios[PASSING]["steps"]]
    assert (PAY, "passed") in passing_steps
    assert passing_steps[-1] == ("la facture est payée", "passed")
    failing_step = scenarios[FAILING]["steps"][-1]
    assert failing_step["name"] == f"le terminal affiche « {NEVER_SHOWN} »"
    assert failing_step["result"]["status"] == "failed"
    assert NEVER_SHOWN in failing_step["result"]["error_message"]


def world_section(lines: list[str]) -> dict[str, list[str]]:
    """The "tpe-sim world" section of a failure, as {heading: its indented lines}."""
    start = next(i for i, line in enumerate(lines) if " tpe-sim world " in line)
    parts: dict[str, list[str]] = {}
    heading = ""
    for line in lines[start + 1 :]:
        if line.startswith(("---", "===", "___")):
            break
        if line.startswith("  "):
            parts[heading].append(line.strip())
        elif line:
            heading = line
            parts[heading] = []
    return parts


def test_a_failing_scenario_shows_screens_messages_and_backend_requests(
    project: pytest.Pytester,
) -> None:
    result = project.runpytest("-p", "no:cacheprovider", "-k", "naffiche_pas")
    result.assert_outcomes(failed=1, deselected=1)
    lines = result.stdout.lines
    assert sum(" tpe-sim world " in line for line in lines) == 1
    section = world_section(lines)

    assert any(h.startswith("state: waiting_for_card") for h in section)
    screens = section["terminal screen history:"]
    assert any("APPAIRAGE" in screen for screen in screens)
    assert any("12,00 EUR | PRÉSENTEZ OU" in screen for screen in screens)

    commands = section["last commands received by the terminal:"]
    assert any(c.startswith("PaymentRequest(") and "amount=1200" in c for c in commands)
    events = section["last events sent by the terminal:"]
    assert any(e.startswith("DisplayUpdate(") for e in events)
    assert any(e.startswith("CommandAccepted(") for e in events)

    requests = section["backend requests (last 10):"]
    assert "POST /api/terminals -> 201" in requests  # world.associate()
    assert any(
        r.startswith("POST /api/invoices/") and r.endswith("/payments -> 201") for r in requests
    )
