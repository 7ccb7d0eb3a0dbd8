"""The transactional outbox: domain changes emit events in the same transaction; a relay publishes them after
commit to jobs and live subscriptions (no job or push for a rolled-back change, none lost for a committed one)."""
