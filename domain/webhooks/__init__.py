"""Outgoing webhooks (Standard Webhooks): endpoints partners and customers register, the messages produced from
the outbox after commit, and their signed deliveries with retries, fair between tenants."""
