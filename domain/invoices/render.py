"""The white-label invoice PDF (the partner as seller, under its name and colour) and the email that carries it.
Rendered from the invoice row alone: a finalized invoice keeps its lines, totals and both parties' details, so the
document never changes once issued."""

from __future__ import annotations

from decimal import Decimal
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from fpdf import FPDF

from domain.alerts.render import DEFAULT_SENDER
from domain.invoices.models import Invoice
from domain.reports.render import plain, usd

UNIT_LABELS = {
    "VOICE_MINUTES": "AI call minutes",
    "SMS_SEGMENTS": "SMS segments",
    "CHAT_TURNS": "Chat turns",
    "EMAILS": "Emails",
    "PHONE_NUMBER_MONTHS": "Phone numbers (monthly)",
    "STORAGE_MB": "Storage (MB-months)",
}


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#") if isinstance(color, str) and len(color) == 7 else "2563EB"
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def file_name(invoice: Invoice) -> str:
    return f"invoice-{invoice.number}.pdf"


def invoice_pdf(invoice: Invoice) -> bytes:
    seller, bill_to = invoice.seller or {}, invoice.bill_to or {}
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"{seller.get('name', '')} invoice {invoice.number}"))
    pdf.set_author(_latin1(str(seller.get("name", ""))))
    pdf.set_creator("Partnerdesk")
    pdf.add_page()
    pdf.set_text_color(*_rgb(str(seller.get("color", ""))))
    pdf.set_font("Helvetica", style="B", size=20)
    pdf.cell(0, 11, _latin1(str(seller.get("name", ""))), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.set_font("Helvetica", style="B", size=14)
    pdf.cell(0, 9, _latin1(f"Invoice {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    issued = invoice.finalized_at or invoice.created_at
    for line in (
        f"Period: {invoice.period_start:%B %Y} (UTC)",
        f"Issued: {issued:%Y-%m-%d}",
        f"Status: {invoice.status}",
        "",
        "Bill to:",
        *[str(v) for v in (bill_to.get("name"), bill_to.get("address"), bill_to.get("email")) if v],
    ):
        pdf.cell(0, 6, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", size=9)
    widths = (70, 35, 35, 40)
    with pdf.table(
        col_widths=widths, width=sum(widths), align="LEFT", text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT")
    ) as table:
        heading = table.row()
        for cell in ("Item", "Quantity", "Unit price (USD)", "Amount (USD)"):
            heading.cell(cell)
        for item in invoice.lines:
            row = table.row()
            row.cell(_latin1(UNIT_LABELS.get(str(item["unit_type"]), str(item["unit_type"]))))
            row.cell(plain(Decimal(str(item["quantity"]))))
            row.cell(plain(Decimal(str(item["unit_price"]))))
            row.cell(usd(Decimal(str(item["amount"]))))
        for label, value in (("Subtotal", usd(invoice.subtotal)), ("Total due", usd(invoice.total))):
            row = table.row()
            row.cell(label)
            row.cell("")
            row.cell("")
            row.cell(value)
    return bytes(pdf.output())


def invoice_email(invoice: Invoice, recipients: list[str], link: str) -> EmailMessage:
    seller = invoice.seller or {}
    name = str(seller.get("name", ""))
    message = EmailMessage()
    message["Subject"] = f"{name}: invoice {invoice.number} for {invoice.period_start:%B %Y}"
    message["From"] = formataddr((name, str(seller.get("email") or DEFAULT_SENDER)))
    message["To"] = ", ".join(recipients)
    message["Message-ID"] = make_msgid(idstring=f"invoice-{invoice.id}", domain="partnerdesk")
    message["X-Partnerdesk-Invoice"] = invoice.number
    lines = [
        f"Your invoice {invoice.number} for {invoice.period_start:%B %Y} is attached.",
        "",
        f"Total due: ${invoice.total:.2f}",
        "",
        f"Download it again: {link}",
    ]
    message.set_content("\n".join(lines))
    message.add_attachment(invoice_pdf(invoice), maintype="application", subtype="pdf", filename=file_name(invoice))
    return message
