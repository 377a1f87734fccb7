# language: fr
@paiement
Fonctionnalité: Chaque refus de la banque arrive au terminal et à l'application, en clair
  La facture reste impayée et la tentative refusée est enregistrée avec son code.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et le terminal de paiement est associé à l'application mobile

  Scénario: La banque accepte (code 00)
    Étant donné une facture impayée de 18,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « mastercard » sans contact
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT ACCEPTÉ »
    Et la facture est payée
    Et le paiement est enregistré avec la marque « MASTERCARD » et la carte masquée « ************4444 »

  Plan du scénario: Refus selon la carte
    Étant donné une facture impayée de <montant> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « <carte> » sans contact
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et l'application affiche « Paiement non abouti : <message> »
    Et la facture reste impayée avec une tentative refusée de code « <code> »

    Exemples:
      | carte                  | montant | code | message                                   |
      | visa_refusee           | 18,00 € | 05   | Paiement refusé par la banque             |
      | provision_insuffisante | 20,00 € | 51   | Provision insuffisante                    |
      | expiree                | 18,00 € | 54   | Carte expirée                             |
      | non_autorisee          | 18,00 € | 57   | Opération non autorisée pour cette carte  |
      | plafond                | 40,00 € | 61   | Plafond de la carte dépassé               |
      | restreinte             | 18,00 € | 62   | Carte soumise à restrictions              |
      | banque_indisponible    | 18,00 € | 91   | Banque indisponible, réessayez            |
      | erreur_systeme         | 18,00 € | 96   | Erreur système                            |

  Plan du scénario: Refus selon les centimes du montant (carte de test)
    Étant donné une facture impayée de <montant> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client insère sa carte « carte_test_centimes »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et l'application affiche « Paiement non abouti : <message> »
    Et la facture reste impayée avec une tentative refusée de code « <code> »

    Exemples:
      | montant | code | message                                         |
      | 18,05 € | 05   | Paiement refusé par la banque                   |
      | 18,51 € | 51   | Provision insuffisante                          |
      | 18,55 € | 55   | Code confidentiel erroné                        |
      | 18,75 € | 75   | Nombre d'essais du code confidentiel dépassé    |
      | 18,91 € | 91   | Banque indisponible, réessayez                  |

  Plan du scénario: Carte perdue ou volée
    Étant donné une facture impayée de 18,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « <carte> » sans contact
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et la facture reste impayée avec une tentative refusée de code « <code> »

    Exemples:
      | carte  | code |
      | perdue | 41   |
      | volee  | 43   |

  Plan du scénario: La banque accepte (code 00) selon les centimes du montant
    Étant donné une facture impayée de <montant> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client insère sa carte « carte_test_centimes »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT ACCEPTÉ »
    Et la banque a répondu « <code> » à la première demande
    Et la facture est payée

    Exemples:
      | montant | code |
      | 18,00 € | 00   |
      | 77,00 € | 00   |

  Plan du scénario: Une demande d'authentification forte après la saisie du code est un refus
    Étant donné une facture impayée de <montant> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client insère sa carte « carte_test_centimes »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT REFUSÉ »
    Et la facture reste impayée avec une tentative refusée de code « <code> »

    Exemples:
      | montant | code |
      | 18,65 € | 65   |
