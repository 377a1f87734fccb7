# language: fr
@association
Fonctionnalité: Associer l'application mobile au terminal de paiement (TPE)
  Menu « Terminaux de Paiement (TPE) » : le technicien allume son TPE, active le Bluetooth et
  la localisation du téléphone, choisit le terminal, confirme le code d'appairage affiché sur
  les deux écrans. La première association peut prendre plusieurs minutes : le terminal
  télécharge sa configuration et, parfois, une mise à jour de son logiciel.

  Contexte:
    Étant donné le TPE est activé comme moyen de paiement dans le module Facturation

  Scénario: La recherche liste les terminaux à proximité
    Quand le technicien ouvre le menu « Terminaux de Paiement (TPE) »
    Alors la liste montre le terminal « TPE-SIM0001 » avec son numéro, son signal et sa batterie

  Scénario: Bluetooth désactivé
    Étant donné le Bluetooth du téléphone est désactivé
    Quand le technicien ouvre le menu « Terminaux de Paiement (TPE) »
    Alors la recherche échoue avec le message « Activez le Bluetooth du téléphone. »

  Scénario: Localisation désactivée
    Étant donné la localisation (GPS) du téléphone est désactivée
    Quand le technicien ouvre le menu « Terminaux de Paiement (TPE) »
    Alors la recherche échoue avec le message « Activez la localisation (GPS) du téléphone »

  Scénario: Aucun terminal à portée
    Étant donné le terminal est éteint
    Quand le technicien ouvre le menu « Terminaux de Paiement (TPE) »
    Alors la recherche échoue avec le message « Aucun terminal trouvé à proximité »

  Scénario: Première association : appairage par code, configuration, association au compte
    Quand le technicien associe le terminal
    Alors le terminal est associé au compte du commerçant
    Et le terminal affiche « TERMINAL CONFIGURÉ »
    Et l'application affiche « Téléchargement de la configuration : 100 % »

  Scénario: Première association avec une mise à jour du logiciel
    Étant donné un terminal « mise_a_jour » sorti de sa boîte
    Quand le technicien associe le terminal
    Alors le terminal est associé au compte du commerçant
    Et la configuration a duré au moins 5 minutes de temps simulé
    Et l'application affiche « Mise à jour du logiciel 1.4.2 : 100 % »
    Et le terminal a le logiciel « 1.4.2 »

  Scénario: Un terminal qui ne peut qu'afficher un code : le code est saisi sur le téléphone
    Étant donné un terminal « code_a_saisir » sorti de sa boîte
    Quand le technicien associe le terminal
    Alors le terminal est associé au compte du commerçant
    Et le terminal a affiché « SAISISSEZ SUR LE TEL »

  Plan du scénario: Code refusé : rien n'est enregistré, et l'on peut recommencer
    Quand <qui> refuse le code sur <où>
    Et le technicien associe le terminal
    Alors l'association échoue avec le message « L'appairage avec le terminal a échoué »
    Et rien n'est enregistré : ni appairage ni association
    Quand le technicien accepte désormais le code
    Et le technicien associe à nouveau le terminal
    Alors le terminal est associé au compte du commerçant

    Exemples:
      | qui            | où               |
      | le technicien  | le téléphone     |
      | le commerçant  | le terminal      |

  Plan du scénario: Code saisi de travers ou abandonné sur le téléphone
    Étant donné un terminal « code_a_saisir » sorti de sa boîte
    Quand <qui> refuse le code sur <où>
    Et le technicien associe le terminal
    Alors l'association échoue avec le message « L'appairage avec le terminal a échoué »
    Et rien n'est enregistré : ni appairage ni association

    Exemples:
      | qui            | où               |
      | le technicien  | le téléphone     |
      | le commerçant  | le terminal      |

  Scénario: Batterie trop faible pour la première configuration
    Étant donné un terminal « batterie_faible » sorti de sa boîte
    Quand le technicien associe le terminal
    Alors l'association échoue avec le message « Batterie du terminal trop faible pour sa configuration (12 %, 20 % au moins) »
    Et rien n'est enregistré : ni appairage ni association
    Quand le terminal est rechargé à 80 %
    Et le technicien associe à nouveau le terminal
    Alors le terminal est associé au compte du commerçant

  Scénario: La configuration interrompue reprend où elle s'était arrêtée
    Quand la liaison est coupée pendant la configuration à 40 %
    Et le technicien associe à nouveau le terminal
    Alors le terminal est associé au compte du commerçant
    Et la configuration a repris à 40 % au moins

  Scénario: Un terminal déjà associé à un autre compte marchand est refusé
    Étant donné un terminal « autre_marchand » sorti de sa boîte
    Quand le technicien associe le terminal
    Alors l'association échoue avec le message « déjà associé à un autre compte marchand »
    Et rien n'est enregistré : ni appairage ni association

  Scénario: Le terminal redémarre : le téléphone se reconnecte sans nouvel appairage
    Étant donné le terminal de paiement a été associé puis la liaison coupée
    Quand le terminal redémarre
    Et le technicien associe à nouveau le terminal
    Alors le téléphone s'est reconnecté sans nouvel appairage
    Et le terminal est associé au compte du commerçant

  Scénario: L'application redémarre : elle retrouve son terminal sans nouvel appairage
    Étant donné le terminal de paiement a été associé puis la liaison coupée
    Quand l'application redémarre
    Et le technicien associe à nouveau le terminal
    Alors le téléphone s'est reconnecté sans nouvel appairage

  Scénario: Oublier le terminal
    Étant donné le terminal de paiement est associé à l'application mobile
    Quand le technicien oublie le terminal
    Alors le téléphone n'a plus d'appairage avec le terminal

  Scénario: Après une réinitialisation du terminal, le téléphone doit l'appairer à nouveau
    Étant donné le terminal de paiement a été associé puis la liaison coupée
    Quand le terminal est réinitialisé aux réglages d'usine
    Et le technicien associe à nouveau le terminal
    Alors l'association échoue avec le message « Le terminal ne reconnaît plus ce téléphone »
    Quand le technicien oublie le terminal
    Et le technicien associe à nouveau le terminal
    Alors le terminal est associé au compte du commerçant

  Scénario: Le paiement déclenché sans terminal associé associe d'abord le terminal
    Étant donné une facture impayée de 25,00 € pour un client généré
    Quand le technicien ouvre la facture dans le menu Facturation et clique sur « Déclencher un paiement par carte via le terminal »
    Et le client présente sa carte « visa » sans contact
    Et le paiement se termine
    Alors l'application affiche « Aucun terminal associé : association en cours… »
    Et la facture est payée

  Scénario: Plusieurs téléphones du même commerçant utilisent le même terminal
    Étant donné le terminal de paiement a été associé puis la liaison coupée
    Quand le téléphone n°2 du commerçant associe le terminal
    Alors le terminal est associé au compte du commerçant
    Et le terminal garde 2 appairages

  Scénario: Un terminal garde au plus le nombre d'appairages de son modèle
    Étant donné un terminal « code_a_saisir » sorti de sa boîte
    Et le terminal de paiement a été associé puis la liaison coupée
    Quand le téléphone n°2 du commerçant associe le terminal
    Alors l'association échoue avec le message « Le terminal refuse un nouveau téléphone »
    Et le terminal garde 1 appairage
    Et le terminal a affiché « TROP DE TÉLÉPHONES »
