"""Every message the virtual app shows its (French) user, listed: a change here is a change
users will see. The list is read from the code itself, so a new message fails this test until
it is reviewed and added."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[3] / "harness" / "app"


def _texts(node: ast.expr) -> set[str]:
    """A message as written: f-string fields and computed parts become ``{…}``; both
    branches of a conditional count."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.JoinedStr):
        return {
            "".join(
                str(part.value) if isinstance(part, ast.Constant) else "{…}" for part in node.values
            )
        }
    if isinstance(node, ast.IfExp):
        return _texts(node.body) | _texts(node.orelse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return {a + b for a in _texts(node.left) for b in _texts(node.right)}
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("rstrip", "strip", "format")
    ):
        return _texts(node.func.value)
    return {"{…}"}


def app_messages() -> set[str]:
    found: set[str] = set()
    for path in APP.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or len(node.args) != 2:
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name in ("show", "PhoneError"):
                found |= _texts(node.args[1])
    return found


EXPECTED = {
    "{…}",
    "Menu › {…}",
    "Menu › {…} › facture {…}",
    "{…} › {…}",
    "{…} ({…})",
    "{…} (facture {…})",
    "Activez le Bluetooth du téléphone.",
    "Activez la localisation (GPS) du téléphone : Android l'exige pour rechercher les "
    "terminaux Bluetooth.",
    "Recherche des terminaux à proximité…",
    "Terminal trouvé : {…} — n° {…} — signal {…} dBm — {…}",
    "Le terminal {…} n'est pas à portée.",
    "Terminal {…} reconnecté (appairage conservé)",
    "Terminal {…} appairé ({…})",
    "Terminal {…} associé à votre compte",
    "Première configuration du terminal : cela peut prendre plusieurs minutes",
    "Configuration du terminal interrompue : rapprochez le téléphone et relancez "
    "l'association, elle reprendra où elle s'est arrêtée.",
    "{…} (logiciel {…})",
    "Aucun terminal associé.",
    "Terminal {…} oublié",
    "Un paiement est déjà en cours sur le terminal.",
    "Le paiement par TPE n'est pas activé dans le module Facturation.",
    "La facture {…} est déjà réglée.",
    "Aucun terminal associé : association en cours…",
    "Reconnexion au terminal {…}…",
    "Terminal {…} déjà associé et connecté",
    "Terminal connecté : {…}",
    "Montant de {…} transmis au terminal (facture {…})",
    "Paiement accepté : facture {…} payée",
    "Paiement accepté : reste dû {…}",
    "Paiement non abouti : {…}",
    "Présentez la carte de {…} sur le terminal",
    "{…} {…}",
    "Carte non enregistrée : {…}",
    "Moyens de paiement de la fiche client : {…}",
    "Aucune opération en cours.",
    "Annulation demandée",
    "Résultat du paiement inconnu : la banque a donné son accord mais le terminal ne l'a pas "
    "confirmé. Il sera vérifié auprès du terminal dès sa reconnexion ; ne relancez pas le "
    "paiement d'ici là.",
    "Terminal reconnecté : transaction {…}",
    "Terminal injoignable : impossible de connaître le résultat de la transaction pour l'instant.",
    "Réponse de la banque renvoyée au terminal",
    "Paiement accepté sur le terminal, mais pas encore enregistré : {…} Il sera enregistré "
    "automatiquement au prochain paiement ; ne relancez pas le paiement de cette facture.",
    "Paiement {…} sur le terminal : rien n'est débité. Le serveur ne répond pas ({…}) : "
    "l'accord bancaire retenu sera libéré au prochain paiement, puis la facture pourra être "
    "payée à nouveau.",
    "Le terminal ne répond plus (éteint ou hors de portée) avant d'avoir obtenu l'accord de la "
    "banque : rien n'a été débité. Relancez le paiement quand il sera de nouveau disponible.",
    "Paiement accepté et enregistré (facture {…} : état à actualiser, le serveur ne répond pas)",
    "Un paiement précédent de la facture {…} n'est pas encore enregistré (serveur ou terminal "
    "injoignable) : impossible de la faire payer à nouveau tant qu'il n'est pas réglé.",
    "{…} : l'accord de la banque a expiré avant d'être enregistré, rien n'a été débité.",
    "{…} : l'accord de la banque a expiré avant d'être enregistré, rien n'a été débité. La "
    "facture reste à payer.",
    "Carte vérifiée sur le terminal, mais pas encore enregistrée : {…} Elle sera enregistrée "
    "automatiquement à la prochaine opération.",
    "{…} : {…} selon le terminal",
    "Terminal : {…}",
    "Carte lue : {…} {…}",
    "Vérification de la carte auprès de la banque…",
    "Demande d'autorisation envoyée à la banque…",
    "Réponse de la banque : {…}",
    # phone.py
    "Aucun terminal trouvé à proximité. Vérifiez qu'il est allumé et proche du téléphone.",
    "Impossible de se connecter au terminal : délai dépassé.",
    "Le terminal ne reconnaît plus ce téléphone : oubliez-le dans le menu Terminaux de "
    "Paiement (TPE), puis associez-le à nouveau.",
    "Cet appareil n'est pas un terminal de paiement.",
    "Le terminal a refusé la commande (erreur Bluetooth {…}).",
    "Le terminal ne répond pas : délai d'attente dépassé.",
    "Connexion Bluetooth perdue avec le terminal. Rapprochez le téléphone du terminal et "
    "réessayez.",
}


def test_every_app_message_is_listed_and_reviewed() -> None:
    found = app_messages()
    assert found - EXPECTED == set(), "new messages to review and list"
    assert EXPECTED - found == set(), "listed messages the app no longer shows"
