# language: fr
@paiement
Fonctionnalité: Authentification forte (DSP2) après plusieurs paiements sans contact
  Au-delà du nombre de paiements sans contact consécutifs ou du montant cumulé permis sans
  code, la banque refuse « en douceur » (1A chez Visa et CB, 65 chez Mastercard) : le même
  paiement se poursuit carte insérée avec le code.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et le terminal de paiement est associé à l'application mobile

  Plan du scénario: La banque demande le code, le client insère sa carte et paie
    Étant donné une facture impayée de <premier> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « <carte> » sans contact
    Et le paiement se termine
    Alors la facture est payée
    Étant donné une facture impayée de <second> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « <carte> » sans contact
    Alors le terminal affiche « CODE REQUIS »
    Et le terminal affiche « INSÉREZ VOTRE CARTE »
    Et la banque a répondu « <code> » à la première demande
    Quand le client insère sa carte « <carte> »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors la facture est payée
    Et le ticket client indique « CODE CONFIDENTIEL VERIFIE »

    Exemples:
      | carte          | premier | second  | code |
      | visa_sca       | 10,00 € | 10,00 € | 1A   |
      | mastercard_sca | 20,00 € | 15,00 € | 65   |

  Plan du scénario: Les seuils par défaut : 5 paiements ou 150 € sans code
    Étant donné le client a déjà payé <déjà> factures de <montant> sans contact avec sa carte « visa »
    Et une facture impayée de <dernier> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « visa » sans contact
    Alors le terminal affiche « CODE REQUIS »
    Et la banque a répondu « 1A » à la première demande
    Quand le client insère sa carte « visa »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors la facture est payée

    Exemples:
      | déjà | montant | dernier |
      | 5    | 10,00 € | 10,00 € |
      | 3    | 45,00 € | 15,01 € |
