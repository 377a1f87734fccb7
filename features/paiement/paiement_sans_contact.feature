# language: fr
@paiement
Fonctionnalité: Faire régler une facture client par carte sans contact
  Le technicien ouvre la facture dans l'application mobile et déclenche le paiement
  par carte via le terminal ; le montant part sur le TPE et le client paie sans contact.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et le terminal de paiement est associé à l'application mobile

  Scénario: Le client règle sa facture sans contact
    Étant donné une facture impayée de 42,50 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Alors le terminal affiche « 42,50 EUR »
    Et le terminal affiche « PRÉSENTEZ OU »
    Quand le client présente sa carte « visa » sans contact après 5 secondes
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT ACCEPTÉ »
    Et l'application affiche « Paiement accepté : facture »
    Et la facture est payée
    Et le paiement est enregistré avec la marque « VISA » et la carte masquée « ************4242 »

  Scénario: La banque refuse la carte : la facture reste impayée
    Étant donné une facture impayée de 18,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « visa_refusee » sans contact après 3 secondes
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et l'application affiche « Paiement non abouti : Paiement refusé par la banque »
    Et la facture reste impayée avec une tentative refusée de code « 05 »
