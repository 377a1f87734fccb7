# language: fr
@incidents
Fonctionnalité: Délais dépassés et annulations
  Sur chaque délai dépassé et chaque annulation, le terminal revient à l'accueil, rien n'est
  débité et l'application dit ce qui s'est passé.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation

  Plan du scénario: <cas>
    Quand le porteur suit le script « <script> »
    Alors le script se déroule comme prévu
    Et le résultat du script est « aborted »
    Et aucun montant n'est débité

    Exemples:
      | cas                                         | script                                          |
      | carte jamais présentée                      | delai_de_presentation_de_la_carte               |
      | code jamais saisi                           | delai_de_saisie_du_code                         |
      | annulation dans l'application avant la carte | annulation_depuis_l_application_avant_la_carte |
      | annulation dans l'application pendant le code | annulation_depuis_l_application_pendant_le_code |
      | touche rouge avant la carte                 | touche_rouge_avant_la_carte                     |
      | touche rouge pendant le code                | touche_rouge_pendant_le_code                    |
      | carte retirée pendant le code               | carte_retiree_pendant_le_code                   |

  Scénario: Un second paiement pendant le premier est refusé, le premier aboutit
    Quand le porteur suit le script « terminal_occupe »
    Alors le script se déroule comme prévu
    Et le résultat du script est « approved »

  Scénario: Une annulation pendant que la banque décide : l'accord qui suit est annulé
    Quand le porteur suit le script « annulation_apres_l_accord »
    Alors le script se déroule comme prévu
    Et aucun montant n'est débité
