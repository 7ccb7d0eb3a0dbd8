"""Reports complete (issue 16): self-healed contacts, call details on usage events, rollups by case type and
campaign (filled from the events already stored), report progress, time zones and columns, schedules with a
delivery time and their last run, partner-wide system log exports (usage_report.customer_id nullable).

The format enums only gained members (a column comment): that alteration moves the migration state and changes no
table (Tortoise's SQLite editor would rebuild each table for it). Making `usage_report.customer_id` nullable is a
plain ALTER on PostgreSQL and a rebuild of `usage_report` on SQLite (no table references it).
"""

from decimal import Decimal

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.reports.models import ReportFormat, ReportStatus
from domain.usage.models import Direction, UnitType
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class StateOnly(ops.AlterField):
    """An AlterField that changes no table (see the module docstring)."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None


_BACKFILL_PG = """
INSERT INTO usage_rollup_detail (customer_id, day, unit_type, case_type, campaign_id, events, quantity, cost, credits,
                                 unpaid_cost)
SELECT customer_id, (occurred_at AT TIME ZONE 'UTC')::date, unit_type, case_type, 0, count(*), sum(quantity),
       sum(cost), sum(credits), sum(CASE WHEN paid THEN 0 ELSE cost END)
FROM usage_event GROUP BY 1, 2, 3, 4
"""


async def backfill_detail_rollups(apps, schema_editor) -> None:
    """The events stored before this migration, added up by day, unit type and case type (no campaign then)."""
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(_BACKFILL_PG)
        return
    # SQLite keeps decimals as text: add them up exactly in Python, a chunk of events at a time
    totals: dict[tuple, list] = {}
    last = 0
    while True:
        rows = await client.execute_query_dict(
            "SELECT id, customer_id, occurred_at, unit_type, case_type, quantity, cost, credits, paid "
            "FROM usage_event WHERE id > ? ORDER BY id LIMIT 5000",
            [last],
        )
        if not rows:
            break
        for r in rows:
            key = (r["customer_id"], str(r["occurred_at"])[:10], r["unit_type"], r["case_type"])
            acc = totals.setdefault(key, [0, Decimal(0), Decimal(0), Decimal(0), Decimal(0)])
            cost = Decimal(str(r["cost"]))
            acc[0] += 1
            acc[1] += Decimal(str(r["quantity"]))
            acc[2] += cost
            acc[3] += Decimal(str(r["credits"]))
            acc[4] += Decimal(0) if r["paid"] else cost
        last = rows[-1]["id"]
    for (customer_id, day, unit_type, case_type), acc in totals.items():
        await client.execute_query(
            "INSERT INTO usage_rollup_detail (customer_id, day, unit_type, case_type, campaign_id, events, quantity, "
            "cost, credits, unpaid_cost) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
            [customer_id, day, unit_type, case_type, acc[0], *(str(v) for v in acc[1:])],
        )


# Tortoise's SQLite editor rebuilds usage_report for the nullable customer_id and leaves its indexes behind
_REPORT_INDEXES = (
    'CREATE INDEX IF NOT EXISTS "idx_usage_repor_custome_3b5809" ON "usage_report" ("customer_id", "id")',
    'CREATE INDEX IF NOT EXISTS "idx_usage_repor_status_46ddd6" ON "usage_report" ("status", "expires_at")',
    'CREATE INDEX IF NOT EXISTS "idx_usage_repor_partner_601e27" ON "usage_report" ("partner_id", "status")',
)


async def restore_report_indexes(apps, schema_editor) -> None:
    if schema_editor.client.capabilities.dialect != "postgres":
        for statement in _REPORT_INDEXES:
            await schema_editor.client.execute_script(statement)


async def forget_detail_rollups(apps, schema_editor) -> None:
    return None  # the table is dropped by the reverse of its CreateModel


class Migration(migrations.Migration):
    dependencies = [('models', '0011_wide_money')]

    initial = False

    operations = [
        ops.CreateModel(
            name='HealedContact',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('external_id', fields.CharField(max_length=128)),
                ('old_number', fields.CharField(default='', max_length=32)),
                ('new_number', fields.CharField(max_length=32)),
                ('enriched_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('confirmed_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('call_id', fields.CharField(default='', max_length=64)),
                ('wrong_number', fields.BooleanField(default=False)),
                ('flagged_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'healed_contact', 'app': 'models', 'unique_together': (('customer_id', 'external_id', 'new_number'),), 'indexes': [Index(fields=['customer_id', 'confirmed_at'])], 'pk_attr': 'id', 'table_description': 'A phone number found by enrichment and confirmed by a successful call (seed 001): recorded once per'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsageRollupDetail',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('day', fields.DateField()),
                ('unit_type', fields.CharEnumField(description='VOICE_MINUTES: VOICE_MINUTES\nSMS_SEGMENTS: SMS_SEGMENTS\nCHAT_TURNS: CHAT_TURNS\nEMAILS: EMAILS\nPHONE_NUMBER_MONTHS: PHONE_NUMBER_MONTHS\nSTORAGE_MB: STORAGE_MB', enum_type=UnitType, max_length=24)),
                ('case_type', fields.CharField(default='', max_length=64)),
                ('campaign_id', fields.IntField(default=0)),
                ('events', fields.IntField(default=0)),
                ('quantity', fields.DecimalField(default=0, max_digits=38, decimal_places=6)),
                ('cost', fields.DecimalField(default=0, max_digits=38, decimal_places=6)),
                ('credits', fields.DecimalField(default=0, max_digits=38, decimal_places=6)),
                ('unpaid_cost', fields.DecimalField(default=0, max_digits=38, decimal_places=6)),
            ],
            options={'table': 'usage_rollup_detail', 'app': 'models', 'unique_together': (('customer_id', 'day', 'unit_type', 'case_type', 'campaign_id'),), 'pk_attr': 'id', 'table_description': 'Per customer, UTC day, unit type, case type and campaign (0: none): what summaries filtered by case type or'},
            bases=['Model'],
        ),
        ops.AlterModelOptions(
            name='ReportSchedule',
            options={'table': 'report_schedule', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id']), Index(fields=['next_run_at'])], 'pk_attr': 'id', 'table_description': 'A report emailed to recipients every day, week or month, covering the period that just ended, at its'},
        ),
        StateOnly(
            model_name='ReportSchedule',
            name='format',
            field=fields.CharEnumField(description='VOICE_CSV: VOICE_CSV\nSMS_CSV: SMS_CSV\nPDF: PDF\nPDF_BY_CASE_TYPE: PDF_BY_CASE_TYPE\nHEALED_CONTACTS_CSV: HEALED_CONTACTS_CSV\nAUDIT_CSV: AUDIT_CSV', enum_type=ReportFormat, max_length=20),
        ),
        ops.AddField(
            model_name='ReportSchedule',
            name='columns',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='ReportSchedule',
            name='delivery_time',
            field=fields.CharField(default='00:00', db_default='00:00', max_length=5),
        ),
        ops.AddField(
            model_name='ReportSchedule',
            name='enabled',
            field=fields.BooleanField(default=True, db_default=True),
        ),
        ops.AddField(
            model_name='ReportSchedule',
            name='last_report_id',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='ReportSchedule',
            name='last_run_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='ReportSchedule',
            name='last_status',
            field=fields.CharEnumField(null=True, description='QUEUED: QUEUED\nRUNNING: RUNNING\nREADY: READY\nFAILED: FAILED', enum_type=ReportStatus, max_length=8),
        ),
        ops.AddField(
            model_name='ReportSchedule',
            name='next_run_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='ReportSchedule',
            name='timezone',
            field=fields.CharField(default='UTC', db_default='UTC', max_length=64),
        ),
        ops.AddIndex(
            model_name='ReportSchedule',
            index=Index(fields=['next_run_at']),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='call_id',
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='campaign_id',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='direction',
            field=fields.CharEnumField(null=True, description='INBOUND: INBOUND\nOUTBOUND: OUTBOUND', enum_type=Direction, max_length=8),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='duration_seconds',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='from_number',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='segments',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='UsageEvent',
            name='to_number',
            field=fields.CharField(null=True, max_length=32),
        ),
        ops.AlterModelOptions(
            name='UsageReport',
            options={'table': 'usage_report', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id']), Index(fields=['status', 'expires_at']), Index(fields=['partner_id', 'status'])], 'pk_attr': 'id', 'table_description': "An export over inclusive days of `timezone` (a customer's usage or healed contacts, or the system log), and"},
        ),
        ops.AlterField(
            model_name='UsageReport',
            name='customer_id',
            field=fields.IntField(null=True),
        ),
        ops.RunPython(restore_report_indexes, ops.RunPython.noop),
        StateOnly(
            model_name='UsageReport',
            name='format',
            field=fields.CharEnumField(description='VOICE_CSV: VOICE_CSV\nSMS_CSV: SMS_CSV\nPDF: PDF\nPDF_BY_CASE_TYPE: PDF_BY_CASE_TYPE\nHEALED_CONTACTS_CSV: HEALED_CONTACTS_CSV\nAUDIT_CSV: AUDIT_CSV', enum_type=ReportFormat, max_length=20),
        ),
        ops.AddField(
            model_name='UsageReport',
            name='columns',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='UsageReport',
            name='filters',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='UsageReport',
            name='rows_done',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='UsageReport',
            name='timezone',
            field=fields.CharField(default='UTC', db_default='UTC', max_length=64),
        ),
        ops.RunPython(backfill_detail_rollups, forget_detail_rollups),
    ]
