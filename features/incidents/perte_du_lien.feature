# language: fr
@incidents
Fonctionnalité: Perte du lien Bluetooth pendant un paiement ou une prise d'empreinte
  Le lien entre le téléphone du technicien et le terminal peut tomber à tout moment.
  L'application se reconnecte, demande au terminal l'état de la transaction et converge :
  un paiement accepté une seule fois ou aucun, jamais une facture payée sans argent, jamais
  d'argent pris sans facture payée.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation

  Plan du scénario: Le lien tombe <quand> : la facture est payée une fois
    Quand le porteur suit le script « <script> »
    Alors le script se déroule comme prévu
    Et le résultat du script est « approved »
    Et le terminal revient à l'accueil

    Exemples:
      | quand                                          | script                                        |
      | avant la carte                                 | perte_du_lien_avant_la_carte                  |
      | pendant la saisie du code                      | perte_du_lien_pendant_le_code                 |
      | avant le départ de la demande d'autorisation   | perte_du_lien_avant_la_demande_d_autorisation |
      | après le départ de la demande d'autorisation   | perte_du_lien_apres_la_demande_d_autorisation |
      | après l'accord, avant que le téléphone le sache | perte_du_lien_apres_l_accord                 |

  Plan du scénario: Prise d'empreinte : le lien tombe <quand>, la carte est enregistrée
    Quand le porteur suit le script « <script> »
    Alors le script se déroule comme prévu
    Et aucun montant n'est débité

    Exemples:
      | quand                                         | script                                                  |
      | avant la carte                                | perte_du_lien_avant_la_carte_empreinte                  |
      | après le départ de la demande de vérification | perte_du_lien_apres_la_demande_d_autorisation_empreinte |
      | après l'accord                                | perte_du_lien_apres_l_accord_empreinte                  |

  Scénario: Le téléphone sort de portée une minute pendant l'autorisation
    Quand le porteur suit le script « hors_de_portee_pendant_l_autorisation »
    Alors le script se déroule comme prévu
    Et aucun montant n'est débité

  Scénario: Le terminal redémarre pendant le paiement : son journal fait foi
    Quand le porteur suit le script « redemarrage_du_terminal_pendant_le_paiement »
    Alors le script se déroule comme prévu
    Et aucun montant n'est débité

  Scénario: Le lien coupé pendant la saisie du code, écrit sans script
    Étant donné le terminal de paiement est associé à l'application mobile
    Et une facture impayée de 80,00 € pour un client généré
    Et le lien Bluetooth sera coupé au moment « pin_requested »
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client insère sa carte « visa »
    Et le client saisit le code « 1234 »
    Et le paiement se termine
    Alors la facture est payée
    Et le terminal revient à l'accueil
