# language: fr
@incidents
Fonctionnalité: Pannes du serveur et du réseau du téléphone
  L'application réessaie quand c'est sans risque (clé d'idempotence) et dit clairement ce qui
  se passe quand ce ne l'est pas. Jamais de double paiement, jamais d'argent retenu.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation

  Scénario: Une erreur 503 puis la reprise : un seul paiement
    Quand le porteur suit le script « banque_en_erreur_puis_reprise »
    Alors le script se déroule comme prévu
    Et le résultat du script est « approved »

  Scénario: Une banque lente mais dans les temps
    Quand le porteur suit le script « banque_lente »
    Alors le script se déroule comme prévu

  Scénario: Une banque trop lente : rien n'est encaissé
    Quand le porteur suit le script « banque_trop_lente »
    Alors le script se déroule comme prévu
    Et aucun montant n'est débité

  Scénario: Le serveur refuse les connexions
    Quand le porteur suit le script « serveur_injoignable »
    Alors le script se déroule comme prévu
    Et l'application affiche « Serveur injoignable »

  Scénario: Le téléphone n'a plus de réseau
    Quand le porteur suit le script « telephone_sans_reseau »
    Alors le script se déroule comme prévu
    Et aucun montant n'est débité
