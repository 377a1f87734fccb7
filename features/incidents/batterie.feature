# language: fr
@incidents
Fonctionnalité: Batterie du terminal
  Chaque transaction use la batterie ; sous un seuil le terminal refuse les nouvelles
  transactions avec un message clair ; à zéro il s'éteint et son journal reste intact.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation

  Scénario: Sous le seuil, le terminal refuse un nouveau paiement
    Quand le porteur suit le script « batterie_sous_le_seuil »
    Alors le script se déroule comme prévu
    Et aucun montant n'est débité

  Scénario: La batterie s'épuise pendant le paiement : rien n'est perdu, rien n'est payé deux fois
    Quand le porteur suit le script « batterie_a_zero_pendant_le_paiement »
    Alors le script se déroule comme prévu
