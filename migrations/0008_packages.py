from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.access.models import ApiTier
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0007_personal')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Package',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('partner_id', fields.IntField()),
                ('title', fields.CharField(max_length=200)),
                ('description', fields.TextField(default='', unique=False)),
                ('features', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('max_team_members', fields.IntField(default=5)),
                ('storage_mb', fields.IntField(default=0)),
                ('api_rate_tier', fields.CharEnumField(default=ApiTier.STANDARD, description='STANDARD: STANDARD\nPREMIUM: PREMIUM\nENTERPRISE: ENTERPRISE', enum_type=ApiTier, max_length=12)),
                ('monthly_spending_cap', fields.DecimalField(null=True, max_digits=20, decimal_places=6)),
                ('ai_credits', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
                ('expiry_days', fields.IntField(null=True)),
                ('restricted_emails', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('version', fields.IntField(default=1)),
                ('archived', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'package', 'app': 'models', 'indexes': [Index(fields=['partner_id', 'id'])], 'pk_attr': 'id', 'table_description': 'A partner\'s plan. Every change increments `version`, and assignments keep the version they got.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PackageAssignment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('package_id', fields.IntField()),
                ('current_customer_id', fields.IntField(null=True, unique=True)),
                ('version', fields.IntField()),
                ('snapshot', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('assigned_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('assigned_by_user_id', fields.IntField(null=True)),
            ],
            options={'table': 'package_assignment', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id']), Index(fields=['package_id', 'current_customer_id'])], 'pk_attr': 'id', 'table_description': "One assignment of a package to a customer, kept as history (the current one has `current_customer_id`)."},
            bases=['Model'],
        ),
    ]
