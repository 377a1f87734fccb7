# language: fr
@paiement
Fonctionnalité: Paiement par carte insérée et code confidentiel
  Le client insère sa carte et saisit son code : vérifié par la puce (code hors ligne) ou
  par sa banque (code en ligne). Trois codes faux bloquent le code.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et le terminal de paiement est associé à l'application mobile
    Et une facture impayée de 86,40 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »

  Scénario: Code vérifié par la puce
    Quand le client insère sa carte « offline_pin »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT ACCEPTÉ »
    Et la facture est payée

  Scénario: Un code faux, puis le bon
    Quand le client insère sa carte « offline_pin »
    Et le client saisit le code « 9999 »
    Alors le terminal affiche « CODE FAUX »
    Et le terminal affiche « ESSAIS RESTANTS : 2 »
    Quand le client saisit le code « 1234 »
    Et le paiement se termine
    Alors la facture est payée

  Scénario: Trois codes faux bloquent le code de la carte
    Quand le client insère sa carte « offline_pin »
    Et le client saisit le code « 1111 »
    Et le client saisit le code « 2222 »
    Alors le terminal affiche « ESSAIS RESTANTS : 1 »
    Quand le client saisit le code « 3333 »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et l'application affiche « Paiement non abouti : Nombre d'essais du code confidentiel dépassé »
    Et la facture reste impayée avec une tentative refusée de code « 75 »

  Scénario: Une carte dont le code est déjà bloqué est refusée sans demander le code
    Quand le client insère sa carte « pin_bloque »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et la facture reste impayée avec une tentative refusée de code « 75 »

  Scénario: Code vérifié en ligne par la banque
    Quand le client insère sa carte « online_pin »
    Et le client saisit le code « 4242 »
    Et le paiement se termine
    Alors la facture est payée

  Scénario: Code faux vérifié en ligne par la banque
    Quand le client insère sa carte « online_pin »
    Et le client saisit le code « 0000 »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et la facture reste impayée avec une tentative refusée de code « 55 »

  Scénario: La carte retirée pendant la saisie du code annule le paiement
    Quand le client insère sa carte « offline_pin »
    Et le client retire sa carte
    Et le paiement se termine
    Alors le terminal affiche « TRANSACTION ANNULÉE »
    Et le terminal affiche « CARTE RETIRÉE »
    Et la facture reste impayée sans aucun paiement encaissé

  Scénario: La puce refuse après l'accord de la banque : l'autorisation est annulée
    Quand le client insère sa carte « refus_puce »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et l'application affiche « Paiement non abouti : Paiement refusé par la carte »
    Et l'autorisation de la banque est annulée (paiement « reversed »)
