"""`usage_dedup` is keyed by what it deduplicates, (customer_id, idempotency_key), on PostgreSQL.

Every accepted usage event inserts a row here; the row's serial `id` primary key was a second index to maintain
per event (~0.6 µs of PostgreSQL per event of a 1,000-event batch, `bench/usage.py`), and nothing reads by it. The
primary key constraint goes; the existing unique constraint on (customer_id, idempotency_key) is the table's key
(and its replica identity, for logical replication). `id` stays a column filled by its sequence, so the ORM model
(which must name one primary-key field) is unchanged. Dropping a constraint is instant: no index is built. SQLite
keeps its schema (no hot path runs there).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

NATURAL_KEY = "uid_usage_dedup_custome_8c35d0"  # UNIQUE (customer_id, idempotency_key), from 0003_metering


async def forward(apps, schema_editor) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(
            "ALTER TABLE usage_dedup DROP CONSTRAINT IF EXISTS usage_dedup_pkey; "
            f"ALTER TABLE usage_dedup REPLICA IDENTITY USING INDEX {NATURAL_KEY};"
        )


async def backward(apps, schema_editor) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(
            "ALTER TABLE usage_dedup REPLICA IDENTITY DEFAULT; "
            "ALTER TABLE usage_dedup ADD CONSTRAINT usage_dedup_pkey PRIMARY KEY (id);"
        )


class Migration(migrations.Migration):
    dependencies = [("models", "0016_audit_sequencer")]

    initial = False

    operations = [ops.RunPython(forward, backward)]
