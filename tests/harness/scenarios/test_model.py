"""Scenario scripts are validated on load: every error names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.fixtures import fixtures_dir
from harness.scenarios.model import (
    BACKEND_ROUTES,
    MOMENTS,
    BackendFault,
    CaptureFlow,
    EnterPin,
    Insert,
    Known,
    MomentTracker,
    OutOfRange,
    PaymentFlow,
    PressKey,
    RemoveCard,
    ScenarioError,
    Tap,
    Wait,
    load,
    script_paths,
)
from simulator.protocol.messages import (
    CommandAccepted,
    DisplayUpdate,
    PaymentRequest,
    PaymentResponse,
)

KNOWN = Known.from_fixtures(fixtures_dir())

GOOD = """\
name: perte_pendant_le_code
description: le lien tombe pendant la saisie du code
world:
  terminal: standard
  seed: 7
flow:
  payment:
    amount: "80,00 €"
steps:
  - insert: visa
  - wait: 2.5
  - pin: "1234"
  - tap: {card: cb_visa, brand: VISA}
  - remove_card
  - out_of_range: 30
  - backend: {fail: authorise_payment, status: 503, times: 2}
faults:
  - at: pin_requested
    drop_link:
  - at: authorisation_received
    occurrence: 2
    out_of_range: 45
expect:
  result: none
  invoice: unpaid
  charged: 0
  app_says: [Connexion Bluetooth perdue]
  terminal_idle: true
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ScenarioError:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load(path, KNOWN)
    assert str(caught.value).startswith(f"{path}:"), str(caught.value)
    return caught.value


def test_a_good_script_loads_into_typed_values(tmp_path: Path) -> None:
    scenario = load(write(tmp_path, GOOD), KNOWN)
    assert scenario.name == "perte_pendant_le_code"
    assert scenario.world.seed == 7
    assert scenario.flow == PaymentFlow(amount_cents=8000, line=8)
    assert scenario.steps[0] == Insert("visa", None, 10)
    assert scenario.steps[1] == Wait(2.5, 11)
    assert scenario.steps[2] == EnterPin("1234", 12)
    assert scenario.steps[3] == Tap("cb_visa", "VISA", 13)
    assert scenario.steps[4] == RemoveCard(14)
    assert scenario.steps[5] == OutOfRange(30.0, 15)
    assert scenario.steps[6] == BackendFault("fail", "authorise_payment", 503, times=2, line=16)
    assert [(f.moment, f.occurrence, f.line) for f in scenario.faults] == [
        ("pin_requested", 1, 18),
        ("authorisation_received", 2, 20),
    ]
    assert scenario.expect.charged_cents == 0
    assert scenario.expect.app_says == ("Connexion Bluetooth perdue",)
    assert scenario.expect.lines["terminal_idle"] == 28


def test_a_capture_flow_for_a_new_customer(tmp_path: Path) -> None:
    scenario = load(write(tmp_path, "flow: {capture: }\nexpect: {card_saved: true}\n"), KNOWN)
    assert scenario.flow == CaptureFlow(None, line=1)
    assert scenario.name == "x"  # the file's stem when the script has no name


@pytest.mark.parametrize(
    ("change", "line", "field", "problem"),
    [
        ("  - tap: {card: cb_visa, brand: VISA}", 13, "steps[3].tap.card", None),
        ("  - tap: vsia", 13, "steps[3].tap", "unknown card 'vsia' (cards: amex, "),
        ("  - tap: {card: visa, brand: CB}", 13, "steps[3].tap.brand", "no CB application"),
        ("  - wait: -3", 13, "steps[3].wait", "-3 seconds: must be 0 or more"),
        ("  - pin: 1234", 13, "steps[3].pin", 'write the PIN in quotes (pin: "1234")'),
        ("  - pin: '12'", 13, "steps[3].pin", "4 to 12 digits"),
        ("  - pin: '１２３４'", 13, "steps[3].pin", "4 to 12 digits"),  # full-width digits
        ("  - key: blue", 13, "steps[3].key", "unknown key 'blue' (keys: red, green)"),
        ("  - dance", 13, "steps[3]", "unknown step 'dance'"),
        ("  - {tap: visa, insert: visa}", 13, "steps[3]", "one action per step"),
        ("  - taps: visa", 13, "steps[3].taps", "unknown key 'taps'"),
        ("  - battery: 140", 13, "steps[3].battery", "140 is out of range (0 to 100)"),
        ("  - backend: {fail: paiement}", 13, "steps[3].backend.fail", "unknown route 'paiement'"),
        ("  - backend: {delay: authorise_payment}", 13, "steps[3].backend", "needs 'seconds'"),
    ],
)
def test_each_bad_step_names_its_line_and_field(
    tmp_path: Path, change: str, line: int, field: str, problem: str | None
) -> None:
    lines = GOOD.splitlines()
    lines[12] = change  # the 4th step, on line 13
    text = "\n".join(lines) + "\n"
    if problem is None:  # the unchanged line loads
        load(write(tmp_path, text), KNOWN)
        return
    error = error_of(tmp_path, text)
    assert error.line == line
    assert error.field == field
    assert problem in error.problem, error.problem


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "problem"),
    [
        (
            "  terminal: standard",
            "  terminal: geant",
            4,
            "world.terminal",
            "unknown terminal profile 'geant'",
        ),
        ("  seed: 7", "  seed: sept", 5, "world.seed", "expected a whole number, not str 'sept'"),
        (
            "  - at: pin_requested",
            "  - at: pin_demande",
            18,
            "faults[0].at",
            "unknown moment 'pin_demande'",
        ),
        ("    occurrence: 2", "    occurrence: 0", 21, "faults[1].occurrence", "out of range"),
        ("    drop_link:", "    drop_link: 3", 19, "faults[0].drop_link", "takes no value"),
        ("  result: none", "  result: paid", 24, "expect.result", "unknown result 'paid'"),
        ("  charged: 0", "  charged: douze", 26, "expect.charged", "not an amount in euros"),
        ("  invoice: unpaid", "  facture: unpaid", 25, "expect.facture", "unknown key 'facture'"),
        ('    amount: "80,00 €"', "    amount: 0", 8, "flow.payment.amount", "nothing to pay"),
        ('    amount: "80,00 €"', "    amount: 12.345", 8, "flow.payment.amount", "two decimals"),
        (
            "  terminal_idle: true",
            "  terminal_idle: oui",
            28,
            "expect.terminal_idle",
            "true or false",
        ),
        (
            "  terminal_idle: true",
            "  result: approved",
            28,
            "expect.result",
            "given twice (first on line 24)",
        ),
    ],
)
def test_each_bad_value_names_its_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str, problem: str
) -> None:
    assert old in GOOD
    error = error_of(tmp_path, GOOD.replace(old, new, 1))
    assert (error.line, error.field) == (line, field), str(error)
    assert problem in error.problem, error.problem


def test_broken_yaml_gets_the_parser_line(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD.replace("  - remove_card", "  - tap: [visa", 1))
    assert error.line in (14, 15)
    assert "not valid YAML" in error.problem


def test_a_script_without_flow_or_empty(tmp_path: Path) -> None:
    assert "missing 'flow'" in str(error_of(tmp_path, "name: rien\n"))
    assert "empty" in str(error_of(tmp_path, "# nothing\n"))
    assert "expected a mapping" in str(error_of(tmp_path, "- tap: visa\n"))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the script"):
        load(tmp_path / "absent.yaml", KNOWN)


def test_expectations_must_fit_the_flow(tmp_path: Path) -> None:
    error = error_of(tmp_path, "flow: {capture: }\nexpect:\n  invoice: paid\n")
    assert (error.line, error.field) == (3, "expect.invoice")
    error = error_of(tmp_path, "flow: {payment: {at_most: 50}}\nexpect:\n  card_saved: true\n")
    assert (error.line, error.field) == (3, "expect.card_saved")


def test_the_moment_tracker_names_card_requested_only_for_a_flow_request() -> None:
    tracker = MomentTracker()
    request = PaymentRequest(id=4, transaction_id="T1", amount=100, currency="EUR", reference="F")
    assert tracker.moments("received", request) == ["request_received"]
    assert tracker.moments("sent", CommandAccepted(in_reply_to=4)) == ["card_requested"]
    assert tracker.moments("sent", CommandAccepted(in_reply_to=5)) == []  # e.g. an abort
    assert tracker.moments("sent", DisplayUpdate(lines=["SAISISSEZ VOTRE CODE"])) == [
        "pin_requested"
    ]
    assert tracker.moments("sent", DisplayUpdate(lines=["BONJOUR"])) == []
    result = PaymentResponse(transaction_id="T1", result="approved", amount=100, currency="EUR")
    assert tracker.moments("sending", result) == ["result_ready"]
    assert tracker.moments("sent", result) == ["result_sent"]
    assert all(m.description for m in MOMENTS.values())


def test_folders_give_their_scripts_but_not_pending_ones(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("x")
    (tmp_path / "a.yml").write_text("x")
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "pending").mkdir()
    (tmp_path / "pending" / "c.yaml").write_text("x")
    assert [p.name for p in script_paths([tmp_path])] == ["a.yml", "b.yaml"]


def test_the_backend_routes_a_script_may_name_are_the_servers() -> None:
    from harness.backend import BackendServer
    from harness.backend.seed import load_processor, seed_store

    server = BackendServer(seed_store(fixtures_dir()), load_processor(fixtures_dir()))
    assert set(BACKEND_ROUTES) == set(server.faults.route_names)


@pytest.mark.parametrize("amount", ["99999999999999999999999", "1000000", "'1 000 000,00 €'"])
def test_an_amount_no_terminal_takes_is_refused_on_load(tmp_path: Path, amount: str) -> None:
    error = error_of(tmp_path, f"flow:\n  payment: {{amount: {amount}}}\n")
    assert ":2: flow.payment.amount: " in str(error)
    assert "more than a terminal takes (999 999,99 €)" in str(error)


def test_a_key_can_be_pressed_at_a_moment(tmp_path: Path) -> None:
    text = (
        "flow: {payment: {at_most: 50}}\nfaults:\n  - at: authorisation_request_sent\n"
        "    key: red\nsteps:\n  - tap: visa\n"
    )
    scenario = load(write(tmp_path, text), KNOWN)
    [fault] = scenario.faults
    assert (fault.moment, fault.action) == ("authorisation_request_sent", PressKey("red", 4))
    error = error_of(tmp_path, text.replace("key: red", "key: blue"))
    assert (error.line, error.field) == (4, "faults[0].key")


@pytest.mark.parametrize(
    ("text", "line", "field", "problem"),
    [
        ("flow:\n  payment: {<<: {amount: 10}}\n", 2, "", "not valid YAML"),
        (
            "flow: {payment: {amount: 10}}\nfaults:\n  - at: start\n    key: red\n",
            4,
            "faults[0].key",
            "no payment or capture runs yet",
        ),
        (
            "flow: {payment: {amount: 10}}\nfaults:\n  - at: start\n    cancel: true\n",
            4,
            "faults[0].cancel",
            "no payment or capture runs yet",
        ),
    ],
)
def test_what_cannot_be_played_is_refused_on_load(
    tmp_path: Path, text: str, line: int, field: str, problem: str
) -> None:
    error = error_of(tmp_path, text)
    assert (error.line, error.field) == (line, field)
    assert problem in str(error)
