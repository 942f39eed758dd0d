"""Domain code that more than one service needs: access (keys, principals, the policy), the
assessment workflow's transition table, the audit trail, recompute requests (the outbox and
runs), webhooks and regions. It imports no service; the services import it."""
