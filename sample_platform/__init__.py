"""The sample betting platform: bets with idempotency keys, a double-entry ledger, settlement and an outbox."""
