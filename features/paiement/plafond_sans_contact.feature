# language: fr
@paiement
Fonctionnalité: Plafond du sans contact à 50 €
  Au-delà de 50 € par paiement, le terminal refuse le sans contact et demande d'insérer la
  carte ; le client tape alors son code. Un téléphone (portefeuille mobile) qui a lui-même
  vérifié son porteur paie sans contact au-delà du plafond.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et le terminal de paiement est associé à l'application mobile

  Plan du scénario: Sans contact jusqu'à 50 € inclus
    Étant donné une facture impayée de <montant> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « visa » sans contact
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT ACCEPTÉ »
    Et la facture est payée

    Exemples:
      | montant |
      | 0,01 €  |
      | 49,99 € |
      | 50,00 € |

  Plan du scénario: Au-delà de 50 €, la carte doit être insérée et le code saisi
    Étant donné une facture impayée de <montant> pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « visa » sans contact
    Alors le terminal affiche « INSÉREZ VOTRE CARTE »
    Quand le client insère sa carte « visa »
    Alors le terminal affiche « SAISISSEZ VOTRE CODE »
    Quand le client saisit le code « 1234 »
    Et le paiement se termine
    Alors le terminal affiche « PAIEMENT ACCEPTÉ »
    Et la facture est payée
    Et le ticket client indique « PUCE »
    Et le ticket client indique « CODE CONFIDENTIEL VERIFIE »
    Et le ticket est conservé avec le paiement et indique « PUCE »

    Exemples:
      | montant    |
      | 50,01 €    |
      | 120,00 €   |
      | 1 250,00 € |

  Scénario: Un portefeuille mobile paie sans contact au-delà du plafond
    Étant donné une facture impayée de 180,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « wallet » sans contact
    Et le paiement se termine
    Alors la facture est payée
    Et le ticket client indique « VERIFIE PAR LE TELEPHONE »

  Scénario: Une carte dont le sans contact est désactivé doit être insérée
    Étant donné une facture impayée de 12,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « sans_contact_desactive » sans contact
    Alors le terminal affiche « INSÉREZ VOTRE CARTE »
    Quand le client insère sa carte « sans_contact_desactive »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors la facture est payée
