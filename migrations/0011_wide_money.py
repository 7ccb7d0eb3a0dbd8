"""Balances, amounts and running totals become NUMERIC(38, 6) (they were NUMERIC(20, 6), under 10^14).

PostgreSQL widens each column in place: raising a numeric's precision at the same scale rewrites no table and
keeps its rows and constraints (the ledger's CHECK, usage_event's partitions). SQLite stores every Decimal as
VARCHAR(40) text before and after, so it has nothing to change; Tortoise's SQLite editor would rebuild each table
for the alteration, so the database step is skipped there and only the migration state moves.

No data moves. The shared EXTERNAL_FUNDING account of each currency (no partner) that older databases hold keeps
its balance and transfers: new funding posts to per-partner accounts, every transfer is still balanced, so each
currency still sums to zero and `ledger verify` stays green.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class WidenOnPostgres(ops.AlterField):
    """AlterField whose database step runs on PostgreSQL only (see the module docstring)."""

    async def database_forward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor is not None and state_editor.client.capabilities.dialect == "postgres":
            await super().database_forward(app_label, old_state, new_state, state_editor)

    async def database_backward(self, app_label, old_state, new_state, state_editor=None) -> None:
        if state_editor is not None and state_editor.client.capabilities.dialect == "postgres":
            await super().database_backward(app_label, old_state, new_state, state_editor)


def _money(**kwargs) -> fields.DecimalField:
    return fields.DecimalField(max_digits=38, decimal_places=6, **kwargs)


class Migration(migrations.Migration):
    dependencies = [('models', '0010_login_hardening')]

    initial = False

    operations = [
        WidenOnPostgres(model_name='LedgerAccount', name='balance', field=_money(default=0)),
        WidenOnPostgres(model_name='Transfer', name='amount', field=_money()),
        WidenOnPostgres(model_name='Transfer', name='debit_balance_after', field=_money()),
        WidenOnPostgres(model_name='Transfer', name='credit_balance_after', field=_money()),
        WidenOnPostgres(model_name='CustomerCredits', name='assigned', field=_money(default=0)),
        WidenOnPostgres(model_name='CustomerCredits', name='used', field=_money(default=0)),
        WidenOnPostgres(model_name='CustomerCredits', name='expired', field=_money(default=0)),
        WidenOnPostgres(model_name='PartnerPool', name='assigned', field=_money(default=0)),
        WidenOnPostgres(model_name='RefillRequest', name='balance_at_open', field=_money()),
        WidenOnPostgres(model_name='UsageEvent', name='cost', field=_money()),
        WidenOnPostgres(model_name='UsageEvent', name='credits', field=_money()),
        WidenOnPostgres(model_name='UsageRollup', name='quantity', field=_money(default=0)),
        WidenOnPostgres(model_name='UsageRollup', name='cost', field=_money(default=0)),
        WidenOnPostgres(model_name='UsageRollup', name='credits', field=_money(default=0)),
        WidenOnPostgres(model_name='UsageRollup', name='unpaid_cost', field=_money(default=0)),
        WidenOnPostgres(model_name='MonthlySpend', name='spent', field=_money(default=0)),
        WidenOnPostgres(model_name='UsageHold', name='amount', field=_money()),
        WidenOnPostgres(model_name='UsageHold', name='credits', field=_money()),
        WidenOnPostgres(model_name='CapCrossing', name='spent', field=_money()),
    ]
