# language: fr
@empreinte
Fonctionnalité: Collecter les informations de paiement d'un client (prise d'empreinte)
  Depuis la fiche du client, onglet Information, section Moyens de paiement, le technicien
  clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes
  bancaires ». Le client présente sa carte sur le terminal ; aucun montant n'est spécifié.
  La carte est enregistrée sur la fiche du client en toute sécurité : un jeton, jamais le
  numéro de carte.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation
    Et le terminal de paiement est associé à l'application mobile
    Et un client généré sans moyen de paiement enregistré

  Scénario: La carte présentée sans contact est enregistrée sur la fiche du client
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Alors le terminal affiche « ENREGISTREMENT CARTE »
    Quand le client présente sa carte « visa » sans contact
    Et la prise d'empreinte se termine
    Alors le terminal affiche « CARTE ENREGISTRÉE »
    Et le terminal n'affiche aucun montant
    Et l'application affiche « Carte enregistrée sur la fiche client. VISA •••• 4242 (12/29) »
    Et l'application affiche « Moyens de paiement de la fiche client : VISA •••• 4242 (12/29) »
    Et la carte « VISA » se terminant par « 4242 » est enregistrée sur la fiche du client

  Scénario: La carte insérée demande son code, puis est enregistrée
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client insère sa carte « mastercard »
    Alors le terminal affiche « SAISISSEZ VOTRE CODE »
    Quand le client saisit le code « 4321 »
    Et la prise d'empreinte se termine
    Alors le terminal n'affiche aucun montant
    Et la carte « MASTERCARD » se terminant par « 4444 » est enregistrée sur la fiche du client

  Scénario: Une carte co-badgée est enregistrée sous la marque CB
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client présente sa carte « cb_visa » sans contact
    Et la prise d'empreinte se termine
    Alors la carte « CB » se terminant par « 1001 » est enregistrée sur la fiche du client

  Scénario: La même carte enregistrée deux fois n'est gardée qu'une fois
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client présente sa carte « visa » sans contact
    Et la prise d'empreinte se termine
    Et le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client présente sa carte « visa » sans contact
    Et la prise d'empreinte se termine
    Alors l'application affiche « Cette carte est déjà enregistrée pour ce client. »
    Et la fiche du client a 1 moyen de paiement
    Et l'application affiche « Moyens de paiement de la fiche client : VISA •••• 4242 (12/29) »

  Plan du scénario: Une carte refusée n'est pas enregistrée et l'application dit pourquoi
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client insère sa carte « <carte> »
    Et le client saisit le code « 1234 »
    Et la prise d'empreinte se termine
    Alors le terminal affiche « CARTE REFUSÉE »
    Et l'application affiche « Carte non enregistrée : <message> »
    Et la fiche du client n'a aucun moyen de paiement

    Exemples:
      | carte        | message                                  |
      | expiree      | Carte expirée                            |
      | visa_refusee | Paiement refusé par la banque            |
      | perdue       | Carte refusée : contactez votre banque   |
      | volee        | Carte refusée : contactez votre banque   |
      | restreinte   | Carte soumise à restrictions             |

  Scénario: Une carte dont le code est bloqué n'est pas enregistrée
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client présente sa carte « pin_bloque » sans contact
    Et la prise d'empreinte se termine
    Alors le terminal affiche « CARTE REFUSÉE »
    Et l'application affiche « Carte non enregistrée : Nombre d'essais du code confidentiel dépassé »
    Et la fiche du client n'a aucun moyen de paiement

  Scénario: Une carte que le terminal ne connaît pas n'est pas enregistrée
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client présente sa carte « jcb_non_supportee » sans contact
    Alors le terminal affiche « CARTE NON SUPPORTÉE »
    Quand le client appuie sur la touche rouge du terminal
    Et la prise d'empreinte se termine
    Alors la fiche du client n'a aucun moyen de paiement

  Scénario: Le technicien annule depuis l'application
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le technicien annule depuis l'application
    Et la prise d'empreinte se termine
    Alors le terminal affiche « TRANSACTION ANNULÉE »
    Et l'application affiche « Carte non enregistrée : Transaction annulée »
    Et la fiche du client n'a aucun moyen de paiement

  Scénario: Le client annule avec la touche rouge du terminal
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client appuie sur la touche rouge du terminal
    Et la prise d'empreinte se termine
    Alors l'application affiche « Carte non enregistrée : Annulée sur le terminal »
    Et la fiche du client n'a aucun moyen de paiement

  Scénario: Le client ne présente pas de carte à temps
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client attend 61 secondes
    Et la prise d'empreinte se termine
    Alors l'application affiche « Carte non enregistrée : Délai de présentation de la carte dépassé »
    Et la fiche du client n'a aucun moyen de paiement

  Scénario: La carte enregistrée paie ensuite une facture sans le terminal
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client présente sa carte « visa » sans contact
    Et la prise d'empreinte se termine
    Étant donné une facture impayée de 245,00 € pour ce client
    Quand le technicien paie la facture avec la carte enregistrée
    Alors la facture est payée
    Et le paiement est enregistré avec la marque « VISA » et la carte masquée « ************4242 »

  Scénario: Une carte refusée à l'enregistrement laisse la fiche du client inchangée
    Quand le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client présente sa carte « visa » sans contact
    Et la prise d'empreinte se termine
    Et le technicien ouvre la fiche du client, onglet Information, clique sur « Ajouter un moyen de paiement » puis « Prise d'empreinte via lecteur de cartes bancaires »
    Et le client présente sa carte « visa_refusee » sans contact
    Et la prise d'empreinte se termine
    Alors la fiche du client a 1 moyen de paiement
    Et la carte « VISA » se terminant par « 4242 » est enregistrée sur la fiche du client
