"""The catalogue of the step library: every step phrase, its parameters and an English alias.

Steps are found the way pytest-bdd finds them: each ``@given``/``@when``/``@then`` puts a
pytest fixture named ``pytestbdd_stepdef_<type>_<phrase>`` in its module, whose wrapped
function is a key of :data:`pytest_bdd.steps.step_function_context_registry`; the
:class:`~pytest_bdd.steps.StepFunctionContext` found there holds the step's type, parser,
converters and function. ``tpe-sim steps`` prints the catalogue; ``tpe-sim steps --markdown``
prints ``docs/steps.md``.

Every step needs an English alias in :data:`ALIASES`, keyed by the French phrase as listed
(parameters written ``{name}``); a test fails when a step has none or an alias names no step.
"""

from __future__ import annotations

import importlib
import inspect
import string
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType

from pytest_bdd import parsers
from pytest_bdd.steps import StepFunctionContext, StepNamePrefix, step_function_context_registry

from harness.pytest_plugin import STEP_MODULES

REGENERATE = ".venv/bin/tpe-sim steps --markdown > docs/steps.md"

KEYWORDS: Mapping[str | None, str] = {
    "given": "Étant donné",
    "when": "Quand",
    "then": "Alors",
    None: "Étant donné / Quand / Alors",  # a step registered with @step() matches any keyword
}
_TYPE_ORDER = {"given": 0, "when": 1, "then": 2, None: 3}

# English renderings of the step phrases, keyed by the French phrase as `tpe-sim steps` lists it.
ALIASES: Mapping[str, str] = {
    # harness.steps.incidents
    "le porteur suit le script « {name} »": "the cardholder follows the script « {name} »",
    "le script se déroule comme prévu": "the script goes as it expects",
    "le résultat du script est « {result} »": "the script's result is « {result} »",
    "aucun montant n'est débité": "nothing is charged",
    "le montant débité est de {amount}": "the amount charged is {amount}",
    "le terminal revient à l'accueil": "the terminal is back on its welcome screen",
    "le lien Bluetooth sera coupé au moment « {moment} »": (
        "the Bluetooth link will drop at the moment « {moment} »"
    ),
    "le lien Bluetooth est coupé": "the Bluetooth link drops",
    "le téléphone sort de portée pendant {seconds} secondes": (
        "the phone goes out of range for {seconds} seconds"
    ),
    "la batterie du terminal est à {level} %": "the terminal's battery is at {level} %",
    "la batterie du terminal tombe à {level} %": "the terminal's battery falls to {level} %",
    # harness.steps.paiement
    "le TPE est activé comme moyen de paiement dans le module Facturation": (
        "the TPE is enabled as a payment method in the Billing module"
    ),
    "le TPE est désactivé comme moyen de paiement dans le module Facturation": (
        "the TPE is disabled as a payment method in the Billing module"
    ),
    "le terminal de paiement est associé à l'application mobile": (
        "the payment terminal is paired with the mobile app"
    ),
    "une facture impayée de {amount} pour un client généré": (
        "an unpaid invoice of {amount} for a generated customer"
    ),
    (
        "le technicien ouvre la facture dans le menu Facturation "
        "et clique sur « Déclencher un paiement par carte via le terminal »"
    ): (
        "the technician opens the invoice in the Billing menu and clicks "
        "« pay by card through the terminal »"
    ),
    "le client présente sa carte « {card} » sans contact après {seconds} secondes": (
        "the customer taps the card « {card} » contactless after {seconds} seconds"
    ),
    "le paiement se termine": "the payment ends",
    "le terminal affiche « {text} »": "the terminal shows « {text} »",
    "l'application affiche « {text} »": "the app shows « {text} »",
    "la facture est payée": "the invoice is paid",
    "la facture reste impayée avec une tentative refusée de code « {code} »": (
        "the invoice stays unpaid with one declined attempt, response code « {code} »"
    ),
    "le paiement est enregistré avec la marque « {brand} » et la carte masquée « {masked} »": (
        "the payment is recorded with the brand « {brand} » and the masked card « {masked} »"
    ),
    "une facture de {amount} déjà réglée en partie par chèque pour {paid}": (
        "an invoice of {amount} already partly paid by cheque for {paid}"
    ),
    "le montant envoyé au terminal est de {amount}": "the amount sent to the terminal is {amount}",
    "la facture reste impayée sans aucun paiement encaissé": (
        "the invoice stays unpaid with no payment captured"
    ),
    "l'autorisation de la banque est annulée (paiement « {status} »)": (
        "the bank's authorisation is reversed (payment « {status} »)"
    ),
    "le ticket client indique « {text} »": "the customer receipt reads « {text} »",
    "le ticket commerçant indique « {text} »": "the merchant receipt reads « {text} »",
    "la banque a répondu « {code} » à la première demande": (
        "the bank answered « {code} » to the first request"
    ),
    "le ticket est conservé avec le paiement et indique « {text} »": (
        "the receipt is kept with the payment and reads « {text} »"
    ),
    # harness.steps.porteur
    "le client présente sa carte « {card} » sans contact": (
        "the customer taps the card « {card} » contactless"
    ),
    "le client présente sa carte « {card} » sans contact en choisissant « {brand} »": (
        "the customer taps the card « {card} » contactless, choosing « {brand} »"
    ),
    "le client insère sa carte « {card} »": "the customer inserts the card « {card} »",
    "le client insère sa carte « {card} » en choisissant « {brand} »": (
        "the customer inserts the card « {card} », choosing « {brand} »"
    ),
    "le client saisit le code « {pin} »": "the customer types the PIN « {pin} »",
    "le client retire sa carte": "the customer removes the card",
    "le client attend {seconds} secondes": "the customer waits {seconds} seconds",
    # harness.steps.empreinte
    "un client généré sans moyen de paiement enregistré": (
        "a generated customer with no saved payment method"
    ),
    "une facture impayée de {amount} pour ce client": (
        "an unpaid invoice of {amount} for this customer"
    ),
    (
        "le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un "
        "moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »"
    ): (
        "the technician opens the customer record, Information tab, clicks "
        "« add a payment method » then « capture the card with the card reader »"
    ),
    "la prise d'empreinte se termine": "the card capture ends",
    "le technicien annule depuis l'application": "the technician cancels from the app",
    "le client appuie sur la touche rouge du terminal": (
        "the customer presses the terminal's red key"
    ),
    "le terminal n'affiche aucun montant": "the terminal shows no amount",
    "la carte « {brand} » se terminant par « {last4} » est enregistrée sur la fiche du client": (
        "the « {brand} » card ending in « {last4} » is saved on the customer record"
    ),
    "la fiche du client a {count} moyen de paiement": (
        "the customer record has {count} payment method"
    ),
    "la fiche du client a {count} moyens de paiement": (
        "the customer record has {count} payment methods"
    ),
    "la fiche du client n'a aucun moyen de paiement": ("the customer record has no payment method"),
    "le technicien paie la facture avec la carte enregistrée": (
        "the technician pays the invoice with the saved card"
    ),
    "le terminal a affiché « {text} »": "the terminal showed « {text} » at some point",
    "le client a déjà payé {count} factures de {amount} sans contact avec sa carte « {card} »": (
        "the customer already paid {count} invoices of {amount} contactless with card « {card} »"
    ),
    # harness.steps.association
    "un terminal « {profile} » sorti de sa boîte": "a « {profile} » terminal fresh out of its box",
    "le Bluetooth du téléphone est désactivé": "the phone's Bluetooth is off",
    "la localisation (GPS) du téléphone est désactivée": "the phone's location (GPS) is off",
    "le terminal est éteint": "the terminal is switched off",
    "le terminal de paiement a été associé puis la liaison coupée": (
        "the terminal was associated, then the link dropped"
    ),
    "le technicien ouvre le menu « Terminaux de Paiement (TPE) »": (
        "the technician opens the « Terminaux de Paiement (TPE) » menu"
    ),
    "le technicien associe le terminal": "the technician associates the terminal",
    "le technicien associe à nouveau le terminal": "the technician associates the terminal again",
    "le technicien refuse le code sur le téléphone": "the technician refuses the code on the phone",
    "le commerçant refuse le code sur le terminal": "the merchant refuses the code on the terminal",
    "le technicien accepte désormais le code": "the technician now accepts the code",
    "le terminal redémarre": "the terminal restarts",
    "l'application redémarre": "the app restarts",
    "le technicien oublie le terminal": "the technician forgets the terminal",
    "le terminal est réinitialisé aux réglages d'usine": "the terminal is factory reset",
    "la liaison est coupée pendant la configuration à {percent} %": (
        "the link drops during setup at {percent} %"
    ),
    "la liste montre le terminal « {name} » avec son numéro, son signal et sa batterie": (
        "the list shows terminal « {name} » with its serial, signal and battery"
    ),
    "l'association échoue avec le message « {message} »": (
        "the association fails with the message « {message} »"
    ),
    "la recherche échoue avec le message « {message} »": (
        "the scan fails with the message « {message} »"
    ),
    "le terminal est associé au compte du commerçant": (
        "the terminal is associated with the merchant account"
    ),
    "rien n'est enregistré : ni appairage ni association": (
        "nothing is stored: neither bond nor association"
    ),
    "le téléphone s'est reconnecté sans nouvel appairage": (
        "the phone reconnected without pairing again"
    ),
    "le téléphone n'a plus d'appairage avec le terminal": (
        "the phone no longer has a bond with the terminal"
    ),
    "la configuration a duré au moins {minutes} minutes de temps simulé": (
        "setup took at least {minutes} minutes of loop time"
    ),
    "le terminal a le logiciel « {version} »": "the terminal runs firmware « {version} »",
    "la configuration a repris à {percent} % au moins": "setup resumed at {percent} % or more",
    "le téléphone n°{number} du commerçant associe le terminal": (
        "the merchant's phone no. {number} associates the terminal"
    ),
    "le terminal garde {count} appairage": "the terminal keeps {count} bond",
    "le terminal est rechargé à {level} %": "the terminal is charged to {level} %",
    "le technicien associe le terminal « {name} »": "the technician associates terminal « {name} »",
    "le terminal garde {count} appairages": "the terminal keeps {count} bonds",
}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


@dataclass(frozen=True)
class StepEntry:
    """One registration of a step phrase (a function stacking @when and @then gives two)."""

    type: str | None
    phrase: str
    parameters: tuple[Parameter, ...]
    alias: str | None
    module: str
    function: str
    line: int
    target_fixture: str | None

    @property
    def keyword(self) -> str:
        return KEYWORDS[self.type]

    @property
    def where(self) -> str:
        return f"{self.module}.{self.function}"


def collect_steps(
    modules: Iterable[str | ModuleType] = STEP_MODULES, aliases: Mapping[str, str] = ALIASES
) -> list[StepEntry]:
    """The steps registered by ``modules`` (imported if named), module by module in source order."""
    entries: list[StepEntry] = []
    for module in modules:
        if isinstance(module, str):
            module = importlib.import_module(module)
        found = [_entry(context, module.__name__, aliases) for context in _contexts(module)]
        entries += sorted(found, key=lambda e: (e.line, _TYPE_ORDER[e.type], e.phrase))
    return entries


def _contexts(module: ModuleType) -> Iterable[StepFunctionContext]:
    prefix = StepNamePrefix.step_def.value + "_"
    for name, value in vars(module).items():
        if not name.startswith(prefix):
            continue
        # pytest.fixture() wraps pytest-bdd's step marker with functools.update_wrapper.
        marker = getattr(value, "__wrapped__", None)
        context = step_function_context_registry.get(marker) if callable(marker) else None
        if context is not None:
            yield context


def _entry(context: StepFunctionContext, module: str, aliases: Mapping[str, str]) -> StepEntry:
    phrase, names = _phrase_and_parameters(context.parser)
    func = context.step_func
    annotations = inspect.get_annotations(func)
    parameters = tuple(
        Parameter(name, _type_name(annotations.get(name), context.converters.get(name)))
        for name in names
    )
    code = getattr(func, "__code__", None)
    return StepEntry(
        type=context.type,
        phrase=phrase,
        parameters=parameters,
        alias=aliases.get(phrase),
        module=module,
        function=getattr(func, "__qualname__", repr(func)),
        line=code.co_firstlineno if code is not None else 0,
        target_fixture=context.target_fixture,
    )


def _phrase_and_parameters(parser: parsers.StepParser) -> tuple[str, list[str]]:
    """The phrase with ``{name}`` placeholders (format specs dropped) and the parameter names."""
    if isinstance(parser, parsers.parse):  # cfparse too
        text: list[str] = []
        names: list[str] = []
        for literal, field, _spec, _conversion in string.Formatter().parse(parser.name):
            text.append(literal.replace("{", "{{").replace("}", "}}"))
            if field is None:
                continue
            text.append("{" + field + "}")
            if field and not field.isdigit() and field not in names:
                names.append(field)
        return "".join(text), names
    if isinstance(parser, parsers.re):
        return parser.name, list(parser.regex.groupindex)
    return parser.name, []


def _type_name(annotation: object, converter: object) -> str:
    for source in (annotation, converter):
        if isinstance(source, str):
            return source
        if source is not None:
            return str(getattr(source, "__name__", source))
    return "str"


def alias_problems(steps: Iterable[StepEntry], aliases: Mapping[str, str] = ALIASES) -> list[str]:
    """Steps without an English alias, aliases naming no step, aliases with other parameters."""
    steps = list(steps)
    problems = [
        f"step « {s.phrase} » ({s.where}) has no English alias in "
        f"harness/steps/catalogue.py ALIASES"
        for s in steps
        if s.phrase not in aliases
    ]
    phrases = {s.phrase: s for s in steps}
    problems += [
        f"alias for « {phrase} » names no step of the library (was the step renamed?)"
        for phrase in aliases
        if phrase not in phrases
    ]
    formatter = string.Formatter()
    for phrase, english in aliases.items():
        step = phrases.get(phrase)
        if step is None:
            continue
        wanted = {p.name for p in step.parameters}
        used = {field for _, field, _, _ in formatter.parse(english) if field}
        if used != wanted:
            problems.append(
                f"alias « {english} » uses the parameters {sorted(used)}, "
                f"its step « {phrase} » has {sorted(wanted)}"
            )
    return problems


def _module_title(module: str) -> str:
    loaded = sys.modules.get(module) or importlib.import_module(module)
    doc = inspect.getdoc(loaded) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _by_module(steps: Iterable[StepEntry]) -> dict[str, list[StepEntry]]:
    grouped: dict[str, list[StepEntry]] = {}
    for step in steps:
        grouped.setdefault(step.module, []).append(step)
    return grouped


def render_table(steps: Iterable[StepEntry]) -> str:
    """The catalogue for a terminal: keyword, phrase, then English, parameters and function."""
    steps = list(steps)
    width = max((len(s.keyword) for s in steps), default=0) + 2
    pad = " " * (width + 2)
    lines: list[str] = []
    for module, entries in _by_module(steps).items():
        title = _module_title(module)
        lines.append(f"{module} — {title}" if title else module)
        lines.append("")
        for step in entries:
            lines.append(f"  {step.keyword:<{width}}{step.phrase}")
            lines.append(f"{pad}en: {step.alias or '(no English alias)'}")
            if step.parameters:
                lines.append(f"{pad}paramètres: {', '.join(map(str, step.parameters))}")
            provides = f"  → fixture {step.target_fixture}" if step.target_fixture else ""
            lines.append(f"{pad}fonction: {step.where}{provides}")
        lines.append("")
    count = len({(s.module, s.function) for s in steps})
    lines.append(f"{len(steps)} step phrases, {count} step functions")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def render_markdown(steps: Iterable[StepEntry]) -> str:
    """``docs/steps.md``: one table per step module."""
    steps = list(steps)
    lines = [
        "# Step library",
        "",
        "<!-- Generated by `tpe-sim steps --markdown`: do not edit by hand. Regenerate with",
        f"     {REGENERATE} -->",
        "",
        "Every Gherkin step the `tpe-sim` pytest plugin registers (the modules of",
        "`harness.pytest_plugin.STEP_MODULES`), as the French features write it, with a short",
        "English rendering. `{name}` marks a parameter; a line may also start with « Et » or",
        "« Mais », which repeat the keyword of the line before.",
        "",
    ]
    for module, entries in _by_module(steps).items():
        title = _module_title(module)
        lines += [f"## `{module}`", ""]
        if title:
            lines += [title, ""]
        lines += [
            "| Mot-clé | Phrase | Paramètres | English | Function |",
            "|---|---|---|---|---|",
        ]
        for step in entries:
            parameters = ", ".join(f"`{p.name}` ({p.type})" for p in step.parameters)
            lines.append(
                f"| {_cell(step.keyword)} | {_cell(step.phrase)} | {_cell(parameters)} "
                f"| {_cell(step.alias or '')} | `{_cell(step.function)}` |"
            )
        lines.append("")
    return "\n".join(lines)
