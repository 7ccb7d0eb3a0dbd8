"""Imports every actor module so the broker knows them, and maps outbox topics to the actors they trigger."""

from __future__ import annotations

from typing import Any


def load_actors() -> None:
    import jobs.accounts
    import jobs.alerts
    import jobs.exports
    import jobs.maintenance
    import jobs.packages
    import jobs.scheduled  # noqa: F401


def actors_for(topic: str) -> list[tuple[Any, str]]:
    """(actor, payload key holding its argument) for an outbox topic."""
    from jobs.accounts import notify_email_changed, send_email_change_confirmation
    from jobs.alerts import notify_refill_request, send_alert
    from jobs.exports import build_usage_report, deliver_scheduled_report
    from jobs.packages import send_package_notice

    routes: dict[str, list[tuple[Any, str]]] = {
        "alert.raised": [(send_alert, "alert_id")],
        "refill.requested": [(notify_refill_request, "refill_request_id")],
        "usage_report.requested": [(build_usage_report, "report_id")],
        "report_delivery.requested": [(deliver_scheduled_report, "report_id")],
        "email_change.requested": [(send_email_change_confirmation, "mail")],
        "email_change.confirmed": [(notify_email_changed, "mail")],
        "package_notice.requested": [(send_package_notice, "notice_id")],
    }
    return routes.get(topic, [])


def schedule() -> list[tuple[str, Any, int]]:
    """(name, actor, every N seconds)."""
    from jobs import exports, maintenance, packages, scheduled

    return [
        ("usage_hold_expiry", scheduled.usage_hold_expiry, 60),
        ("credit_grant_expiry", scheduled.credit_grant_expiry, 600),
        ("package_expiry", packages.package_expiry, 60),
        ("storage_metering", scheduled.storage_metering, 3600),
        ("monthly_phone_number_charges", scheduled.monthly_phone_number_charges, 3600),
        ("retention", scheduled.retention, 86400),
        ("housekeeping", scheduled.housekeeping, 3600),
        ("purge_expired_sessions", maintenance.purge_expired_sessions, 86400),
        ("report_schedules", exports.report_schedules, 300),
        ("sweep_export_queue", exports.sweep_export_queue, 60),
        ("purge_expired_reports", exports.purge_expired_reports, 3600),
    ]
