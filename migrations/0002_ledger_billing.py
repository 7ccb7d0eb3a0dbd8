from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.billing.models import BillingMode, GrantSource, RefillRequestStatus
from domain.ledger.models import AccountKind, Currency, IdempotencyStatus, TransferKind
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

NON_NEGATIVE_CHECK = (
    "ALTER TABLE ledger_account ADD CONSTRAINT ledger_account_non_negative CHECK (NOT non_negative OR balance >= 0)"
)


async def add_non_negative_check(apps, schema_editor) -> None:
    """Last line of defence behind the posting code; SQLite cannot add constraints to an existing table."""
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(NON_NEGATIVE_CHECK)


async def drop_non_negative_check(apps, schema_editor) -> None:
    if schema_editor.client.capabilities.dialect == "postgres":
        await schema_editor.client.execute_script(
            "ALTER TABLE ledger_account DROP CONSTRAINT IF EXISTS ledger_account_non_negative"
        )


class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='BillingPreferences',
            fields=[
                ('customer_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('billing_mode', fields.CharEnumField(default=BillingMode.MONTHLY_INVOICE, description='MONTHLY_INVOICE: MONTHLY_INVOICE\nREFILLABLE_WALLET: REFILLABLE_WALLET', enum_type=BillingMode, max_length=20)),
                ('primary_contact_user_id', fields.IntField(null=True)),
                ('monthly_spending_cap', fields.DecimalField(null=True, max_digits=20, decimal_places=6)),
                ('cap_alert_at_80', fields.BooleanField(default=True)),
                ('refill_amount', fields.DecimalField(null=True, max_digits=20, decimal_places=6)),
                ('refill_threshold', fields.DecimalField(null=True, max_digits=20, decimal_places=6)),
                ('low_balance_alert', fields.BooleanField(default=True)),
                ('refill_processed_alert', fields.BooleanField(default=True)),
                ('low_credit_threshold', fields.DecimalField(null=True, max_digits=20, decimal_places=6)),
                ('extra_alert_recipients', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'billing_preferences', 'app': 'models', 'pk_attr': 'customer_id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CreditGrant',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('source', fields.CharEnumField(description='RECHARGE: RECHARGE\nPACKAGE: PACKAGE\nADJUSTMENT: ADJUSTMENT', enum_type=GrantSource, max_length=12)),
                ('amount', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('remaining', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('transfer_id', fields.BigIntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'credit_grant', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'expires_at', 'id'])], 'pk_attr': 'id', 'table_description': 'A lot of credits with an optional expiry. Usage burns the earliest expiry first, then the oldest.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CustomerCredits',
            fields=[
                ('customer_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('assigned', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
                ('used', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
                ('expired', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
            ],
            options={'table': 'customer_credits', 'app': 'models', 'pk_attr': 'customer_id', 'table_description': 'Counters behind the available, used and assigned meter. The balance itself is the ledger account.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='IdempotencyRecord',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('scope_key', fields.CharField(unique=True, max_length=400)),
                ('operation', fields.CharField(max_length=64)),
                ('request_hash', fields.CharField(max_length=64)),
                ('claim', fields.CharField(max_length=32)),
                ('status', fields.CharEnumField(default=IdempotencyStatus.PENDING, description='PENDING: PENDING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED', enum_type=IdempotencyStatus, max_length=12)),
                ('response', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'idempotency_record', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One per (scope, key), inserted in the transaction of the effect. The first outcome is replayed forever.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LedgerAccount',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('key', fields.CharField(unique=True, max_length=80)),
                ('kind', fields.CharEnumField(description='PARTNER_POOL: PARTNER_POOL\nCUSTOMER_CREDITS: CUSTOMER_CREDITS\nCUSTOMER_WALLET: CUSTOMER_WALLET\nCUSTOMER_INVOICE: CUSTOMER_INVOICE\nREVENUE: REVENUE\nEXTERNAL_FUNDING: EXTERNAL_FUNDING\nEXPIRED: EXPIRED', enum_type=AccountKind, max_length=24)),
                ('currency', fields.CharEnumField(description='CREDITS: CREDITS\nUSD: USD', enum_type=Currency, max_length=8)),
                ('partner_id', fields.IntField(null=True)),
                ('customer_id', fields.IntField(null=True)),
                ('non_negative', fields.BooleanField(default=False)),
                ('balance', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'ledger_account', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'kind']), Index(fields=['partner_id', 'kind'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PartnerPool',
            fields=[
                ('partner_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('assigned', fields.DecimalField(default=0, max_digits=20, decimal_places=6)),
            ],
            options={'table': 'partner_pool', 'app': 'models', 'pk_attr': 'partner_id', 'table_description': 'Credits a partner has handed to its customers, net of reclaims.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RefillRequest',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField(db_index=True)),
                ('open_customer_id', fields.IntField(null=True, unique=True)),
                ('status', fields.CharEnumField(default=RefillRequestStatus.OPEN, description='OPEN: OPEN\nCLOSED: CLOSED', enum_type=RefillRequestStatus, max_length=8)),
                ('requested_amount', fields.DecimalField(null=True, max_digits=20, decimal_places=6)),
                ('balance_at_open', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('threshold', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('closed_by_transfer_id', fields.BigIntField(null=True)),
            ],
            options={'table': 'refill_request', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The internal refill-needed workflow: at most one OPEN per customer (enforced by `open_customer_id`).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Transfer',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('debit_account', fields.ForeignKeyField('models.LedgerAccount', source_field='debit_account_id', db_constraint=True, to_field='id', related_name='debits', on_delete=OnDelete.RESTRICT)),
                ('credit_account', fields.ForeignKeyField('models.LedgerAccount', source_field='credit_account_id', db_constraint=True, to_field='id', related_name='credits', on_delete=OnDelete.RESTRICT)),
                ('amount', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('currency', fields.CharEnumField(description='CREDITS: CREDITS\nUSD: USD', enum_type=Currency, max_length=8)),
                ('kind', fields.CharEnumField(description='PARTNER_CREDITS_ADD: PARTNER_CREDITS_ADD\nCREDITS_RECHARGE: CREDITS_RECHARGE\nCREDITS_RECLAIM: CREDITS_RECLAIM\nCREDITS_GRANT: CREDITS_GRANT\nCREDITS_EXPIRY: CREDITS_EXPIRY\nWALLET_REFILL: WALLET_REFILL\nUSAGE_CHARGE: USAGE_CHARGE\nADJUSTMENT: ADJUSTMENT', enum_type=TransferKind, max_length=24)),
                ('debit_balance_after', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('credit_balance_after', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('idempotency_key', fields.CharField(null=True, unique=True, max_length=300)),
                ('metadata', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'ledger_transfer', 'app': 'models', 'indexes': [Index(fields=['debit_account_id', 'id']), Index(fields=['credit_account_id', 'id']), Index(fields=['kind', 'created_at'])], 'pk_attr': 'id', 'table_description': 'Immutable. `debit_balance_after` / `credit_balance_after` snapshot both sides at posting time.'},
            bases=['Model'],
        ),
        ops.RunPython(add_non_negative_check, drop_non_negative_check),
    ]
