"""Audit events are appended without their place in the chain; the sequencer links them after commit.

`seq`, `prev_hash` and `hash` become nullable (null: not sequenced yet). PostgreSQL drops the NOT NULL constraints
in place. Tortoise's SQLite editor would rebuild `audit_event` without its UNIQUE (chain, seq) constraint and its
indexes, so on SQLite the table is rebuilt here by hand with all of them (no table references it). A partial index
over the unsequenced events lets the sequencer find its backlog without reading the log.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

UNSEQUENCED_INDEX = "CREATE INDEX IF NOT EXISTS audit_event_unsequenced ON audit_event (chain, id) WHERE seq IS NULL"

_COLUMNS = (
    "id, chain, seq, type, action, actor_user_id, actor_api_key_id, actor_label, partner_id, customer_id, "
    "object_type, object_id, details, ip, user_agent, request_id, created_at, personal_digest, prev_hash, hash, "
    "redacted_at"
)
_INDEXES = (
    'CREATE INDEX "idx_audit_event_partner_2c688f" ON "audit_event" ("partner_id", "id");'
    'CREATE INDEX "idx_audit_event_custome_c81683" ON "audit_event" ("customer_id", "id");'
    'CREATE INDEX "idx_audit_event_actor_u_b25ec9" ON "audit_event" ("actor_user_id", "id");'
    'CREATE INDEX "idx_audit_event_type_252323" ON "audit_event" ("type", "id");'
)


def _table(name: str, nullable: bool) -> str:
    null = "" if nullable else " NOT NULL"
    return (
        f'CREATE TABLE "{name}" ("id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "chain" VARCHAR(40) NOT NULL, '
        f'"seq" BIGINT{null}, "type" VARCHAR(16) NOT NULL, "action" VARCHAR(64) NOT NULL, "actor_user_id" INT, '
        '"actor_api_key_id" INT, "actor_label" VARCHAR(254), "partner_id" INT, "customer_id" INT, '
        '"object_type" VARCHAR(40) NOT NULL, "object_id" VARCHAR(64) NOT NULL, "details" JSON NOT NULL, '
        '"ip" VARCHAR(64), "user_agent" VARCHAR(300), "request_id" VARCHAR(64) NOT NULL, '
        '"created_at" TIMESTAMP NOT NULL, "personal_digest" VARCHAR(64) NOT NULL, '
        f'"prev_hash" VARCHAR(64){null}, "hash" VARCHAR(64){null}, "redacted_at" TIMESTAMP, '
        'CONSTRAINT "uid_audit_event_chain_e7bc09" UNIQUE ("chain", "seq"));'
    )


async def _rebuild_sqlite(schema_editor, nullable: bool) -> None:
    await schema_editor.client.execute_script(
        _table("audit_event_new", nullable)
        + f"INSERT INTO audit_event_new ({_COLUMNS}) SELECT {_COLUMNS} FROM audit_event;"
        + "DROP TABLE audit_event;"
        + "ALTER TABLE audit_event_new RENAME TO audit_event;"
        + _INDEXES
    )


async def forward(apps, schema_editor) -> None:
    if schema_editor.client.capabilities.dialect == "sqlite":
        await _rebuild_sqlite(schema_editor, nullable=True)
    await schema_editor.client.execute_script(UNSEQUENCED_INDEX)


async def backward(apps, schema_editor) -> None:
    await schema_editor.client.execute_script("DROP INDEX IF EXISTS audit_event_unsequenced")
    if schema_editor.client.capabilities.dialect == "sqlite":
        await _rebuild_sqlite(schema_editor, nullable=False)


class OnPostgres(ops.AlterField):
    """AlterField whose database step runs on PostgreSQL only (SQLite: `forward` rebuilds the table)."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor is not None and state_editor.client.capabilities.dialect == "postgres":
            await super().database_forward(app_label, old_state, new_state, state_editor)

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor is not None and state_editor.client.capabilities.dialect == "postgres":
            await super().database_backward(app_label, old_state, new_state, state_editor)


class Migration(migrations.Migration):
    dependencies = [("models", "0015_partner_config")]

    initial = False

    operations = [
        OnPostgres(model_name="AuditEvent", name="hash", field=fields.CharField(null=True, max_length=64)),
        OnPostgres(model_name="AuditEvent", name="prev_hash", field=fields.CharField(null=True, max_length=64)),
        OnPostgres(model_name="AuditEvent", name="seq", field=fields.BigIntField(null=True)),
        ops.RunPython(forward, backward),
    ]
