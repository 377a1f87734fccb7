# language: fr
@paiement
Fonctionnalité: Cartes co-badgées, cartes non acceptées, factures déjà réglées en partie
  Une carte française co-badgée passe par CB par défaut ; le client peut choisir l'autre
  marque sur le terminal.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et le terminal de paiement est associé à l'application mobile

  Plan du scénario: Choix de la marque sur une carte co-badgée
    Étant donné une facture impayée de 32,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « <carte> » sans contact en choisissant « <choix> »
    Et le paiement se termine
    Alors la facture est payée
    Et le paiement est enregistré avec la marque « <marque> » et la carte masquée « <carte masquée> »

    Exemples:
      | carte         | choix      | marque     | carte masquée    |
      | cb_visa       | CB         | CB         | ************1001 |
      | cb_visa       | VISA       | VISA       | ************1001 |
      | cb_mastercard | MASTERCARD | MASTERCARD | ************1001 |

  Scénario: Carte co-badgée insérée, le client choisit Visa puis saisit son code
    Étant donné une facture impayée de 132,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client insère sa carte « cb_visa » en choisissant « VISA »
    Et le client saisit le code « 2580 »
    Et le paiement se termine
    Alors la facture est payée
    Et le paiement est enregistré avec la marque « VISA » et la carte masquée « ************1001 »
    Et le ticket client indique « PUCE »

  Scénario: Une carte co-badgée passe par CB par défaut
    Étant donné une facture impayée de 32,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « cb_mastercard » sans contact
    Et le paiement se termine
    Alors le paiement est enregistré avec la marque « CB » et la carte masquée « ************1001 »

  Scénario: Une carte American Express est acceptée
    Étant donné une facture impayée de 32,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « amex » sans contact
    Et le paiement se termine
    Alors le paiement est enregistré avec la marque « AMEX » et la carte masquée « ***********0005 »

  Scénario: Une carte dont le terminal ne connaît pas l'application est refusée, une autre paie
    Étant donné une facture impayée de 32,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « jcb_non_supportee » sans contact
    Alors le terminal affiche « CARTE NON SUPPORTÉE »
    Quand le client présente sa carte « visa » sans contact
    Et le paiement se termine
    Alors la facture est payée

  Scénario: Une facture déjà réglée en partie n'est débitée que du reste dû
    Étant donné une facture de 90,00 € déjà réglée en partie par chèque pour 60,00 €
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Alors le montant envoyé au terminal est de 30,00 €
    Quand le client présente sa carte « visa » sans contact
    Et le paiement se termine
    Alors la facture est payée
