app-name = Isnad console
skip-to-content = Skip to content
nav-main = Main
nav-dashboard = Dashboard
nav-inbox = Inbox
nav-outbox = Outbox
nav-logout = Sign out
signed-in-as = Signed in as { $user } ({ $role })
role-officer = officer
role-supervisor = supervisor
role-operator = operator
role-auditor = auditor
lang-label = Language
lang-ar = العربية
lang-en = English
lang-fr = Français
lang-save = Change language
login-title = Sign in
login-user = User name
login-password = Password
login-totp = One-time code (6 digits)
login-submit = Sign in
login-failed = The user name, password or one-time code is wrong.
login-locked = Too many failed attempts. Try again later or ask an operator to reset your account.
logout-done = You are signed out.
dash-title = Dashboard
dash-node = Node { $agency }
dash-status = Condition
status-ok = working normally
status-degraded = degraded: not accepting new work
dash-reasons = Alarms
dash-no-alarms = No alarms.
dash-queues = Queues
dash-pending = { $count ->
    [one] { $count } message waiting for delivery
   *[other] { $count } messages waiting for delivery
}
dash-partners = Partners with queued messages
dash-partners-none = No partner has messages waiting.
dash-partner-failing = last attempt failed
dash-partner-trying = waiting for the next attempt
dash-checkpoint = Last checkpoint
dash-checkpoint-none = No checkpoint signed yet.
dash-checkpoint-size = { $size ->
    [one] { $size } entry
   *[other] { $size } entries
}
dash-cosigned = { $count ->
    [0] not cosigned by any witness
    [one] cosigned by { $count } witness of { $total } (quorum { $quorum })
   *[other] cosigned by { $count } witnesses of { $total } (quorum { $quorum })
}
inbox-title = Inbox
outbox-title = Outbox
col-id = Message
col-from = From
col-to = To
col-kind = Kind
col-subject = Subject
inbox-purged = (content deleted under the retention rules)
col-received = Received (UTC)
col-created = Created (UTC)
col-state = State
list-empty = No messages.
page-next = Next page
page-first = First page
err-forbidden-title = Not allowed
err-forbidden = Your role may not open this page.
err-csrf-title = Form expired
err-csrf = The form was not accepted (missing or old security token). Open the page again and retry.
err-not-found-title = Not found
err-not-found = There is no such page.
err-unavailable-title = Unavailable
err-unavailable = The node could not answer. Try again; if it persists, tell an operator.
