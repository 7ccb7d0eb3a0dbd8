"""Imports every actor module so the broker knows them, and maps outbox topics to the actors they trigger."""

from __future__ import annotations

from typing import Any


def load_actors() -> None:
    import jobs.accounts
    import jobs.alerts
    import jobs.exports
    import jobs.invoices
    import jobs.maintenance
    import jobs.packages
    import jobs.payments
    import jobs.scheduled
    import jobs.team
    import jobs.webhooks  # noqa: F401


def actors_for(topic: str) -> list[tuple[Any, str | None]]:
    """(actor, payload key holding its argument, or None: the whole event) for an outbox topic."""
    from domain.webhooks.catalog import SOURCE_TOPICS
    from jobs.accounts import notify_email_changed, send_email_change_confirmation
    from jobs.alerts import notify_refill_request, send_alert
    from jobs.exports import build_usage_report, deliver_scheduled_report
    from jobs.invoices import deliver_invoice, push_invoice
    from jobs.packages import send_package_notice
    from jobs.payments import auto_top_up
    from jobs.team import send_invitation, send_portal_invitation
    from jobs.webhooks import deliver_webhook, fan_out_webhooks, notify_webhook_endpoint_disabled

    routes: dict[str, list[tuple[Any, str | None]]] = {
        "alert.raised": [(send_alert, "alert_id")],
        "refill.requested": [(notify_refill_request, "refill_request_id")],
        "usage_report.requested": [(build_usage_report, "report_id")],
        "report_delivery.requested": [(deliver_scheduled_report, "report_id")],
        "email_change.requested": [(send_email_change_confirmation, "mail")],
        "email_change.confirmed": [(notify_email_changed, "mail")],
        "webhook_delivery.requested": [(deliver_webhook, "delivery_id")],
        "webhook_endpoint.disabled": [(notify_webhook_endpoint_disabled, "endpoint_id")],
        "invoice.finalized": [(deliver_invoice, "invoice_id"), (push_invoice, "invoice_id")],
        "auto_top_up.requested": [(auto_top_up, "refill_request_id")],
        "invitation.sent": [(send_invitation, "mail")],
        "portal.invited": [(send_portal_invitation, "invite_customer_id")],
        "package_notice.requested": [(send_package_notice, "notice_id")],
    }
    found = routes.get(topic, [])
    return [*found, (fan_out_webhooks, None)] if topic in SOURCE_TOPICS else found


def schedule() -> list[tuple[str, Any, int]]:
    """(name, actor, every N seconds)."""
    from jobs import exports, invoices, maintenance, packages, scheduled, webhooks

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
        ("sweep_webhooks", webhooks.sweep_webhooks, 10),
        ("close_invoice_months", invoices.close_invoice_months, 3600),
        ("verify_partner_domains", scheduled.verify_partner_domains, 300),
        ("demo_reset", scheduled.demo_reset, 3600),
    ]
