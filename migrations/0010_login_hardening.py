from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.schema_editor.base import BaseSchemaEditor
from tortoise.fields.base import OnDelete
from tortoise import fields


# Tortoise drops a SQLite column by rebuilding the table, and the rebuild's DROP TABLE cascades into every table
# that references it: all memberships and sessions of app_user were deleted. SQLite 3.35+ drops a column in place,
# so these operations do, both ways.


async def _drop_column(state_editor, model, name):
    await BaseSchemaEditor.remove_field(state_editor, model, model._meta.fields_map[name])


class AddColumn(ops.AddField):
    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor:
            await _drop_column(state_editor, old_state.apps.get_model(f"{app_label}.{self.model_name}"), self.name)


class DropColumn(ops.RemoveField):
    async def database_forward(self, app_label, old_state, new_state, state_editor=None):
        if state_editor:
            await _drop_column(state_editor, old_state.apps.get_model(f"{app_label}.{self.model_name}"), self.name)

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):
        field = new_state.apps.get_model(f"{app_label}.{self.model_name}")._meta.fields_map[self.name]
        if not field.null and not field.has_db_default():
            field.db_default = field.default  # the rows already there need a value in the column that comes back
        await super().database_backward(app_label, old_state, new_state, state_editor)


class Migration(migrations.Migration):
    dependencies = [('models', '0009_export_queue')]

    initial = False

    operations = [
        ops.CreateModel(
            name='RecoveryCode',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='recovery_codes', on_delete=OnDelete.CASCADE)),
                ('code_hash', fields.CharField(max_length=64)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'recovery_code', 'app': 'models', 'unique_together': (('user_id', 'code_hash'),), 'pk_attr': 'id', 'table_description': 'A single-use stand-in for a TOTP code (only its SHA-256 is stored), marked used when it is burned.'},
            bases=['Model'],
        ),
        AddColumn(
            model_name='User',
            name='totp_last_step',
            field=fields.IntField(null=True),
        ),
        DropColumn(model_name='User', name='failed_logins'),
        DropColumn(model_name='User', name='failed_window_started_at'),
        DropColumn(model_name='User', name='locked_until'),
    ]
