from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from domain.reports.models import ReportFormat, ReportFrequency, ReportStatus
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0005_access')]

    initial = False

    operations = [
        ops.CreateModel(
            name='UsageReport',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('requested_by_user_id', fields.IntField(null=True)),
                ('schedule_id', fields.IntField(null=True)),
                ('format', fields.CharEnumField(description='VOICE_CSV: VOICE_CSV\nSMS_CSV: SMS_CSV\nPDF: PDF\nPDF_BY_CASE_TYPE: PDF_BY_CASE_TYPE', enum_type=ReportFormat, max_length=20)),
                ('period_from', fields.DateField()),
                ('period_to', fields.DateField()),
                ('status', fields.CharEnumField(default=ReportStatus.QUEUED, description='QUEUED: QUEUED\nRUNNING: RUNNING\nREADY: READY\nFAILED: FAILED', enum_type=ReportStatus, max_length=8)),
                ('attempts', fields.IntField(default=0)),
                ('row_count', fields.IntField(null=True)),
                ('byte_size', fields.BigIntField(null=True)),
                ('storage_key', fields.CharField(default='', max_length=255)),
                ('file_name', fields.CharField(default='', max_length=255)),
                ('content_type', fields.CharField(default='', max_length=100)),
                ('error', fields.CharField(default='', max_length=500)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'usage_report', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id']), Index(fields=['status', 'expires_at'])], 'pk_attr': 'id', 'table_description': 'An export of a customer\'s usage over inclusive UTC days, and where its file is stored once built.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ReportSchedule',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('customer_id', fields.IntField()),
                ('partner_id', fields.IntField()),
                ('created_by_user_id', fields.IntField(null=True)),
                ('format', fields.CharEnumField(description='VOICE_CSV: VOICE_CSV\nSMS_CSV: SMS_CSV\nPDF: PDF\nPDF_BY_CASE_TYPE: PDF_BY_CASE_TYPE', enum_type=ReportFormat, max_length=20)),
                ('frequency', fields.CharEnumField(description='DAILY: DAILY\nWEEKLY: WEEKLY\nMONTHLY: MONTHLY', enum_type=ReportFrequency, max_length=8)),
                ('recipients', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('last_period_to', fields.DateField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'report_schedule', 'app': 'models', 'indexes': [Index(fields=['customer_id', 'id'])], 'pk_attr': 'id', 'table_description': 'A report emailed to recipients every day, week or month, covering the period that just ended.'},
            bases=['Model'],
        ),
    ]
