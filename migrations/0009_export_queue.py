from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0008_packages')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ReportSettings',
            fields=[
                ('customer_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('allowed_recipients', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'report_settings', 'app': 'models', 'pk_attr': 'customer_id', 'table_description': "Who else may receive a customer's scheduled reports, as set by its partner's admins."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='UsageReport',
            name='dispatched_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='UsageReport',
            name='heartbeat_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='UsageReport',
            index=Index(fields=['partner_id', 'status']),
        ),
    ]
