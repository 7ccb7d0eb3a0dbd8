from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.invoices.models import InvoiceStatus
from domain.ledger.models import TransferKind
from domain.payments.models import PaymentPurpose, PaymentStatus
from domain.webhooks.models import DeliveryState, EndpointStatus
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

"""Outgoing webhooks (endpoints, messages, deliveries, attempts), card payments (provider customers, payments,
provider events handled), monthly invoices and their per-partner counter, and `auto_top_up` on billing preferences.

`ledger_transfer.kind` gains INVOICE_PAYMENT: the column (VARCHAR(24)) does not change, only the migration state's
list of choices, so the database step is skipped (Tortoise's SQLite editor would rebuild the referenced table).
"""


class StateOnly(ops.AlterField):
    """AlterField that moves the migration state only (see the module docstring)."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None


class Migration(migrations.Migration):
    dependencies = [('models', '0012_reports_complete')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Invoice',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('partner_id', fields.IntField()),
                ('customer_id', fields.IntField()),
                ('period_start', fields.DateField()),
                ('period_end', fields.DateField()),
                ('sequence', fields.IntField()),
                ('number', fields.CharField(max_length=40)),
                ('status', fields.CharEnumField(description='DRAFT: DRAFT\nOPEN: OPEN\nPAID: PAID\nVOID: VOID', enum_type=InvoiceStatus, max_length=8)),
                ('currency', fields.CharField(default='USD', max_length=3)),
                ('lines', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('subtotal', fields.DecimalField(max_digits=38, decimal_places=6)),
                ('total', fields.DecimalField(max_digits=38, decimal_places=2)),
                ('seller', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('bill_to', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('usage_cutoff', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('provider', fields.CharField(default='manual', max_length=20)),
                ('external_id', fields.CharField(null=True, unique=True, max_length=100)),
                ('payment_reference', fields.CharField(default='', max_length=200)),
                ('finalized_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('emailed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('paid_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('voided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'invoice', 'app': 'models', 'unique_together': (('customer_id', 'period_start'), ('partner_id', 'sequence')), 'indexes': [Index(fields=['customer_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='InvoiceCounter',
            fields=[
                ('partner_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('last_sequence', fields.IntField(default=0)),
            ],
            options={'table': 'invoice_counter', 'app': 'models', 'pk_attr': 'partner_id', 'table_description': 'The last invoice number of a partner, locked in the transaction that numbers an invoice.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Payment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('provider', fields.CharField(max_length=20)),
                ('purpose', fields.CharEnumField(description='WALLET_TOP_UP: WALLET_TOP_UP\nAUTO_TOP_UP: AUTO_TOP_UP\nINVOICE: INVOICE', enum_type=PaymentPurpose, max_length=16)),
                ('status', fields.CharEnumField(default=PaymentStatus.PENDING, description='PENDING: PENDING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED', enum_type=PaymentStatus, max_length=10)),
                ('amount', fields.DecimalField(max_digits=20, decimal_places=6)),
                ('currency', fields.CharField(default='USD', max_length=3)),
                ('external_id', fields.CharField(null=True, unique=True, max_length=100)),
                ('checkout_url', fields.CharField(null=True, max_length=2000)),
                ('refill_request_id', fields.BigIntField(null=True, unique=True)),
                ('invoice_id', fields.BigIntField(null=True)),
                ('transfer_id', fields.BigIntField(null=True)),
                ('failure_reason', fields.CharField(default='', max_length=300)),
                ('created_by_user_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'payment', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ProviderCustomer',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('provider', fields.CharField(max_length=20)),
                ('external_id', fields.CharField(max_length=100)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'provider_customer', 'app': 'models', 'unique_together': (('customer_id', 'provider'),), 'pk_attr': 'id', 'table_description': 'Our customer at the provider (a Stripe customer), created on first use and remembered.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ProviderEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('provider', fields.CharField(max_length=20)),
                ('external_id', fields.CharField(max_length=100)),
                ('type', fields.CharField(max_length=100)),
                ('outcome', fields.CharField(default='', max_length=100)),
                ('received_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'provider_event', 'app': 'models', 'unique_together': (('provider', 'external_id'),), 'pk_attr': 'id', 'table_description': 'A provider event handled: inserted in the transaction of its effect, so a replayed or concurrent duplicate'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookAttempt',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('delivery_id', fields.BigIntField()),
                ('attempt', fields.IntField()),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('request_headers', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('response_status', fields.IntField(null=True)),
                ('response_body', fields.CharField(default='', max_length=1000)),
                ('latency_ms', fields.IntField(null=True)),
                ('error', fields.CharField(default='', max_length=500)),
            ],
            options={'table': 'webhook_attempt', 'app': 'models', 'indexes': [Index(fields=['delivery_id', 'attempt'])], 'pk_attr': 'id', 'table_description': 'One HTTP request of a delivery and what came of it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('endpoint_id', fields.IntField()),
                ('message_id', fields.BigIntField()),
                ('partner_id', fields.IntField()),
                ('customer_id', fields.IntField(null=True)),
                ('event_type', fields.CharField(max_length=40)),
                ('state', fields.CharEnumField(default=DeliveryState.WAITING, description='WAITING: WAITING\nDISPATCHED: DISPATCHED\nSENDING: SENDING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED', enum_type=DeliveryState, max_length=10)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('busy_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('schedule_started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('response_status', fields.IntField(null=True)),
                ('response_body', fields.CharField(default='', max_length=1000)),
                ('latency_ms', fields.IntField(null=True)),
                ('last_error', fields.CharField(default='', max_length=500)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'webhook_delivery', 'app': 'models', 'unique_together': (('endpoint_id', 'message_id'),), 'indexes': [Index(fields=['endpoint_id', 'state', 'next_attempt_at']), Index(fields=['state', 'next_attempt_at']), Index(fields=['endpoint_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookEndpoint',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('partner_id', fields.IntField()),
                ('customer_id', fields.IntField(null=True)),
                ('url', fields.CharField(max_length=2000)),
                ('description', fields.CharField(default='', max_length=500)),
                ('event_types', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('secret', fields.CharField(max_length=100)),
                ('previous_secret', fields.CharField(null=True, max_length=100)),
                ('previous_secret_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('status', fields.CharEnumField(default=EndpointStatus.ENABLED, description='ENABLED: ENABLED\nDISABLED: DISABLED', enum_type=EndpointStatus, max_length=10)),
                ('disabled_reason', fields.CharField(default='', max_length=200)),
                ('failing_since', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('disabled_notice_sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_by_user_id', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'webhook_endpoint', 'app': 'models', 'indexes': [Index(fields=['partner_id', 'status']), Index(fields=['customer_id', 'status'])], 'pk_attr': 'id', 'table_description': "A receiver: a partner's (customer_id None: every customer of the partner) or one customer's own."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookMessage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('msg_id', fields.CharField(unique=True, max_length=40)),
                ('dedupe_key', fields.CharField(unique=True, max_length=200)),
                ('event_type', fields.CharField(max_length=40)),
                ('partner_id', fields.IntField()),
                ('customer_id', fields.IntField(null=True)),
                ('body', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'webhook_message', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One event as sent: `msg_id` is the `webhook-id` header, `body` the exact JSON bytes signed.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='BillingPreferences',
            name='auto_top_up',
            field=fields.BooleanField(default=False, db_default=False),
        ),
        StateOnly(
            model_name='Transfer',
            name='kind',
            field=fields.CharEnumField(description='PARTNER_CREDITS_ADD: PARTNER_CREDITS_ADD\nCREDITS_RECHARGE: CREDITS_RECHARGE\nCREDITS_RECLAIM: CREDITS_RECLAIM\nCREDITS_GRANT: CREDITS_GRANT\nCREDITS_EXPIRY: CREDITS_EXPIRY\nWALLET_REFILL: WALLET_REFILL\nUSAGE_CHARGE: USAGE_CHARGE\nINVOICE_PAYMENT: INVOICE_PAYMENT\nADJUSTMENT: ADJUSTMENT', enum_type=TransferKind, max_length=24),
        ),
    ]
