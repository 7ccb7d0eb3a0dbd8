from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.accounts.models import Role, Theme
from domain.audit.models import AuditEventType
from domain.customers.models import CustomerStatus, ServiceState
from domain.partners.models import PartnerStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='AuditChain',
            fields=[
                ('key', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=40)),
                ('seq', fields.BigIntField(default=0)),
                ('last_hash', fields.CharField(max_length=64)),
            ],
            options={'table': 'audit_chain', 'app': 'models', 'pk_attr': 'key'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('chain', fields.CharField(max_length=40)),
                ('seq', fields.BigIntField()),
                ('type', fields.CharEnumField(description='LOGIN: LOGIN\nLOGIN_FAILED: LOGIN_FAILED\nLOGOUT: LOGOUT\nDATA_CHANGE: DATA_CHANGE\nSECURITY: SECURITY\nAPI_CALL: API_CALL\nINTEGRATION: INTEGRATION\nEXPORT: EXPORT\nBILLING: BILLING', enum_type=AuditEventType, max_length=16)),
                ('action', fields.CharField(max_length=64)),
                ('actor_user_id', fields.IntField(null=True)),
                ('actor_api_key_id', fields.IntField(null=True)),
                ('actor_label', fields.CharField(null=True, max_length=254)),
                ('partner_id', fields.IntField(null=True)),
                ('customer_id', fields.IntField(null=True)),
                ('object_type', fields.CharField(default='', max_length=40)),
                ('object_id', fields.CharField(default='', max_length=64)),
                ('details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('ip', fields.CharField(null=True, max_length=64)),
                ('user_agent', fields.CharField(null=True, max_length=300)),
                ('request_id', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('personal_digest', fields.CharField(max_length=64)),
                ('prev_hash', fields.CharField(max_length=64)),
                ('hash', fields.CharField(max_length=64)),
            ],
            options={'table': 'audit_event', 'app': 'models', 'unique_together': (('chain', 'seq'),), 'indexes': [Index(fields=['partner_id', 'id']), Index(fields=['customer_id', 'id']), Index(fields=['actor_user_id', 'id']), Index(fields=['type', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Partner',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('status', fields.CharEnumField(default=PartnerStatus.ACTIVE, description='ACTIVE: ACTIVE\nDISABLED: DISABLED', enum_type=PartnerStatus, max_length=16)),
                ('sender_email', fields.CharField(null=True, max_length=254)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'partner', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Customer',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', db_constraint=True, to_field='id', related_name='customers', on_delete=OnDelete.RESTRICT)),
                ('name', fields.CharField(max_length=200)),
                ('status', fields.CharEnumField(default=CustomerStatus.ACTIVE, db_index=True, description='ACTIVE: ACTIVE\nDISABLED: DISABLED', enum_type=CustomerStatus, max_length=16)),
                ('service_state', fields.CharEnumField(default=ServiceState.ACTIVE, description='ACTIVE: ACTIVE\nPAUSED_CAP: PAUSED_CAP', enum_type=ServiceState, max_length=16)),
                ('disabled_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('phone', fields.CharField(default='', max_length=32)),
                ('country', fields.CharField(default='', max_length=100)),
                ('state', fields.CharField(default='', max_length=100)),
                ('city', fields.CharField(default='', max_length=100)),
                ('zip', fields.CharField(default='', max_length=20)),
                ('address1', fields.CharField(default='', max_length=200)),
                ('address2', fields.CharField(default='', max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'customer', 'app': 'models', 'indexes': [Index(fields=['partner_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('username', fields.CharField(max_length=50)),
                ('username_key', fields.CharField(unique=True, max_length=50)),
                ('email', fields.CharField(max_length=254)),
                ('email_key', fields.CharField(unique=True, max_length=254)),
                ('first_name', fields.CharField(default='', max_length=100)),
                ('last_name', fields.CharField(default='', max_length=100)),
                ('display_name', fields.CharField(default='', max_length=200)),
                ('phone', fields.CharField(default='', max_length=32)),
                ('job_title', fields.CharField(default='', max_length=100)),
                ('password_hash', fields.CharField(max_length=255)),
                ('is_active', fields.BooleanField(default=True)),
                ('theme', fields.CharEnumField(default=Theme.SYSTEM, description='LIGHT: LIGHT\nDARK: DARK\nSYSTEM: SYSTEM', enum_type=Theme, max_length=8)),
                ('notification_preferences', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('totp_secret', fields.CharField(null=True, max_length=64)),
                ('totp_enabled', fields.BooleanField(default=False)),
                ('failed_logins', fields.IntField(default=0)),
                ('failed_window_started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('locked_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'app_user', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Membership',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharEnumField(description='PLATFORM_ADMIN: PLATFORM_ADMIN\nPARTNER_ADMIN: PARTNER_ADMIN\nPARTNER_MEMBER: PARTNER_MEMBER\nCUSTOMER_ADMIN: CUSTOMER_ADMIN\nCUSTOMER_MEMBER: CUSTOMER_MEMBER', enum_type=Role, max_length=20)),
                ('partner', fields.ForeignKeyField('models.Partner', source_field='partner_id', null=True, db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('customer', fields.ForeignKeyField('models.Customer', source_field='customer_id', null=True, db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('org_key', fields.CharField(max_length=40)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'membership', 'app': 'models', 'unique_together': (('user_id', 'org_key'),), 'indexes': [Index(fields=['customer_id', 'user_id']), Index(fields=['partner_id', 'user_id'])], 'pk_attr': 'id', 'table_description': "A user's role in one organization: the platform (no partner/customer), a partner or a customer."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Session',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('membership', fields.ForeignKeyField('models.Membership', source_field='membership_id', null=True, db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ip', fields.CharField(default='', max_length=64)),
                ('user_agent', fields.CharField(default='', max_length=300)),
            ],
            options={'table': 'session', 'app': 'models', 'indexes': [Index(fields=['user_id', 'revoked_at'])], 'pk_attr': 'id', 'table_description': 'An opaque bearer token (only its SHA-256 is stored) acting in one organization.'},
            bases=['Model'],
        ),
    ]
