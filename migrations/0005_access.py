from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.access.models import ApiTier
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_outbox_alerts_branding')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiKey',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('name', fields.CharField(max_length=100)),
                ('prefix', fields.CharField(max_length=40)),
                ('secret_hash', fields.CharField(max_length=64)),
                ('permissions', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('tier', fields.CharEnumField(default=ApiTier.STANDARD, description='STANDARD: STANDARD\nPREMIUM: PREMIUM\nENTERPRISE: ENTERPRISE', enum_type=ApiTier, max_length=12)),
                ('rate_limit_per_minute', fields.IntField(null=True)),
                ('created_by_user_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_key', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id'])], 'pk_attr': 'id', 'table_description': "A customer's API key. Only the SHA-256 of its secret is kept, the full key is shown once."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='EmbedToken',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('secret_hash', fields.CharField(max_length=64)),
                ('sections', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_by_user_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'embed_token', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id'])], 'pk_attr': 'id', 'table_description': 'A read-only token for embedding some dashboard sections of one customer. Only its hash is kept.'},
            bases=['Model'],
        ),
    ]
