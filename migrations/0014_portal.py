from tortoise import migrations
from tortoise.migrations import operations as ops
from domain.accounts.models import Role
from domain.portal.models import CaseVisibility
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0013_integrations')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CustomerBranding',
            fields=[
                ('customer_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('logo_url', fields.CharField(null=True, max_length=500)),
                ('primary_color', fields.CharField(null=True, max_length=7)),
                ('secondary_color', fields.CharField(null=True, max_length=7)),
                ('welcome_message', fields.TextField(null=True, unique=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'customer_branding', 'app': 'models', 'pk_attr': 'customer_id', 'table_description': "A customer's own look: a null field shows the partner's."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DemoState',
            fields=[
                ('customer_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('enabled', fields.BooleanField(default=False)),
                ('epoch', fields.IntField(default=0)),
                ('last_reset_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'demo_state', 'app': 'models', 'pk_attr': 'customer_id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Invitation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('partner_id', fields.IntField()),
                ('customer_id', fields.IntField(null=True)),
                ('email', fields.CharField(max_length=254)),
                ('email_key', fields.CharField(max_length=254)),
                ('role', fields.CharEnumField(description='PLATFORM_ADMIN: PLATFORM_ADMIN\nPARTNER_ADMIN: PARTNER_ADMIN\nPARTNER_MEMBER: PARTNER_MEMBER\nCUSTOMER_ADMIN: CUSTOMER_ADMIN\nCUSTOMER_MEMBER: CUSTOMER_MEMBER', enum_type=Role, max_length=20)),
                ('nonce', fields.CharField(max_length=64)),
                ('invited_by_user_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('sent_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('accepted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('accepted_user_id', fields.IntField(null=True)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('open_key', fields.CharField(null=True, unique=True, max_length=300)),
            ],
            options={'table': 'invitation', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id']), Index(fields=['partner_id', 'id'])], 'pk_attr': 'id', 'table_description': 'An emailed invitation, holding a seat while it is pending.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PartnerDomain',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('partner_id', fields.IntField()),
                ('domain', fields.CharField(max_length=253)),
                ('position', fields.IntField(default=0)),
                ('verification_token', fields.CharField(max_length=64)),
                ('verified_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_checked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'partner_domain', 'app': 'models', 'unique_together': (('partner_id', 'domain'),), 'indexes': [Index(fields=['partner_id', 'position']), Index(fields=['domain', 'verified_at'])], 'pk_attr': 'id', 'table_description': "A custom domain of a partner: its clients' portal, links in its emails, browser origins."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PortalSettings',
            fields=[
                ('customer_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('auto_invite', fields.BooleanField(default=False)),
                ('chat_enabled', fields.BooleanField(default=True)),
                ('document_upload', fields.BooleanField(default=True)),
                ('case_visibility', fields.CharEnumField(default=CaseVisibility.ALL, description='ALL: ALL\nASSIGNED: ASSIGNED\nNONE: NONE', enum_type=CaseVisibility, max_length=12)),
                ('invited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'portal_settings', 'app': 'models', 'pk_attr': 'customer_id', 'table_description': 'Stored once changed: customers never configured show the defaults (an unsaved row).'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Partner',
            name='sender_name',
            field=fields.CharField(null=True, max_length=100),
        ),
        ops.AddField(
            model_name='Partner',
            name='welcome_message',
            field=fields.TextField(default='', db_default='', unique=False),
        ),
    ]
