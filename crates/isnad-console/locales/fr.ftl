app-name = Console Isnad
skip-to-content = Aller au contenu
nav-main = Principal
nav-dashboard = Tableau de bord
nav-inbox = Messages reçus
nav-outbox = Messages envoyés
nav-logout = Se déconnecter
signed-in-as = Connecté : { $user } ({ $role })
role-officer = officier
role-supervisor = superviseur
role-operator = opérateur
role-auditor = auditeur
lang-label = Langue
lang-ar = العربية
lang-en = English
lang-fr = Français
lang-save = Changer de langue
login-title = Connexion
login-user = Nom d’utilisateur
login-password = Mot de passe
login-totp = Code à usage unique (6 chiffres)
login-submit = Se connecter
login-failed = Le nom d’utilisateur, le mot de passe ou le code à usage unique est incorrect.
login-locked = Trop d’échecs. Réessayez plus tard ou demandez à un opérateur de réinitialiser votre compte.
logout-done = Vous êtes déconnecté.
dash-title = Tableau de bord
dash-node = Nœud { $agency }
dash-status = État
status-ok = fonctionnement normal
status-degraded = dégradé : aucun nouveau travail accepté
dash-reasons = Alarmes
dash-no-alarms = Aucune alarme.
dash-queues = Files d’attente
dash-pending = { $count ->
    [one] { $count } message en attente de remise
   *[other] { $count } messages en attente de remise
}
dash-partners = Partenaires avec des messages en attente
dash-partners-none = Aucun partenaire n’a de message en attente.
dash-partner-failing = dernière tentative échouée
dash-partner-trying = en attente de la prochaine tentative
dash-checkpoint = Dernier point de contrôle
dash-checkpoint-none = Aucun point de contrôle signé.
dash-checkpoint-size = { $size ->
    [one] { $size } entrée
   *[other] { $size } entrées
}
dash-cosigned = { $count ->
    [0] contresigné par aucun témoin
    [one] contresigné par { $count } témoin sur { $total } (quorum { $quorum })
   *[other] contresigné par { $count } témoins sur { $total } (quorum { $quorum })
}
inbox-title = Messages reçus
outbox-title = Messages envoyés
col-id = Message
col-from = Expéditeur
col-to = Destinataire
col-kind = Type
col-subject = Objet
inbox-purged = (contenu supprimé selon les règles de conservation)
col-received = Reçu (UTC)
col-created = Créé (UTC)
col-state = État
list-empty = Aucun message.
page-next = Page suivante
page-first = Première page
err-forbidden-title = Non autorisé
err-forbidden = Votre rôle ne permet pas d’ouvrir cette page.
err-csrf-title = Formulaire expiré
err-csrf = Le formulaire n’a pas été accepté (jeton de sécurité absent ou périmé). Rouvrez la page et réessayez.
err-not-found-title = Introuvable
err-not-found = Cette page n’existe pas.
err-unavailable-title = Indisponible
err-unavailable = Le nœud n’a pas pu répondre. Réessayez ; si cela persiste, prévenez un opérateur.
