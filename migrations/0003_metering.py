from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.campaigns.models import CampaignStatus, PauseReason
from domain.usage.models import Funding, HoldStatus, UnitType
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

PARTITIONED_USAGE_EVENT = """
DROP TABLE usage_event;
CREATE TABLE usage_event (
    id BIGSERIAL NOT NULL,
    customer_id INT NOT NULL,
    partner_id INT NOT NULL,
    unit_type VARCHAR(24) NOT NULL,
    quantity DECIMAL(20,6) NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    case_type VARCHAR(64) NOT NULL DEFAULT '',
    idempotency_key VARCHAR(255) NOT NULL,
    hold_id BIGINT,
    unit_price DECIMAL(20,6) NOT NULL,
    cost DECIMAL(20,6) NOT NULL,
    credits DECIMAL(20,6) NOT NULL,
    funding VARCHAR(8) NOT NULL,
    paid BOOL NOT NULL,
    transfer_id BIGINT,
    metadata JSONB NOT NULL,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX idx_usage_event_customer_occurred ON usage_event (customer_id, occurred_at);
"""


async def partition_usage_events(apps, schema_editor) -> None:
    """On PostgreSQL usage_event is range-partitioned by month (partitions are created on demand and by the
    scheduler), so a year of usage stays cheap to query and old months are dropped whole."""
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(PARTITIONED_USAGE_EVENT)


async def unpartition_usage_events(apps, schema_editor) -> None:
    return None


class Migration(migrations.Migration):
    dependencies = [('models', '0002_ledger_billing')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Campaign',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField(db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('status', fields.CharEnumField(default=CampaignStatus.RUNNING, description='RUNNING: RUNNING\nPAUSED: PAUSED\nSTOPPED: STOPPED', enum_type=CampaignStatus, max_length=12)),
                ('pause_reason', fields.CharEnumField(null=True, description='CAP: CAP\nMANUAL: MANUAL', enum_type=PauseReason, max_length=12)),
                ('paused_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'campaign', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CapCrossing',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('month', fields.DateField()),
                ('cap', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('level', fields.IntField()),
                ('spent', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'cap_crossing', 'app': 'models', 'unique_together': (('customer_id', 'month', 'cap', 'level'),), 'pk_attr': 'id', 'table_description': 'A spending-cap threshold crossed, recorded once per customer, month, cap value and level (alerts read it).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FeatureToggles',
            fields=[
                ('customer_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('portal_enabled', fields.BooleanField(default=True)),
                ('advanced_analytics', fields.BooleanField(default=False)),
                ('detailed_call_analysis', fields.BooleanField(default=False)),
                ('action_point_analysis', fields.BooleanField(default=False)),
                ('api_access', fields.BooleanField(default=False)),
                ('api_keys_menu', fields.BooleanField(default=False)),
                ('ai_credits_enabled', fields.BooleanField(default=False)),
                ('low_credit_notifications', fields.BooleanField(default=False)),
                ('show_pricing', fields.BooleanField(default=True)),
                ('portal_sections', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('embed_urls_enabled', fields.BooleanField(default=False)),
                ('team_members_enabled', fields.BooleanField(default=True)),
                ('max_team_members', fields.IntField(default=5)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'feature_toggles', 'app': 'models', 'pk_attr': 'customer_id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MonthlySpend',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('month', fields.DateField()),
                ('spent', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
            ],
            options={'table': 'monthly_spend', 'app': 'models', 'unique_together': (('customer_id', 'month'),), 'pk_attr': 'id', 'table_description': "USD cost of a customer's usage in a calendar month (UTC), for the spending cap. The current month's row is"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PhoneNumber',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField(db_index=True)),
                ('number', fields.CharField(unique=True, max_length=24)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'phone_number', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RateCardEntry',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('partner_id', fields.IntField()),
                ('unit_type', fields.CharEnumField(description='VOICE_MINUTES: VOICE_MINUTES\nSMS_SEGMENTS: SMS_SEGMENTS\nCHAT_TURNS: CHAT_TURNS\nEMAILS: EMAILS\nPHONE_NUMBER_MONTHS: PHONE_NUMBER_MONTHS\nSTORAGE_MB: STORAGE_MB', enum_type=UnitType, max_length=24)),
                ('price', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('credit_price', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('effective_from', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('effective_to', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'rate_card_entry', 'app': 'models', 'indexes': [Index(fields=['partner_id', 'unit_type', 'effective_from'])], 'pk_attr': 'id', 'table_description': "A partner's price for a unit type from `effective_from` on (None until: current)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsageDedup',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('idempotency_key', fields.CharField(max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'usage_dedup', 'app': 'models', 'unique_together': (('customer_id', 'idempotency_key'),), 'pk_attr': 'id', 'table_description': 'Idempotency keys of accepted events. Events older than the acceptance window are refused anyway, so rows'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsageEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('unit_type', fields.CharEnumField(description='VOICE_MINUTES: VOICE_MINUTES\nSMS_SEGMENTS: SMS_SEGMENTS\nCHAT_TURNS: CHAT_TURNS\nEMAILS: EMAILS\nPHONE_NUMBER_MONTHS: PHONE_NUMBER_MONTHS\nSTORAGE_MB: STORAGE_MB', enum_type=UnitType, max_length=24)),
                ('quantity', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('occurred_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('recorded_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('case_type', fields.CharField(default='', max_length=64)),
                ('idempotency_key', fields.CharField(max_length=255)),
                ('hold_id', fields.BigIntField(null=True)),
                ('unit_price', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('cost', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('credits', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('funding', fields.CharEnumField(description='CREDITS: CREDITS\nWALLET: WALLET\nINVOICE: INVOICE', enum_type=Funding, max_length=8)),
                ('paid', fields.BooleanField()),
                ('transfer_id', fields.BigIntField(null=True)),
                ('metadata', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'usage_event', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'occurred_at'])], 'pk_attr': 'id', 'table_description': 'One metered event, rated at record time. On PostgreSQL the table is partitioned by month of occurred_at.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsageHold',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('unit_type', fields.CharEnumField(description='VOICE_MINUTES: VOICE_MINUTES\nSMS_SEGMENTS: SMS_SEGMENTS\nCHAT_TURNS: CHAT_TURNS\nEMAILS: EMAILS\nPHONE_NUMBER_MONTHS: PHONE_NUMBER_MONTHS\nSTORAGE_MB: STORAGE_MB', enum_type=UnitType, max_length=24)),
                ('estimated_quantity', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('amount', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('credits', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('funding', fields.CharEnumField(description='CREDITS: CREDITS\nWALLET: WALLET\nINVOICE: INVOICE', enum_type=Funding, max_length=8)),
                ('status', fields.CharEnumField(default=HoldStatus.ACTIVE, description='ACTIVE: ACTIVE\nCONSUMED: CONSUMED\nRELEASED: RELEASED\nEXPIRED: EXPIRED', enum_type=HoldStatus, max_length=10)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'usage_hold', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'status', 'expires_at'])], 'pk_attr': 'id', 'table_description': 'Pre-authorised cost that counts against the cap and the balance until consumed, released or expired.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UsageRollup',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('day', fields.DateField()),
                ('unit_type', fields.CharEnumField(description='VOICE_MINUTES: VOICE_MINUTES\nSMS_SEGMENTS: SMS_SEGMENTS\nCHAT_TURNS: CHAT_TURNS\nEMAILS: EMAILS\nPHONE_NUMBER_MONTHS: PHONE_NUMBER_MONTHS\nSTORAGE_MB: STORAGE_MB', enum_type=UnitType, max_length=24)),
                ('events', fields.IntField(default=0)),
                ('quantity', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
                ('cost', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
                ('credits', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
                ('unpaid_cost', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
            ],
            options={'table': 'usage_rollup', 'app': 'models', 'unique_together': (('customer_id', 'day', 'unit_type'),), 'pk_attr': 'id', 'table_description': 'Per customer, UTC day and unit type: what the dashboard and summaries read.'},
            bases=['Model'],
        ),
        ops.RunPython(partition_usage_events, unpartition_usage_events),
    ]
