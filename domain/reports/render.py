"""Report files: CSV rows (usage calls and messages, self-healed contacts, the system log) and white-label PDF
summaries (fpdf2 with Unicode fonts and text shaping), zipped per case type.

Everything here is pure (no database): services.py streams rows in and decides where the bytes go. CSVs are RFC 4180
(comma, double quotes, CRLF) in UTF-8, and a text cell a spreadsheet would run as a formula is neutralised.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeAlias

from fpdf import FPDF

from domain.reports import fonts
from domain.reports.models import HealedContactColumn
from domain.usage.models import UnitType

# values a spreadsheet would run as a formula (CSV injection): such text is prefixed with a quote
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# a plain international phone number (E.164) begins with "+" but is no formula: kept as it is, so CRM imports of
# the numbers stay exact
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
UNCATEGORIZED = "Uncategorized"
_UNIT_LABELS = {
    UnitType.VOICE_MINUTES: "Voice minutes",
    UnitType.SMS_SEGMENTS: "SMS segments",
    UnitType.CHAT_TURNS: "Chat turns",
    UnitType.EMAILS: "Emails",
    UnitType.PHONE_NUMBER_MONTHS: "Phone number months",
    UnitType.STORAGE_MB: "Storage (MB)",
}


def plain(value: Decimal) -> str:
    """A quantity without trailing zeros or exponent: 17.000000 → "17", 0.500000 → "0.5"."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0") else text


def usd(value: Decimal) -> str:
    """USD with at least two decimals, more only when the value has them: 1.020000 → "1.02", 0.012500 → "0.0125"."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        normal = normal.quantize(Decimal("0.01"))
    return f"{normal:f}"


def safe_text(value: str | None) -> str:
    """Text for a CSV cell: one beginning with = + - @ (or a tab or CR) gets a leading quote, so no spreadsheet
    runs it; a plain E.164 phone number stays as it is."""
    text = value or ""
    if text.startswith(_FORMULA_START) and not _E164.match(text):
        return f"'{text}"
    return text


def _stamp(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


# ---------------------------------------------------------------- usage CSVs (one row per call or message)


# One usage event as services.stream_events reads it.
@dataclass(frozen=True, slots=True)
class CallRow:
    occurred_at: datetime  # in the report's time zone
    unit_type: UnitType
    quantity: Decimal
    unit_price: Decimal
    cost: Decimal
    credits: Decimal
    funding: str
    case_type: str
    paid: bool
    direction: str | None
    from_number: str | None
    to_number: str | None
    duration_seconds: int | None
    segments: int | None
    campaign_id: str  # global id, or ""
    campaign: str  # its name, or ""
    call_id: str | None


_PRICE_COLUMNS = ("unit_price", "cost", "currency")


def call_columns(unit: UnitType, prices: bool) -> tuple[str, ...]:
    """VOICE_CSV and SMS_CSV headers; without the price columns where the customer's pricing is hidden."""
    size = "duration_seconds" if unit == UnitType.VOICE_MINUTES else "segments"
    ref = "call_id" if unit == UnitType.VOICE_MINUTES else "message_id"
    columns = (
        "occurred_at",
        ref,
        "direction",
        "from_number",
        "to_number",
        size,
        "campaign_id",
        "campaign",
        "case_type",
        "quantity",
        *(_PRICE_COLUMNS if prices else ()),
        "credits",
        "funding",
        "paid",
    )
    return columns


def call_cells(row: CallRow, prices: bool) -> list[str]:
    """One call or message as CSV cells, in `call_columns` order."""
    size = row.duration_seconds if row.unit_type == UnitType.VOICE_MINUTES else row.segments
    priced = [usd(row.unit_price), usd(row.cost), "USD"] if prices else []
    return [
        row.occurred_at.isoformat(),
        safe_text(row.call_id),
        row.direction or "",
        safe_text(row.from_number),
        safe_text(row.to_number),
        "" if size is None else str(size),
        row.campaign_id,
        safe_text(row.campaign),
        safe_text(row.case_type),
        plain(row.quantity),
        *priced,
        plain(row.credits),
        str(row.funding),
        "true" if row.paid else "false",
    ]


# ---------------------------------------------------------------- self-healed contacts and the system log


HealedRow: TypeAlias = dict[HealedContactColumn, object]
HEALED_HEADERS = {
    HealedContactColumn.EXTERNAL_ID: "external_id",
    HealedContactColumn.NEW_NUMBER: "new_number",
    HealedContactColumn.OLD_NUMBER: "old_number",
    HealedContactColumn.ENRICHED_AT: "enriched_at",
    HealedContactColumn.CONFIRMED_AT: "confirmed_at",
    HealedContactColumn.CALL_ID: "call_id",
}


def healed_cells(row: HealedRow, columns: Sequence[HealedContactColumn]) -> list[str]:
    """Only the chosen columns, in the chosen order."""
    cells = []
    for column in columns:
        value = row[column]
        cells.append(_stamp(value) if isinstance(value, datetime) or value is None else safe_text(str(value)))
    return cells


AUDIT_COLUMNS = (
    "created_at",
    "type",
    "action",
    "object_type",
    "object_id",
    "actor",
    "actor_user_id",
    "customer_id",
    "ip",
    "user_agent",
    "request_id",
    "details",
)


def audit_cells(values: Sequence[str | datetime | None]) -> list[str]:
    return [_stamp(v) if isinstance(v, datetime) or v is None else safe_text(v) for v in values]


# ---------------------------------------------------------------- summaries


@dataclass(slots=True)
class Totals:
    events: int = 0
    quantity: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)

    def add(self, quantity: Decimal, cost: Decimal, events: int = 1) -> None:
        self.events += events
        self.quantity += quantity
        self.cost += cost


@dataclass(slots=True)
class Summary:
    """Usage of one period by (day, unit type), exact Decimal sums."""

    by_day: dict[tuple[date, UnitType], Totals] = field(default_factory=dict)

    def add(self, day: date, unit_type: UnitType, quantity: Decimal, cost: Decimal) -> None:
        totals = self.by_day.get((day, unit_type))
        if totals is None:
            totals = self.by_day[(day, unit_type)] = Totals()
        totals.add(quantity, cost)

    @property
    def by_unit(self) -> dict[UnitType, Totals]:
        out: dict[UnitType, Totals] = {}
        for (_, unit), t in self.by_day.items():
            out.setdefault(unit, Totals()).add(t.quantity, t.cost, t.events)
        return {unit: out[unit] for unit in UnitType if unit in out}

    @property
    def days(self) -> dict[date, Totals]:
        out: dict[date, Totals] = {}
        for (day, _), t in sorted(self.by_day.items(), key=lambda kv: kv[0][0]):
            out.setdefault(day, Totals()).add(t.quantity, t.cost, t.events)
        return out

    @property
    def events(self) -> int:
        return sum(t.events for t in self.by_day.values())

    @property
    def cost(self) -> Decimal:
        return sum((t.cost for t in self.by_day.values()), Decimal(0))


@dataclass(frozen=True, slots=True)
class Branding:
    """The partner's look: name, colours (#RRGGBB) and logo (image bytes, when it could be read)."""

    name: str
    primary_color: str = "#2563EB"
    secondary_color: str = "#0F172A"
    logo: bytes | None = None


@dataclass(frozen=True, slots=True)
class Heading:
    brand: Branding
    customer_name: str
    period_from: date
    period_to: date
    timezone: str
    generated_at: datetime
    prices: bool = True  # False for a report without prices (UsageReport.with_prices): no cost anywhere
    case_type: str | None = None  # set for the per-case-type PDFs

    @property
    def partner_name(self) -> str:
        return self.brand.name


def logo_bytes(data_url: str | None) -> bytes | None:
    """The image of a `data:image/png|jpeg|gif;base64,…` logo; None for anything else (reports never fetch URLs)."""
    match = re.fullmatch(r"data:image/(png|jpe?g|gif);base64,([A-Za-z0-9+/=\s]+)", data_url or "")
    if match is None:
        return None
    try:
        return base64.b64decode(match.group(2), validate=False)
    except (binascii.Error, ValueError):
        return None


def _rgb(color: str) -> tuple[int, int, int]:
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", color):
        color = "#2563EB"
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


class _Pdf(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(fonts.MAIN, size=8)
        self.set_text_color(110)
        self.cell(0, 8, f"{self.footer_text}   Page {self.page_no()}/{{nb}}", align="C")


def _new_pdf(heading: Heading, texts: Iterable[str]) -> _Pdf:
    """A PDF with the main font and the fallbacks the report's own text needs, shaped by HarfBuzz."""
    pdf = _Pdf(format="A4")
    main = fonts.main_font()
    pdf.add_font(fonts.MAIN, "", main.regular)
    pdf.add_font(fonts.MAIN, "B", main.bold)
    fallbacks = fonts.fallbacks_for(texts)
    for font in fallbacks:
        pdf.add_font(font.family, "", font.regular)
        pdf.add_font(font.family, "B", font.bold)
    if fallbacks:
        pdf.set_fallback_fonts([f.family for f in fallbacks])
    pdf.set_text_shaping(True)
    pdf.footer_text = f"{heading.partner_name} - {heading.customer_name}"
    pdf.set_title(f"{heading.partner_name}: usage report")
    pdf.set_author(heading.partner_name)
    pdf.set_creator("Partnerdesk")
    pdf.set_auto_page_break(auto=True, margin=18)
    return pdf


def summary_pdf(heading: Heading, summary: Summary) -> bytes:
    """One PDF: the partner's logo, name and colours on top, totals by unit type, a chart of usage by day and the
    table of usage by day and unit type, with a grand total (costs only where prices are shown)."""
    labels = [heading.partner_name, heading.customer_name, heading.case_type or ""]
    pdf = _new_pdf(heading, labels)
    primary, secondary = _rgb(heading.brand.primary_color), _rgb(heading.brand.secondary_color)
    pdf.add_page()
    _masthead(pdf, heading, primary, secondary)
    pdf.set_font(fonts.MAIN, size=10)
    pdf.set_text_color(*secondary)
    for line in (
        f"Customer: {heading.customer_name}",
        f"Period: {heading.period_from.isoformat()} to {heading.period_to.isoformat()} ({heading.timezone}, inclusive)",
        f"Generated: {heading.generated_at:%Y-%m-%d %H:%M} UTC",
    ):
        pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    _section(pdf, "Totals by unit type", primary)
    units = summary.by_unit
    priced = heading.prices
    header = ("Unit type", "Events", "Quantity", *(("Cost (USD)",) if priced else ()))
    rows = [
        (_UNIT_LABELS[u], str(t.events), plain(t.quantity), *((usd(t.cost),) if priced else ()))
        for u, t in units.items()
    ]
    rows.append(("Total", str(summary.events), "", *((usd(summary.cost),) if priced else ())))
    _table(pdf, header, rows, (70, 30, 40, 40)[: len(header)], primary)
    pdf.ln(4)

    _section(pdf, "Usage by day" + (" (cost, USD)" if priced else " (events)"), primary)
    if not summary.by_day:
        pdf.set_font(fonts.MAIN, size=9)
        pdf.cell(0, 6, "No usage in this period.", new_x="LMARGIN", new_y="NEXT")
        return bytes(pdf.output())
    _chart(pdf, summary, priced, primary)
    pdf.ln(4)
    _section(pdf, "Detail by day and unit type", primary)
    order = list(UnitType)
    detail = sorted(summary.by_day.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1])))
    header = ("Day", "Unit type", "Events", "Quantity", *(("Cost (USD)",) if priced else ()))
    _table(
        pdf,
        header,
        [
            (day.isoformat(), _UNIT_LABELS[unit], str(t.events), plain(t.quantity), *((usd(t.cost),) if priced else ()))
            for (day, unit), t in detail
        ],
        (30, 50, 25, 35, 40)[: len(header)],
        primary,
    )
    return bytes(pdf.output())


def _masthead(pdf: FPDF, heading: Heading, primary: tuple[int, int, int], secondary: tuple[int, int, int]) -> None:
    """A band in the partner's primary colour with its logo (when readable) and name, then the title."""
    top = pdf.get_y()
    pdf.set_fill_color(*primary)
    pdf.rect(pdf.l_margin, top, pdf.epw, 2, style="F")
    pdf.set_y(top + 4)
    if heading.brand.logo is not None:
        try:
            pdf.image(io.BytesIO(heading.brand.logo), x=pdf.l_margin, y=top + 4, h=12)
            pdf.set_xy(pdf.l_margin + 40, top + 5)
        except Exception:  # an unreadable logo leaves the name alone on top, never fails the report
            pdf.set_xy(pdf.l_margin, top + 5)
    pdf.set_font(fonts.MAIN, style="B", size=20)
    pdf.set_text_color(*primary)
    pdf.cell(0, 11, heading.partner_name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), top + 17))
    pdf.set_font(fonts.MAIN, style="B", size=14)
    pdf.set_text_color(*secondary)
    title = "Usage report" + (f" - case type: {heading.case_type}" if heading.case_type is not None else "")
    pdf.cell(0, 9, title, new_x="LMARGIN", new_y="NEXT")


def _section(pdf: FPDF, title: str, primary: tuple[int, int, int]) -> None:
    pdf.set_font(fonts.MAIN, style="B", size=12)
    pdf.set_text_color(*primary)
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.set_font(fonts.MAIN, size=9)


def _chart(pdf: FPDF, summary: Summary, priced: bool, primary: tuple[int, int, int]) -> None:
    """Bars per day: the day's cost where prices are shown, else its events."""
    days = summary.days
    values = [float(t.cost) if priced else float(t.events) for t in days.values()]
    height, left = 45.0, pdf.l_margin + 12
    width = pdf.epw - 12
    top = pdf.get_y()
    if top + height + 10 > pdf.h - pdf.b_margin:
        pdf.add_page()
        top = pdf.get_y()
    peak = max(values) or 1.0
    step = width / len(values)
    pdf.set_draw_color(180)
    pdf.line(left, top + height, left + width, top + height)
    pdf.set_fill_color(*primary)
    for i, value in enumerate(values):
        bar = height * value / peak
        if bar > 0:
            pdf.rect(left + i * step + step * 0.15, top + height - bar, step * 0.7, bar, style="F")
    pdf.set_font(fonts.MAIN, size=7)
    pdf.set_text_color(90)
    pdf.set_xy(pdf.l_margin, top - 1)
    pdf.cell(12, 4, usd(Decimal(str(peak))) if priced else str(int(peak)))
    labels = list(days)
    every = max(1, len(labels) // 10)
    for i in range(0, len(labels), every):
        pdf.set_xy(left + i * step, top + height + 1)
        pdf.cell(max(step * every, 14), 4, labels[i].strftime("%m-%d"))
    pdf.set_text_color(0)
    pdf.set_y(top + height + 6)


def _table(
    pdf: FPDF,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    widths: Sequence[int],
    primary: tuple[int, int, int],
) -> None:
    numbers = min(3, len(header) - 1)
    align = ("LEFT",) * (len(header) - numbers) + ("RIGHT",) * numbers
    pdf.set_font(fonts.MAIN, size=9)
    with pdf.table(
        col_widths=tuple(widths),
        width=sum(widths),
        align="LEFT",
        text_align=align,
        headings_style=_heading_style(primary),
    ) as table:
        heading = table.row()
        for cell in header:
            heading.cell(cell)
        for values in rows:
            row = table.row()
            for cell in values:
                row.cell(cell)


def _heading_style(primary: tuple[int, int, int]) -> object:
    from fpdf.fonts import FontFace

    return FontFace(emphasis="BOLD", color=255, fill_color=primary)


def case_type_label(case_type: str) -> str:
    return case_type or UNCATEGORIZED


def file_slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return slug[:60] or "case"


def write_case_type_zip(target: Path, heading: Heading, summaries: dict[str, Summary], stem: str) -> list[str]:
    """One PDF per case type (in name order) into a zip at `target`; returns the member names."""
    names: list[str] = []
    used: set[str] = set()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for case_type in sorted(summaries, key=lambda c: (c == "", c.lower())):
            label = case_type_label(case_type)
            base = f"{stem}-{file_slug(label)}"
            name, n = f"{base}.pdf", 1
            while name in used:
                n += 1
                name = f"{base}-{n}.pdf"
            used.add(name)
            pdf = summary_pdf(
                Heading(
                    heading.brand,
                    heading.customer_name,
                    heading.period_from,
                    heading.period_to,
                    heading.timezone,
                    heading.generated_at,
                    heading.prices,
                    label,
                ),
                summaries[case_type],
            )
            archive.writestr(name, pdf)
            names.append(name)
    return names
