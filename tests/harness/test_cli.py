"""``tpe-sim demo``: the main job outside pytest."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.fixtures import fixtures_dir
from harness.rig import World


def test_demo_pays_an_invoice_and_prints_stages_and_receipt(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    stages = [
        "Terminal trouvé : TPE-SIM0001",
        "appairé (code ",
        "transmis au terminal",
        "Le client approche sa carte du terminal",
        "Demande d'autorisation envoyée à la banque",
        "Terminal : ",
        "PAIEMENT ACCEPTÉ",
        "payée",
        "ticket client",
    ]
    positions = [out.index(stage) for stage in stages]
    assert positions[:5] == sorted(positions[:5]), "stages printed out of order"
    assert "4242424242424242" not in out  # the receipt shows the masked PAN only
    assert "************4242" in out
    assert "facture F-" in out
    assert ": payée" in out


def test_demo_with_a_declined_card_fails_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--card", "visa_refusee"]) == 1
    out = capsys.readouterr().out
    assert "Paiement refusé par la banque" in out
    assert ": impayée" in out


def test_demo_rejects_an_unknown_card(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--card", "carte_inconnue"]) == 2
    assert "unknown card 'carte_inconnue'" in capsys.readouterr().err


def test_demo_reports_an_unknown_invoice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--invoice", "F-1999-9999"]) == 1
    assert "Facture F-1999-9999 introuvable" in capsys.readouterr().err


def test_demo_refuses_a_wait_that_is_not_a_sane_number_of_seconds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for bad in ("inf", "nan", "-1", "1e308"):
        with pytest.raises(SystemExit) as exited:
            main(["demo", "--wait", bad])
        assert exited.value.code == 2
        assert "not a number of seconds" in capsys.readouterr().err


def test_demo_tap_after_the_card_timeout_is_a_clear_failure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--wait", "61"]) == 1
    captured = capsys.readouterr()
    assert "Délai de présentation de la carte dépassé" in captured.out
    assert "carte présentée trop tard" in captured.err
    assert "Traceback" not in captured.err


def test_demo_reports_a_broken_merchant_file_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fixtures = tmp_path / "fixtures"
    shutil.copytree(fixtures_dir(), fixtures)
    merchant = fixtures / "merchant.yaml"
    merchant.write_text(
        merchant.read_text(encoding="utf-8").replace("customers: 5", "customers: x")
    )
    monkeypatch.setenv("TPE_SIM_FIXTURES", str(fixtures))
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "merchant.yaml: field 'customers' must be an int" in err


def test_demo_above_the_contactless_ceiling_inserts_the_card_and_types_the_pin(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with World() as world:  # the seeded data, as the demo will see it
        number = next(
            i.number
            for i in world.store.invoices.values()
            if i.status == "unpaid" and i.balance_due_cents > 5000
        )
    assert main(["demo", "--invoice", number]) == 0
    out = capsys.readouterr().out
    assert "carte insérée et code" in out
    assert "Le client saisit son code" in out
    assert "SAISISSEZ VOTRE CODE" in out
    assert "PUCE" in out
    assert "CODE CONFIDENTIEL VERIFIE" in out
    assert f"facture {number} : payée" in out


def test_verbose_demo_logs_protocol_messages_and_backend_requests_but_no_pan(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.setLevel(logging.DEBUG)  # main() itself raises the product loggers
    try:
        assert main(["-v", "demo"]) == 0
    finally:
        for name in ("harness", "simulator"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "phone → terminal: PaymentRequest(" in logged
    assert "terminal → phone: AuthorisationRequest(" in logged
    assert "backend: POST /api/payments/" in logged
    assert "4242424242424242" not in logged
    assert not [r for r in caplog.records if r.name.startswith("bumble")]


SCRIPT = "flow:\n  payment: {at_most: 50}\nsteps:\n  - tap: visa\nexpect:\n  result: %s\n"


def test_scenario_run_exit_codes_and_one_line_per_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "bon.yaml"
    good.write_text(SCRIPT % "approved", encoding="utf-8")
    assert main(["scenario", "run", str(good)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("✓ bon — approved, invoice paid")
    assert "s loop time)" in out

    wrong = tmp_path / "faux.yaml"
    wrong.write_text(SCRIPT % "declined", encoding="utf-8")
    assert main(["scenario", "run", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith("✓ bon — ")
    assert lines[1].startswith("✗ faux — approved")
    assert "    expect.result (line 6): expected declined, got approved" in lines
    assert lines[-1].startswith("1 passed, 1 failed, 0 invalid")
    assert "[2/2] faux" in captured.err  # progress when several run


def test_scenario_run_refuses_an_invalid_script_naming_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "casse.yaml"
    bad.write_text((SCRIPT % "approved").replace("tap: visa", "tap: vsia"), encoding="utf-8")
    assert main(["scenario", "run", str(bad)]) == 2
    assert f"{bad}:4: steps[0].tap: unknown card 'vsia'" in capsys.readouterr().err
    assert main(["scenario", "run", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read the script" in capsys.readouterr().err
