"""The runner plays a script on a world and judges it: a passing script passes, a wrong
expectation fails with what differed, a fault at a named moment strikes there."""

from __future__ import annotations

from pathlib import Path

from harness.scenarios.model import loads
from harness.scenarios.runner import run_scenario

PAYMENT = """\
flow:
  payment: {at_most: 50}
steps:
  - tap: visa
expect:
  result: %s
  invoice: %s
"""


def test_a_script_whose_expectation_holds_passes() -> None:
    verdict = run_scenario(loads(PAYMENT % ("approved", "paid"), "ok.yaml"))
    assert verdict.status == "passed", verdict.explain()
    assert verdict.result == "approved"
    assert verdict.charged_cents > 0
    assert verdict.outcome.startswith("approved, invoice paid")


def test_a_wrong_expectation_fails_saying_what_differed() -> None:
    verdict = run_scenario(loads(PAYMENT % ("declined", "unpaid"), "wrong.yaml"))
    assert verdict.status == "failed"
    assert verdict.differences == [
        "expect.result (line 6): expected declined, got approved",
        "expect.invoice (line 7): expected unpaid, got paid",
    ]


def test_a_link_cut_at_result_ready_strikes_there_and_the_payment_converges() -> None:
    script = """\
flow:
  payment: {at_most: 50}
faults:
  - at: result_ready
    drop_link:
steps:
  - tap: visa
"""
    verdict = run_scenario(loads(script, "cut.yaml"))
    notes = "\n".join(verdict.notes)
    assert "fault (line 4): link dropped" in notes
    # the result never reached the phone on that link: the app had to reconnect for it
    assert notes.index("fault (line 4)") < notes.index("the flow ended: approved")
    assert verdict.status == "passed", verdict.explain()  # invariants: charged exactly once
    assert verdict.charged_cents > 0


def test_a_fault_whose_moment_never_comes_fails_the_script() -> None:
    script = """\
flow:
  payment: {at_most: 50}
faults:
  - at: pin_requested
    drop_link:
steps:
  - tap: visa
expect:
  result: approved
"""
    verdict = run_scenario(loads(script, "never.yaml"))
    assert verdict.status == "failed"
    assert verdict.differences == [
        "faults (line 4): moment 'pin_requested' (occurrence 1) never came: "
        "the fault did not strike"
    ]


def test_a_step_the_terminal_refuses_fails_with_its_line() -> None:
    script = "flow:\n  payment: {at_most: 50}\nsteps:\n  - wait: 61\n  - pin: '1234'\n"
    verdict = run_scenario(loads(script, "late.yaml"))
    assert verdict.status == "failed"
    assert verdict.differences[0].startswith("steps[1] (line 5): the terminal refused it")


def test_a_missing_invoice_is_an_error_not_a_failure() -> None:
    verdict = run_scenario(loads("flow:\n  payment: {invoice: F-1999-0001}\n", "x.yaml"))
    assert verdict.status == "error"
    assert "x.yaml:2: flow.payment.invoice: no invoice 'F-1999-0001'" in verdict.error


def test_out_of_range_keeps_the_phone_away_then_lets_it_back(tmp_path: Path) -> None:
    from harness.rig import World, WorldConfig

    with World(WorldConfig(preconfigured=True)) as world:
        world.associate()
        world.out_of_range(30)
        assert world.terminal.connected_phones == 0
        world.wait(10)
        assert world.phone.device.host is not None
        controller = getattr(world.phone.device.host.controller, "sink", None)  # behind a pipe
        assert controller is not None
        assert controller not in world.link.controllers  # hears nothing
        world.wait(25)
        assert controller in world.link.controllers
        world.associate()  # reconnects once back in range
        assert world.terminal.connected_phones == 1
