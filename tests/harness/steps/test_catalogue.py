"""The step catalogue: every step of the library, with an English alias; ``docs/steps.md``."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from pytest_bdd.steps import step_function_context_registry

from harness.cli import main
from harness.pytest_plugin import STEP_MODULES
from harness.steps.catalogue import (
    ALIASES,
    REGENERATE,
    Parameter,
    StepEntry,
    alias_problems,
    collect_steps,
    render_markdown,
    render_table,
)

DOCS_STEPS = Path(__file__).resolve().parents[3] / "docs" / "steps.md"


def find(steps: list[StepEntry], function: str) -> list[StepEntry]:
    return [s for s in steps if s.function == function]


def test_every_step_has_an_english_alias_and_every_alias_names_a_step() -> None:
    problems = alias_problems(collect_steps())
    assert not problems, "\n".join(problems)


def test_the_catalogue_holds_every_step_pytest_bdd_registered_from_the_step_modules() -> None:
    modules = [importlib.import_module(name) for name in STEP_MODULES]
    registered = {
        (context.step_func.__module__, context.step_func.__name__, context.type)
        for context in list(step_function_context_registry.values())
        if any(context.step_func.__module__ == module.__name__ for module in modules)
    }
    listed = {(s.module, s.function, s.type) for s in collect_steps()}
    assert registered
    assert listed == registered


def test_a_step_has_its_keyword_phrase_parameters_module_and_function() -> None:
    steps = collect_steps()
    (tap,) = find(steps, "customer_taps")
    assert tap.keyword == "Quand"
    assert tap.phrase == (
        "le client présente sa carte « {card} » sans contact après {seconds} secondes"
    )
    assert tap.parameters == (Parameter("card", "str"), Parameter("seconds", "int"))
    assert tap.alias == ALIASES[tap.phrase]
    assert tap.where == "harness.steps.paiement.customer_taps"

    (invoice,) = find(steps, "unpaid_invoice")
    assert invoice.keyword == "Étant donné"
    assert invoice.target_fixture == "invoice_number"

    ends = find(steps, "payment_ends")  # stacked @when and @then: listed under both keywords
    assert [s.keyword for s in ends] == ["Quand", "Alors"]

    (remove,) = find(steps, "remove_card")
    assert remove.parameters == ()
    assert remove.module == "harness.steps.porteur"


def test_steps_are_listed_module_by_module_in_source_order() -> None:
    steps = collect_steps()
    modules = [s.module for s in steps]
    assert list(dict.fromkeys(modules)) == list(STEP_MODULES)
    for module in STEP_MODULES:
        lines = [s.line for s in steps if s.module == module]
        assert lines == sorted(lines)


SYNTHETIC = '''
"""Steps written every way pytest-bdd allows."""
from pytest_bdd import given, parsers, step, then


@given(parsers.re(r"il y a (?P<count>\\d+) cartes"), converters={"count": int})
def regex(count): ...


@step(parsers.cfparse("le montant {amount:d} est {{littéral}}"))
def any_keyword(amount: int) -> None: ...


@then("la fin")
def plain() -> None: ...
'''


@pytest.fixture
def synthetic() -> ModuleType:
    module = ModuleType("synthetic_steps")
    exec(textwrap.dedent(SYNTHETIC), module.__dict__)
    return module


def test_regex_cfparse_and_any_keyword_steps_are_catalogued(synthetic: ModuleType) -> None:
    steps = collect_steps([synthetic], aliases={})
    regex, any_keyword, plain = steps
    assert regex.keyword == "Étant donné"
    assert regex.phrase == r"il y a (?P<count>\d+) cartes"
    assert regex.parameters == (Parameter("count", "int"),)  # the converter's type
    assert any_keyword.keyword == "Étant donné / Quand / Alors"
    assert any_keyword.phrase == "le montant {amount} est {{littéral}}"
    assert any_keyword.parameters == (Parameter("amount", "int"),)
    assert plain.keyword == "Alors"
    assert plain.parameters == ()
    assert plain.where == "synthetic_steps.plain"


def test_missing_unknown_and_mismatched_aliases_are_reported(synthetic: ModuleType) -> None:
    aliases = {
        "le montant {amount} est {{littéral}}": "the amount {total} is {{literal}}",
        "la fin": "the end",
        "une phrase disparue": "a vanished phrase",
    }
    problems = alias_problems(collect_steps([synthetic], aliases=aliases), aliases)
    assert len(problems) == 3, problems
    assert "step « il y a (?P<count>\\d+) cartes » (synthetic_steps.regex) has no" in problems[0]
    assert "« une phrase disparue » names no step" in problems[1]
    assert "uses the parameters ['total']" in problems[2]


def test_tpe_sim_steps_prints_every_phrase_with_its_alias_and_function(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["steps"]) == 0
    out = capsys.readouterr().out
    assert out == render_table(collect_steps())
    for step in collect_steps():
        assert f"{step.keyword:<13}{step.phrase}\n" in out
        assert f"en: {step.alias}\n" in out
        assert step.where in out
    assert "paramètres: card (str), seconds (int)" in out


def test_tpe_sim_steps_markdown_prints_the_step_reference(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["steps", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == render_markdown(collect_steps())
    assert out.startswith("# Step library\n")
    assert (
        "| Quand | le client attend {seconds} secondes | `seconds` (int) "
        "| the customer waits {seconds} seconds | `wait` |"
    ) in out.splitlines()


def test_docs_steps_md_is_up_to_date() -> None:
    fresh = render_markdown(collect_steps())
    current = DOCS_STEPS.read_text(encoding="utf-8") if DOCS_STEPS.exists() else ""
    assert current == fresh, f"docs/steps.md is stale; regenerate it with:\n    {REGENERATE}"
