"""Issue 15 (what a partner configures per customer): storage pools and allocations, package expiry notices, the
package's user count (was `max_team_members`), how an assignment ended, the partner's USD account with the
platform (storage purchases), and whether a report shows prices.

Customers without stored feature toggles read the model defaults, which now give nothing a package gives (no portal,
no team beyond the first admin). So that existing customers keep what they had, each of them gets a row holding the
old defaults (portal and team members on, 5 seats, pricing shown) before the defaults change.

The two enum columns that gain values (`ledger_account.kind`, `ledger_transfer.kind`) change only their description:
Tortoise's SQLite editor would rebuild both tables (the ledger, referenced by transfers) for that, so the database
step is skipped and only the migration state moves.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.ledger.models import AccountKind, TransferKind
from domain.packages.models import EndReason, NoticeAudience, NoticeKind, NoticeStatus
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index


class DescriptionOnly(ops.AlterField):
    """AlterField of a column whose database type is unchanged (see the module docstring): state only."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        return None


# Rows for customers that never stored toggles, with the defaults they read until now (portal_sections: none).
KEEP_OLD_DEFAULTS = """
INSERT INTO feature_toggles (customer_id, portal_enabled, advanced_analytics, detailed_call_analysis,
    action_point_analysis, api_access, api_keys_menu, ai_credits_enabled, low_credit_notifications, show_pricing,
    portal_sections, embed_urls_enabled, team_members_enabled, max_team_members, updated_at)
SELECT c.id, TRUE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, FALSE, TRUE, '[]', FALSE, TRUE, 5, CURRENT_TIMESTAMP
FROM customer c WHERE NOT EXISTS (SELECT 1 FROM feature_toggles t WHERE t.customer_id = c.id)
"""


class Migration(migrations.Migration):
    dependencies = [('models', '0014_portal')]

    initial = False

    operations = [
        ops.RunSQL(KEEP_OLD_DEFAULTS, reverse_sql=ops.RunSQL.noop),
        ops.CreateModel(
            name='CustomerStorage',
            fields=[
                ('customer_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('partner_id', fields.IntField()),
                ('allocated_mb', fields.BigIntField(default=0)),
                ('package_mb', fields.BigIntField(default=0)),
                ('used_mb', fields.BigIntField(default=0)),
                ('used_reported_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'customer_storage', 'app': 'models', 'indexes': [Index(fields=['partner_id', 'customer_id'])], 'pk_attr': 'customer_id', 'table_description': "A customer's allocation from its partner's pool, the part its package gave, and what it uses."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PackageNotice',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('assignment_id', fields.IntField()),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('kind', fields.CharEnumField(description='EXPIRING: EXPIRING\nEXPIRED: EXPIRED', enum_type=NoticeKind, max_length=10)),
                ('audience', fields.CharEnumField(description='CUSTOMER: CUSTOMER\nPARTNER: PARTNER', enum_type=NoticeAudience, max_length=10)),
                ('status', fields.CharEnumField(default=NoticeStatus.PENDING, description='PENDING: PENDING\nSENT: SENT\nFAILED: FAILED', enum_type=NoticeStatus, max_length=8)),
                ('recipients', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('attempts', fields.IntField(default=0)),
                ('last_error', fields.CharField(default='', max_length=500)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'package_notice', 'app': 'models', 'unique_together': (('assignment_id', 'kind', 'audience'),), 'indexes': [Index(fields=['customer_id', 'id'])], 'pk_attr': 'id', 'table_description': 'One expiry email of one assignment to one audience: created once (the unique key), sent once (`deliver`).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PartnerStorage',
            fields=[
                ('partner_id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('total_mb', fields.BigIntField(default=0)),
                ('allocated_mb', fields.BigIntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'partner_storage', 'app': 'models', 'pk_attr': 'partner_id', 'table_description': "A partner's storage pool: what it bought (`total_mb`) and what its customers hold of it (`allocated_mb`)."},
            bases=['Model'],
        ),
        DescriptionOnly(
            model_name='LedgerAccount',
            name='kind',
            field=fields.CharEnumField(description='PARTNER_POOL: PARTNER_POOL\nCUSTOMER_CREDITS: CUSTOMER_CREDITS\nCUSTOMER_WALLET: CUSTOMER_WALLET\nCUSTOMER_INVOICE: CUSTOMER_INVOICE\nREVENUE: REVENUE\nEXTERNAL_FUNDING: EXTERNAL_FUNDING\nEXPIRED: EXPIRED\nPARTNER_USD: PARTNER_USD\nPLATFORM_REVENUE: PLATFORM_REVENUE', enum_type=AccountKind, max_length=24),
        ),
        ops.RenameField(
            model_name='Package',
            old_name='max_team_members',
            new_name='user_count',
        ),
        ops.AddField(
            model_name='PackageAssignment',
            name='end_reason',
            field=fields.CharEnumField(null=True, description='REPLACED: REPLACED\nEXPIRED: EXPIRED\nPURGED: PURGED', enum_type=EndReason, max_length=12),
        ),
        ops.AddField(
            model_name='PackageAssignment',
            name='ended_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddIndex(
            model_name='PackageAssignment',
            index=Index(fields=['expires_at', 'current_customer_id']),
        ),
        DescriptionOnly(
            model_name='Transfer',
            name='kind',
            field=fields.CharEnumField(description='PARTNER_CREDITS_ADD: PARTNER_CREDITS_ADD\nCREDITS_RECHARGE: CREDITS_RECHARGE\nCREDITS_RECLAIM: CREDITS_RECLAIM\nCREDITS_GRANT: CREDITS_GRANT\nCREDITS_EXPIRY: CREDITS_EXPIRY\nWALLET_REFILL: WALLET_REFILL\nUSAGE_CHARGE: USAGE_CHARGE\nINVOICE_PAYMENT: INVOICE_PAYMENT\nADJUSTMENT: ADJUSTMENT\nSTORAGE_PURCHASE: STORAGE_PURCHASE', enum_type=TransferKind, max_length=24),
        ),
        ops.AddField(
            model_name='UsageReport',
            name='with_prices',
            field=fields.BooleanField(default=True, db_default=True),
        ),
    ]
