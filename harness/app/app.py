"""The invoicing app's mobile client, as its user lives it (help article flows).

Everything shown to the user is French and goes through :meth:`InvoicingApp.show`, so tests and
the demo read exactly what a technician would read on the phone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from harness.app.backend_client import BackendClient, BackendError, BackendUnreachable
from harness.app.phone import FoundTerminal, PhoneError, TerminalLink, VirtualPhone
from simulator.protocol.messages import (
    AbortRequest,
    AuthorisationRequest,
    AuthorisationResponse,
    CardAcquisitionRequest,
    CardAcquisitionResponse,
    CommandAccepted,
    DiagnosisRequest,
    DiagnosisResponse,
    DisplayUpdate,
    Error,
    Event,
    PaymentRequest,
    PaymentResponse,
    SetupProgress,
    SetupRequest,
    SetupResponse,
    TransactionStatusRequest,
    TransactionStatusResponse,
)
from simulator.terminal import format_amount

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
F = TypeVar("F", PaymentResponse, CardAcquisitionResponse)

MENU_TERMINALS = "Terminaux de Paiement (TPE)"
MENU_BILLING = "Facturation"
BUTTON_PAY_BY_CARD = "Déclencher un paiement par carte via le terminal"
#: Customer record › Information tab › "Moyens de paiement" section.
CUSTOMER_PAYMENT_METHODS = "Fiche client › Information › Moyens de paiement"
BUTTON_ADD_PAYMENT_METHOD = "Ajouter un moyen de paiement"
BUTTON_CARD_CAPTURE = "Prise d'empreinte via lecteur de cartes bancaires"
BUTTON_PAY_WITH_SAVED_CARD = "Payer avec la carte enregistrée"

#: (stage, French text) for every step of a flow: the demo prints them as they happen.
StageListener = Callable[[str, str], None]


@dataclass(frozen=True)
class AppTimeouts:
    scan: float = 30.0  # no terminal heard within this: "aucun terminal trouvé"
    scan_window: float = 3.0  # how long the terminal list collects answers
    connect: float = 10.0
    setup_step: float = 120.0  # longest wait between two progress reports of first setup
    terminal_reply: float = 10.0  # a command's immediate answer
    payment: float = 180.0  # card presentation + PIN + authorisation, as the terminal allows
    #: after a link loss in the middle of a transaction, how long the app keeps trying to
    #: reconnect and ask the terminal's journal how the transaction ended
    reconnect: float = 120.0
    reconnect_pause: float = 2.0  # between two reconnection attempts


@dataclass
class PaymentOutcome:
    invoice_number: str
    result: str  # approved | declined | aborted
    message: str
    response_code: str | None = None
    authorisation_code: str | None = None
    brand: str | None = None
    masked_pan: str | None = None
    receipt: list[str] = field(default_factory=list)
    merchant_receipt: list[str] = field(default_factory=list)
    invoice: dict[str, Any] = field(default_factory=dict)


@dataclass
class CaptureOutcome:
    customer_id: str
    result: str  # approved | declined | aborted
    message: str
    response_code: str | None = None
    saved: bool = False
    duplicate: bool = False
    payment_method: dict[str, Any] | None = None
    payment_methods: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class AssociatedTerminal:
    name: str
    serial: str
    model: str
    firmware: str
    battery: int
    address: str


class InvoicingApp:
    def __init__(
        self,
        phone: VirtualPhone,
        backend: BackendClient,
        timeouts: AppTimeouts | None = None,
        state_file: Path | None = None,
    ) -> None:
        """``state_file``: where the app remembers its associated terminal across restarts."""
        self.phone = phone
        self.backend = backend
        self.timeouts = timeouts or AppTimeouts()
        self.state_file = state_file
        self.screen: list[str] = []
        self.terminal: AssociatedTerminal | None = None
        self.link: TerminalLink | None = None
        self.listeners: list[StageListener] = []
        self._paying = False
        self._current: tuple[TerminalLink, str] | None = None  # the transaction in progress
        #: the bank's answer to each card read (transaction id, ARQC) of the flow in progress:
        #: when the terminal sends a request again after a link loss, it gets the same answer,
        #: and the bank is not asked twice
        self._answers: dict[tuple[str, str], AuthorisationResponse] = {}
        #: transactions the backend has not recorded: the terminal's word is known (the
        #: backend was unreachable) or only its journal can tell (it was out of reach); kept in
        #: the state file and recorded before the next flow
        self.unsettled: list[dict[str, Any]] = []
        self._load_state()

    def show(self, stage: str, text: str) -> None:
        """Display ``text`` to the user and tell the listeners which ``stage`` it is."""
        self.screen.append(text)
        log.info("app[%s] %s", stage, text)
        for listener in self.listeners:
            listener(stage, text)

    # ------------------------------------------------------------------ association
    async def list_terminals(self) -> list[FoundTerminal]:
        """Menu "Terminaux de Paiement (TPE)": the terminals in range, strongest first."""
        self.show("menu", f"Menu › {MENU_TERMINALS}")
        if not self.phone.bluetooth_on:
            raise self._fail(PhoneError("bluetooth_off", "Activez le Bluetooth du téléphone."))
        if not self.phone.location_on:
            raise self._fail(
                PhoneError(
                    "location_off",
                    "Activez la localisation (GPS) du téléphone : Android l'exige pour "
                    "rechercher les terminaux Bluetooth.",
                )
            )
        self.show("scan", "Recherche des terminaux à proximité…")
        connected: list[FoundTerminal] = []
        if self.link is not None and self.link.is_connected and self.terminal is not None:
            # a connected terminal does not advertise: list it from the open link
            self.show("found", f"Terminal connecté : {self.terminal.name}")
            connected.append(
                FoundTerminal.connected(
                    self.terminal.address, self.terminal.name, self.terminal.battery
                )
            )
        try:
            terminals = connected + await self.phone.scan_all(self.timeouts.scan_window)
            if not terminals:  # keep listening until the scan timeout for a late one
                late = self.timeouts.scan - self.timeouts.scan_window
                terminals = [await self.phone.scan(max(late, 0.0))]
        except PhoneError as error:
            raise self._fail(error) from None
        for found in terminals:
            battery = f"batterie {found.battery} %" if found.battery is not None else ""
            self.show(
                "found",
                f"Terminal trouvé : {found.name} — n° {found.serial} — "
                f"signal {found.rssi} dBm — {battery}".rstrip(" —"),
            )
        return terminals

    async def associate_terminal(self, name: str | None = None) -> AssociatedTerminal:
        """Find the terminal (``name``, the one already associated, or the first in range),
        pair with it — or re-encrypt if already bonded —, register it, and run its first
        setup when it has never been configured."""
        current = self.terminal
        if self.link is not None and self.link.is_connected and current is not None:
            if name is None or name == current.name:  # nothing to do: say so
                self.show("associated", f"Terminal {current.serial} déjà associé et connecté")
                return current
            await self.link.disconnect()  # another terminal was picked: let this one go
            self.link = None
        terminals = await self.list_terminals()
        wanted = name or (self.terminal.name if self.terminal else None)
        chosen = next((t for t in terminals if t.name == wanted), None) if wanted else None
        if wanted and chosen is None:
            raise self._fail(
                PhoneError("terminal_not_found", f"Le terminal {wanted} n'est pas à portée.")
            )
        found = chosen or terminals[0]
        bonded = await self.phone.is_bonded(found)

        async def check(link: TerminalLink) -> None:
            # Before any pairing: a terminal the backend refuses leaves no bond behind.
            serial, _model, _firmware = await link.read_identity()
            try:
                await self.backend.check_terminal(serial)
            except BackendError as error:
                raise PhoneError(error.code, error.message) from None

        try:
            link = await self.phone.connect(found, self.timeouts.connect, before_pairing=check)
        except PhoneError as error:
            raise self._fail(error) from None
        self.link = link
        if bonded:
            self.show("paired", f"Terminal {found.name} reconnecté (appairage conservé)")
        else:
            code = self.phone.last_pairing_code
            how = f"code {code} confirmé" if code else "sans code : liaison non sécurisée"
            self.show("paired", f"Terminal {found.name} appairé ({how})")
        try:
            await link.send(DiagnosisRequest())
            info = await self._reply_to(link, expect=DiagnosisResponse)
            if not info.configured:
                info = await self._set_up_terminal(link, info)
            try:  # last: the backend lists only a terminal that is ready, firmware up to date
                await self.backend.register_terminal(info.serial, info.model, info.firmware)
            except BackendError as error:
                raise self._fail(PhoneError(error.code, error.message)) from None
        except PhoneError as error:
            # A setup cut by a link loss resumes on reconnection: that bond is worth keeping.
            resumable = error.code == "setup_interrupted"
            await self._undo_association(link, found, keep_bond=bonded or resumable)
            raise
        self.terminal = AssociatedTerminal(
            found.name, info.serial, info.model, info.firmware, info.battery, str(found.address)
        )
        self._save_state()
        self.show("associated", f"Terminal {info.serial} associé à votre compte")
        return self.terminal

    async def _undo_association(
        self, link: TerminalLink, found: FoundTerminal, *, keep_bond: bool
    ) -> None:
        """An association that failed after pairing leaves nothing half-written on the phone:
        the link is closed (so the terminal advertises again) and a bond made by this attempt
        is dropped; the next attempt pairs afresh (the terminal replaces its own copy)."""
        await link.disconnect()
        self.link = None
        if not keep_bond:
            await self.phone.forget(str(found.address))

    async def _ensure_terminal(self) -> None:
        """A connected, associated terminal: reconnect (bonded: no pairing) or associate."""
        if self.link is not None and not self.link.is_connected:
            self.link = None  # the terminal restarted or went out of range
        if self.link is not None and self.terminal is not None:
            return
        if self.terminal is None:
            self.show("association", "Aucun terminal associé : association en cours…")
        else:
            self.show("reconnection", f"Reconnexion au terminal {self.terminal.name}…")
        await self.associate_terminal()

    async def _set_up_terminal(
        self, link: TerminalLink, info: DiagnosisResponse
    ) -> DiagnosisResponse:
        """First association: the terminal downloads its configuration (and a firmware
        update if one is pending). Minutes of loop time; progress shown as it comes."""
        self.show(
            "setup", "Première configuration du terminal : cela peut prendre plusieurs minutes"
        )
        try:
            merchant = await self.backend.merchant()
        except BackendError as error:
            raise self._fail(PhoneError(error.code, error.message)) from None
        await link.send(
            SetupRequest(
                merchant_id=str(merchant["id"]),
                merchant_name=str(merchant["name"]),
                city=str(merchant["city"]),
                contract_number=str(merchant["contract_number"]),
            )
        )
        await self._reply_to(link, expect=CommandAccepted)
        while True:
            try:
                event = await link.next_event(self.timeouts.setup_step)
            except PhoneError as error:
                if error.code == "link_lost":
                    self.link = None
                    error = PhoneError(
                        "setup_interrupted",
                        "Configuration du terminal interrompue : rapprochez le téléphone et "
                        "relancez l'association, elle reprendra où elle s'est arrêtée.",
                    )
                raise self._fail(error) from None
            match event:
                case SetupProgress():
                    self.show("setup_progress", event.message)
                case SetupResponse():
                    self.show("setup_done", f"{event.message} (logiciel {event.firmware})")
                    await link.send(DiagnosisRequest())
                    return await self._reply_to(link, expect=DiagnosisResponse)
                case DisplayUpdate():
                    pass
                case _:
                    log.debug("ignored event during setup: %r", event)

    async def forget_terminal(self) -> None:
        """ "Oublier ce terminal": drop the bond and the app's association with it."""
        terminal = self.terminal
        if terminal is None:
            raise self._fail(PhoneError("no_terminal", "Aucun terminal associé."))
        if self.link is not None:
            await self.link.disconnect()
            self.link = None
        await self.phone.forget(terminal.address)
        self.terminal = None
        self._save_state()
        self.show("forgotten", f"Terminal {terminal.name} oublié")

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "terminal": dataclasses.asdict(self.terminal) if self.terminal else None,
            "unsettled": self.unsettled,
        }
        self.state_file.write_text(json.dumps(data), encoding="utf-8")

    def _load_state(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            if data.get("terminal"):
                self.terminal = AssociatedTerminal(**data["terminal"])
            self.unsettled = [
                dict(item) for item in data.get("unsettled", []) if isinstance(item, dict)
            ]
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable app state %s: %s", self.state_file, exc)

    # ------------------------------------------------------------------ payment
    async def pay_invoice(self, number: str) -> PaymentOutcome:
        """Facturation › invoice › "Déclencher un paiement par carte via le terminal"."""
        if self._paying:
            raise self._fail(
                PhoneError("payment_in_progress", "Un paiement est déjà en cours sur le terminal.")
            )
        self._paying = True
        try:
            return await self._pay_invoice(number)
        finally:
            self._paying = False
            self._current = None
            self._answers.clear()

    async def _pay_invoice(self, number: str) -> PaymentOutcome:
        self.show("menu", f"Menu › {MENU_BILLING} › facture {number}")
        try:
            invoice = await self.backend.invoice(number)
            settings = await self.backend.billing_settings()
        except BackendError as error:
            raise self._fail(PhoneError(error.code, error.message)) from None
        if not settings.get("tpe_enabled"):
            raise self._fail(
                PhoneError(
                    "tpe_disabled",
                    "Le paiement par TPE n'est pas activé dans le module Facturation.",
                )
            )
        if invoice.get("status") == "paid":
            raise self._fail(
                PhoneError("invoice_already_paid", f"La facture {number} est déjà réglée.")
            )
        await self._settle_quietly(terminal_needed=False)
        await self._ensure_terminal()
        await self._settle_quietly()
        if self._unsettled_for(number):
            raise self._fail(
                PhoneError(
                    "previous_payment_unsettled",
                    f"Un paiement précédent de la facture {number} n'est pas encore enregistré "
                    "(serveur ou terminal injoignable) : impossible de la faire payer à nouveau "
                    "tant qu'il n'est pas réglé.",
                )
            )
        assert self.link is not None
        assert self.terminal is not None
        link = self.link
        self.show("button", BUTTON_PAY_BY_CARD)
        try:
            payment = await self.backend.create_payment(number, self.terminal.serial)
        except BackendError as error:
            raise self._fail(PhoneError(error.code, error.message)) from None
        transaction_id = str(payment["transaction_id"])
        amount = int(payment["amount_cents"])
        self.show(
            "amount_sent",
            f"Montant de {format_amount(amount, '€')} transmis au terminal "
            f"(facture {invoice['number']})",
        )
        payment_id = str(payment["payment_id"])
        try:
            final = await self._run_on_terminal(
                link,
                PaymentRequest(
                    transaction_id=transaction_id,
                    amount=amount,
                    currency=str(payment["currency"]),
                    reference=number,
                ),
                lambda body: self.backend.authorise(payment_id, body),
                PaymentResponse,
            )
        except PhoneError as error:
            await self._payment_interrupted(payment_id, transaction_id, number, error)
            raise
        try:
            await self.backend.report_result(
                str(payment["payment_id"]),
                transaction_id,
                final.result,
                receipts={"customer": final.receipt, "merchant": final.merchant_receipt}
                if final.receipt
                else None,
                response_code=final.response_code if final.result == "declined" else None,
            )
        except BackendError as error:
            held = final.result == "approved" or self._approved_by_the_bank(transaction_id)
            if not _unanswered(error) or not held:
                raise self._fail(PhoneError(error.code, error.message)) from None
            # The terminal's word is known but the backend did not record it: keep it and
            # record it at the next chance; never ask for the payment again meanwhile.
            self._remember_unsettled("payment", payment_id, transaction_id, number, final)
            if final.result == "approved":
                raise self._fail(
                    PhoneError(
                        "result_not_recorded",
                        "Paiement accepté sur le terminal, mais pas encore enregistré : "
                        f"{error.message} Il sera enregistré automatiquement au prochain "
                        "paiement ; ne relancez pas le paiement de cette facture.",
                    )
                ) from None
            ended = "refusé" if final.result == "declined" else "annulé"
            raise self._fail(
                PhoneError(
                    "result_not_recorded",
                    f"Paiement {ended} sur le terminal : rien n'est débité. Le serveur ne "
                    f"répond pas ({error.message}) : l'accord bancaire retenu sera libéré au "
                    "prochain paiement, puis la facture pourra être payée à nouveau.",
                )
            ) from None
        try:
            invoice = await self.backend.invoice(number)
        except BackendError as error:  # recorded: only the invoice's new state is unknown
            log.warning("invoice %s not refreshed: %s", number, error)
            invoice = {}
        outcome = PaymentOutcome(
            invoice_number=number,
            result=final.result,
            message=final.message,
            response_code=final.response_code,
            authorisation_code=final.authorisation_code,
            brand=final.brand,
            masked_pan=final.masked_pan,
            receipt=list(final.receipt),
            merchant_receipt=list(final.merchant_receipt),
            invoice=invoice,
        )
        if final.result == "approved" and not invoice:
            self.show(
                "paid",
                f"Paiement accepté et enregistré (facture {number} : état à actualiser, "
                "le serveur ne répond pas)",
            )
        elif final.result == "approved" and invoice.get("status") == "paid":
            self.show("paid", f"Paiement accepté : facture {number} payée")
        elif final.result == "approved":
            due = format_amount(int(invoice["balance_due_cents"]), "€")
            self.show("partial", f"Paiement accepté : reste dû {due}")
        else:
            self.show("failed", f"Paiement non abouti : {final.message}")
        return outcome

    # ------------------------------------------------------------------ card capture
    async def capture_card(self, customer_id: str) -> CaptureOutcome:
        """Customer record › Information › Moyens de paiement › Ajouter un moyen de paiement ›
        "Prise d'empreinte via lecteur de cartes bancaires": save a card, charge nothing."""
        if self._paying:
            raise self._fail(
                PhoneError("payment_in_progress", "Un paiement est déjà en cours sur le terminal.")
            )
        self._paying = True
        try:
            return await self._capture_card(customer_id)
        finally:
            self._paying = False
            self._current = None
            self._answers.clear()

    async def _capture_card(self, customer_id: str) -> CaptureOutcome:
        self.show("menu", f"{CUSTOMER_PAYMENT_METHODS} ({customer_id})")
        try:
            customer = await self.backend.customer(customer_id)
        except BackendError as error:
            raise self._fail(PhoneError(error.code, error.message)) from None
        self.show("button", f"{BUTTON_ADD_PAYMENT_METHOD} › {BUTTON_CARD_CAPTURE}")
        await self._settle_quietly(terminal_needed=False)
        await self._ensure_terminal()
        await self._settle_quietly()
        assert self.link is not None
        assert self.terminal is not None
        link = self.link
        try:
            capture = await self.backend.create_capture(customer_id, self.terminal.serial)
        except BackendError as error:
            raise self._fail(PhoneError(error.code, error.message)) from None
        capture_id = str(capture["capture_id"])
        transaction_id = str(capture["transaction_id"])
        self.show("capture_sent", f"Présentez la carte de {customer['name']} sur le terminal")
        try:
            final = await self._run_on_terminal(
                link,
                CardAcquisitionRequest(transaction_id=transaction_id, reference=customer_id),
                lambda body: self.backend.verify_capture(capture_id, body),
                CardAcquisitionResponse,
            )
        except PhoneError as error:
            if error.code == "link_lost":
                self.link = None
            if not self.screen or self.screen[-1] != error.message:
                self._fail(error)
            if self._approved_by_the_bank(transaction_id) and error.code == "outcome_unknown":
                self._remember_unsettled("capture", capture_id, transaction_id, customer_id)
                raise
            try:  # no card was saved: close the capture at the backend
                await self.backend.capture_result(capture_id, transaction_id, "aborted")
            except BackendError as backend_error:
                log.warning("could not close capture %s: %s", capture_id, backend_error)
            raise
        try:
            answer = await self.backend.capture_result(capture_id, transaction_id, final.result)
        except BackendError as error:
            if not _unanswered(error) or final.result != "approved":
                raise self._fail(PhoneError(error.code, error.message)) from None
            self._remember_unsettled("capture", capture_id, transaction_id, customer_id, final)
            raise self._fail(
                PhoneError(
                    "result_not_recorded",
                    "Carte vérifiée sur le terminal, mais pas encore enregistrée : "
                    f"{error.message} Elle sera enregistrée automatiquement à la prochaine "
                    "opération.",
                )
            ) from None
        try:
            methods = await self.backend.payment_methods(customer_id)
        except BackendError as error:  # recorded: only the list is not refreshed
            log.warning("payment methods of %s not refreshed: %s", customer_id, error)
            methods = [m for m in [answer.get("payment_method")] if m]
        method = answer.get("payment_method")
        outcome = CaptureOutcome(
            customer_id=customer_id,
            result=final.result,
            message=str(answer.get("message") or final.message),
            response_code=final.response_code,
            saved=method is not None and not answer.get("duplicate"),
            duplicate=bool(answer.get("duplicate")),
            payment_method=method,
            payment_methods=methods,
        )
        if method is not None:
            self.show("card_saved", f"{outcome.message} {describe_card(method)}")
        else:
            self.show("failed", f"Carte non enregistrée : {final.message}")
        saved = ", ".join(describe_card(m) for m in methods) or "aucun"
        self.show("payment_methods", f"Moyens de paiement de la fiche client : {saved}")
        return outcome

    async def cancel(self) -> None:
        """The technician's "Annuler" while the terminal waits for the card or the PIN."""
        if self._current is None:
            raise self._fail(PhoneError("nothing_to_cancel", "Aucune opération en cours."))
        link, transaction_id = self._current
        self.show("cancel", "Annulation demandée")
        await link.send(AbortRequest(transaction_id=transaction_id))

    async def pay_with_saved_card(self, number: str, payment_method_id: str) -> dict[str, Any]:
        """Invoice › "Payer avec la carte enregistrée": the backend charges the saved card."""
        if self._paying:
            raise self._fail(
                PhoneError("payment_in_progress", "Un paiement est déjà en cours sur le terminal.")
            )
        self.show("button", f"{BUTTON_PAY_WITH_SAVED_CARD} (facture {number})")
        try:
            result = await self.backend.pay_with_token(number, payment_method_id)
        except BackendError as error:
            raise self._fail(PhoneError(error.code, error.message)) from None
        self.show("token_payment", str(result.get("message", "")))
        return result

    async def _payment_interrupted(
        self, payment_id: str, transaction_id: str, number: str, error: PhoneError
    ) -> None:
        """The flow broke before the terminal's final word (refusal, or a terminal out of
        reach after a link loss)."""
        if error.code == "link_lost":
            self.link = None  # the next flow reconnects
        if not self.screen or self.screen[-1] != error.message:
            self._fail(error)
        if self._approved_by_the_bank(transaction_id):
            # The bank approved and the terminal may have confirmed: only the terminal knows.
            # The authorisation stays held at the backend; the app settles it with the
            # terminal's journal at the next connection (or the hold lapses).
            self._remember_unsettled("payment", payment_id, transaction_id, number)
            self.show(
                "unknown_outcome",
                "Résultat du paiement inconnu : la banque a donné son accord mais le terminal "
                "ne l'a pas confirmé. Il sera vérifié auprès du terminal dès sa reconnexion ; "
                "ne relancez pas le paiement d'ici là.",
            )
            return
        if error.code == "outcome_unknown":
            self.show(
                "nothing_charged",
                "Le terminal ne répond plus (éteint ou hors de portée) avant d'avoir obtenu "
                "l'accord de la banque : rien n'a été débité. Relancez le paiement quand il "
                "sera de nouveau disponible.",
            )
        try:  # nothing can have been charged: close the payment at the backend
            await self.backend.report_result(payment_id, transaction_id, "aborted")
        except BackendError as backend_error:
            log.warning("could not close payment %s: %s", payment_id, backend_error)

    async def _run_on_terminal(
        self,
        link: TerminalLink,
        command: PaymentRequest | CardAcquisitionRequest,
        submit: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        final: type[F],
    ) -> F:
        """Send the transaction to the terminal and relay it to its end. If the link drops
        (or the terminal goes silent) before its final word, reconnect and ask its journal:
        the transaction goes on, or its outcome is taken from there — never guessed."""
        transaction_id = command.transaction_id
        self._current = (link, transaction_id)
        try:
            await link.send(command)
            await self._reply_to(link, expect=CommandAccepted)
            return await self._relay(link, submit, transaction_id, final)
        except PhoneError as error:
            if error.code not in RECOVERABLE:
                raise
        while True:
            status = await self._ask_status(transaction_id)
            if status.state == "unknown" or status.result is not None:
                return self._final_from_status(status, command, final)
            # Still under way on the terminal: go on, on the new link.
            link = self._link_or_fail()
            self._current = (link, transaction_id)
            try:  # an unanswered authorisation request comes again: see _relay
                return await self._relay(link, submit, transaction_id, final)
            except PhoneError as error:
                if error.code not in RECOVERABLE:
                    raise

    def _approved_by_the_bank(self, transaction_id: str) -> bool:
        """The app relayed an approval for this transaction: the bank holds money for it
        until the terminal's word reaches the backend."""
        return any(
            answer.response_code == "00"
            for (txn, _arqc), answer in self._answers.items()
            if txn == transaction_id
        )

    def _link_or_fail(self) -> TerminalLink:
        if self.link is None:  # pragma: no cover - _ask_status returns with a link
            raise PhoneError("link_lost", LINK_LOST)
        return self.link

    async def _ask_status(self, transaction_id: str) -> TransactionStatusResponse:
        """Reconnect (a bonded phone needs no pairing) and ask the terminal's journal about
        ``transaction_id``, for up to :attr:`AppTimeouts.reconnect`."""
        self.show("link_lost", LINK_LOST)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.reconnect
        while True:
            try:
                if self.link is not None and not self.link.is_connected:
                    self.link = None
                await self._ensure_terminal()
                link = self._link_or_fail()
                await link.send(TransactionStatusRequest(transaction_id=transaction_id))
                status = await self._reply_to(link, expect=TransactionStatusResponse)
                state = STATE_LABELS.get(status.state, status.state)
                self.show("status", f"Terminal reconnecté : transaction {state}")
                return status
            except PhoneError as error:
                log.info("reconnection failed: %s", error.code)
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._fail(
                    PhoneError(
                        "outcome_unknown",
                        "Terminal injoignable : impossible de connaître le résultat de la "
                        "transaction pour l'instant.",
                    )
                )
            await asyncio.sleep(min(self.timeouts.reconnect_pause, remaining))

    def _final_from_status(
        self,
        status: TransactionStatusResponse,
        command: PaymentRequest | CardAcquisitionRequest,
        final: type[F],
    ) -> F:
        """The terminal's final word, read from its journal instead of its final event."""
        result: Literal["approved", "declined", "aborted"] = "aborted"
        message = status.message
        if status.state == "unknown":  # the command never reached it: nothing happened
            message = NEVER_RECEIVED
        elif status.result == "approved":
            result = "approved"
        elif status.result == "declined":
            result = "declined"
        event: PaymentResponse | CardAcquisitionResponse
        if isinstance(command, CardAcquisitionRequest):
            event = CardAcquisitionResponse(
                transaction_id=command.transaction_id,
                result=result,
                response_code=status.response_code,
                brand=status.brand,
                masked_pan=status.masked_pan,
                entry_mode=status.entry_mode,
                message=message,
            )
        else:
            event = PaymentResponse(
                transaction_id=command.transaction_id,
                result=result,
                amount=command.amount,
                currency=command.currency,
                response_code=status.response_code,
                authorisation_code=status.authorisation_code,
                brand=status.brand,
                masked_pan=status.masked_pan,
                entry_mode=status.entry_mode,
                message=message,
                receipt=list(status.receipt),
                merchant_receipt=list(status.merchant_receipt),
                cardholder_verification=status.cardholder_verification,
            )
        if not isinstance(event, final):  # pragma: no cover - the flows pair them
            raise TypeError(f"{final.__name__} expected for {type(command).__name__}")
        return event

    def _remember_unsettled(
        self,
        kind: str,
        backend_id: str,
        transaction_id: str,
        of: str,
        final: PaymentResponse | CardAcquisitionResponse | None = None,
    ) -> None:
        """Keep a transaction the backend has not recorded: with the terminal's final word
        when the app has it (then no terminal is needed to record it), else the terminal that
        ran it, whose journal alone can tell."""
        item: dict[str, Any] = {
            "kind": kind,
            "id": backend_id,
            "transaction_id": transaction_id,
            "of": of,
            "terminal": self.terminal.serial if self.terminal else "",
        }
        if final is not None:
            item["result"] = final.result
            if isinstance(final, PaymentResponse):
                item["receipt"] = list(final.receipt)
                item["merchant_receipt"] = list(final.merchant_receipt)
        if all(old["transaction_id"] != transaction_id for old in self.unsettled):
            self.unsettled.append(item)
            self._save_state()

    async def _settle_quietly(self, *, terminal_needed: bool = True) -> None:
        """Before a new flow: record what the backend missed (see :meth:`settle_unsettled`)."""
        if not self.unsettled:
            return
        try:
            await self.settle_unsettled(terminal_needed=terminal_needed)
        except PhoneError as error:
            log.warning("could not settle earlier transactions: %s", error.code)

    async def settle_unsettled(self, *, terminal_needed: bool = True) -> None:
        """Record what the backend missed. A result the app holds is recorded as it is; an
        unknown one is asked of the journal of the terminal that ran the transaction (when
        the app is connected to it: ``terminal_needed`` False skips those)."""
        for item in list(self.unsettled):
            result = item.get("result")
            receipt = list(item.get("receipt") or [])
            merchant_receipt = list(item.get("merchant_receipt") or [])
            if result is None:
                if not terminal_needed or self.terminal is None or self.link is None:
                    continue
                if item.get("terminal") not in ("", self.terminal.serial):
                    continue  # another terminal: only its own journal can tell
                link = self._link_or_fail()
                await link.send(TransactionStatusRequest(transaction_id=item["transaction_id"]))
                status = await self._reply_to(link, expect=TransactionStatusResponse)
                if status.result is None and status.state != "unknown":
                    continue  # still under way on the terminal: ask again next time
                result = status.result or "aborted"  # its journal never had it: nothing done
                receipt, merchant_receipt = list(status.receipt), list(status.merchant_receipt)
            await self._record_unsettled(item, str(result), receipt, merchant_receipt)

    async def _record_unsettled(
        self, item: dict[str, Any], result: str, receipt: list[str], merchant_receipt: list[str]
    ) -> None:
        payment = item["kind"] == "payment"
        what = (
            f"Paiement en suspens de la facture {item['of']}"
            if payment
            else f"Enregistrement de carte en suspens du client {item['of']}"
        )
        try:
            if payment:
                receipts = {"customer": receipt, "merchant": merchant_receipt} if receipt else None
                await self.backend.report_result(
                    item["id"], item["transaction_id"], result, receipts=receipts
                )
            else:
                await self.backend.capture_result(item["id"], item["transaction_id"], result)
        except BackendError as error:
            log.warning("could not settle %s: %s", item, error)
            if _unanswered(error):
                self.show("error", error.message)
                return  # the backend will be asked again next time
            # refused: the backend has decided (an approval that lapsed meanwhile)
            self.show(
                "settled",
                f"{what} : l'accord de la banque a expiré avant d'être enregistré, rien n'a "
                "été débité." + (" La facture reste à payer." if payment else ""),
            )
        else:
            outcome = {"approved": "accepté", "declined": "refusé"}.get(result, "annulé")
            self.show("settled", f"{what} : {outcome} selon le terminal")
        self.unsettled.remove(item)
        self._save_state()

    def _unsettled_for(self, number: str) -> bool:
        return any(i["kind"] == "payment" and i["of"] == number for i in self.unsettled)

    async def _relay(
        self,
        link: TerminalLink,
        submit: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        transaction_id: str,
        final: type[F],
    ) -> F:
        """Relay between terminal and processor until the terminal gives its final word."""
        while True:
            event = await link.next_event(self.timeouts.payment)
            match event:
                case DisplayUpdate():
                    self.show("terminal_screen", "Terminal : " + " / ".join(event.lines))
                case AuthorisationRequest() if event.transaction_id == transaction_id:
                    # Once per card read: a soft decline (PSD2) brings a second one, chip and PIN.
                    read = (transaction_id, event.emv.get("9F26", ""))
                    if read in self._answers:  # sent again after a link loss: same answer
                        self.show("authorised", "Réponse de la banque renvoyée au terminal")
                        await link.send(self._answers[read])
                        continue
                    self.show("card_read", f"Carte lue : {event.brand} {event.masked_pan}")
                    answer = await self._authorise(submit, event)
                    self._answers[read] = answer
                    await link.send(answer)
                case Error() if event.code == "nothing_to_abort":
                    self.show("cancel_refused", CANCEL_TOO_LATE)
                case Error():
                    # e.g. the card was pulled out while the bank answered: the terminal
                    # refuses the late answer and its final event (aborted) settles it.
                    log.info("terminal refused a command: %s", event.code)
                case _ if isinstance(event, final) and event.transaction_id == transaction_id:
                    return event
                case _:
                    log.debug("ignored event: %r", event)

    async def _authorise(
        self,
        submit: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]],
        request: AuthorisationRequest,
    ) -> AuthorisationResponse:
        verifying = request.amount == 0
        self.show(
            "authorisation",
            "Vérification de la carte auprès de la banque…"
            if verifying
            else "Demande d'autorisation envoyée à la banque…",
        )
        try:
            decision = await submit(
                {
                    "transaction_id": request.transaction_id,
                    "amount_cents": request.amount,
                    "currency": request.currency,
                    "entry_mode": request.entry_mode,
                    "brand": request.brand,
                    "masked_pan": request.masked_pan,
                    "card_data": request.card_data,
                    "emv": request.emv,
                    "cvm": request.cvm,
                }
            )
        except BackendUnreachable:
            return AuthorisationResponse(
                transaction_id=request.transaction_id,
                response_code="91",
                message="Serveur injoignable",
            )
        except BackendError as error:
            return AuthorisationResponse(
                transaction_id=request.transaction_id, response_code="96", message=error.message
            )
        self.show("authorised", f"Réponse de la banque : {decision['message']}")
        return AuthorisationResponse(
            transaction_id=request.transaction_id,
            response_code=str(decision["response_code"]),
            authorisation_code=decision.get("authorisation_code"),
            message=str(decision.get("message", "")),
            arpc=decision.get("arpc"),
        )

    async def _reply_to(self, link: TerminalLink, expect: type[E]) -> E:
        """The terminal's answer to the last command sent; an Error becomes a PhoneError."""
        sent_id = link.sent[-1].id
        while True:
            event = await link.next_event(self.timeouts.terminal_reply)
            if isinstance(event, DisplayUpdate):
                self.show("terminal_screen", "Terminal : " + " / ".join(event.lines))
                continue
            if isinstance(event, Error) and event.in_reply_to in (sent_id, None):
                raise self._fail(PhoneError(event.code, event.message))
            if isinstance(event, expect) and getattr(event, "in_reply_to", None) == sent_id:
                return event
            log.debug("ignored event while waiting for a reply: %r", event)

    def _fail(self, error: PhoneError) -> PhoneError:
        self.show("error", error.message)
        return error


def _unanswered(error: BackendError) -> bool:
    """The backend could not be reached or failed (5xx): what was sent may not be recorded."""
    return isinstance(error, BackendUnreachable) or error.status >= 500


#: Phone errors after which the terminal's journal tells how the transaction went on.
RECOVERABLE = ("link_lost", "terminal_timeout")
LINK_LOST = "Liaison perdue avec le terminal : reconnexion pour connaître le résultat…"
NEVER_RECEIVED = "Le terminal n'a pas reçu la demande : rien n'a été débité"
CANCEL_TOO_LATE = "Annulation impossible : le terminal avait déjà terminé la transaction"
#: How the app names the terminal's states to its user.
STATE_LABELS = {
    "unknown": "inconnue du terminal",
    "waiting_for_card": "en attente de la carte",
    "pin_entry": "en attente du code",
    "authorising": "en attente de la banque",
    "approved": "acceptée",
    "declined": "refusée",
    "aborted": "annulée",
}


def describe_card(method: dict[str, Any]) -> str:
    """How the app lists a saved card: ``VISA •••• 4242 (12/29)``."""
    expiry = f"{int(method['exp_month']):02d}/{int(method['exp_year']) % 100:02d}"
    return f"{method['brand']} •••• {method['last4']} ({expiry})"
