from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.alerts.models import AlertKind, AlertStatus
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_metering')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Alert',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('kind', fields.CharEnumField(description='CAP_REACHED: CAP_REACHED\nPAYMENT_FAILED: PAYMENT_FAILED\nCAP_WARNING: CAP_WARNING\nLOW_BALANCE: LOW_BALANCE\nREFILL_PROCESSED: REFILL_PROCESSED\nLOW_CREDITS: LOW_CREDITS', enum_type=AlertKind, max_length=20)),
                ('crossing_key', fields.CharField(max_length=120)),
                ('values', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('recipients', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharEnumField(default=AlertStatus.PENDING, description='PENDING: PENDING\nSENT: SENT\nFAILED: FAILED', enum_type=AlertStatus, max_length=8)),
                ('attempts', fields.IntField(default=0)),
                ('last_error', fields.CharField(default='', max_length=500)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'alert', 'app': 'models', 'unique_together': (('customer_id', 'kind', 'crossing_key'),), 'indexes': [Index(fields=['customer_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AlertArm',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('kind', fields.CharEnumField(description='CAP_REACHED: CAP_REACHED\nPAYMENT_FAILED: PAYMENT_FAILED\nCAP_WARNING: CAP_WARNING\nLOW_BALANCE: LOW_BALANCE\nREFILL_PROCESSED: REFILL_PROCESSED\nLOW_CREDITS: LOW_CREDITS', enum_type=AlertKind, max_length=20)),
                ('armed', fields.BooleanField(default=True)),
                ('crossings', fields.IntField(default=0)),
            ],
            options={'table': 'alert_arm', 'app': 'models', 'unique_together': (('customer_id', 'kind'),), 'pk_attr': 'id', 'table_description': 'For threshold alerts that re-arm: `armed` until the value falls below, again once it recovers.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OutboxEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('topic', fields.CharField(max_length=64)),
                ('customer_id', fields.IntField(null=True)),
                ('partner_id', fields.IntField(null=True)),
                ('payload', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('published_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'outbox_event', 'app': 'models', 'indexes': [Index(fields=['published_at', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='AuditEvent',
            name='redacted_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Partner',
            name='logo_url',
            field=fields.CharField(null=True, max_length=500),
        ),
        ops.AddField(
            model_name='Partner',
            name='primary_color',
            field=fields.CharField(default='#2563EB', db_default='#2563EB', max_length=7),
        ),
        ops.AddField(
            model_name='Partner',
            name='secondary_color',
            field=fields.CharField(default='#0F172A', db_default='#0F172A', max_length=7),
        ),
        ops.AddField(
            model_name='RefillRequest',
            name='notified_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
