"""Report files: CSV rows of usage events, and white-label PDF summaries (fpdf2), zipped per case type.

Everything here is pure (no database): services.py streams events in and decides where the bytes go.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TypeAlias

from fpdf import FPDF

from domain.usage.models import UnitType

CSV_COLUMNS = (
    "occurred_at",
    "unit_type",
    "quantity",
    "unit_price",
    "cost",
    "currency",
    "credits",
    "funding",
    "case_type",
    "paid",
)
# the columns left out of a report without prices (domain/features/pricing.py decides)
PRICE_COLUMNS = frozenset({"unit_price", "cost", "currency"})
# values a spreadsheet would run as a formula (CSV injection): such text is prefixed with a quote
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
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


def safe_text(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_START) else value


# One usage event as services.stream_events reads it: (occurred_at, unit_type, quantity, unit_price, cost, credits,
# funding, case_type, paid).
EventRow: TypeAlias = tuple[datetime, UnitType, Decimal, Decimal, Decimal, Decimal, str, str, bool]


def csv_columns(with_prices: bool = True) -> tuple[str, ...]:
    """The header of an event CSV: `CSV_COLUMNS`, without `PRICE_COLUMNS` when the report shows no prices."""
    return CSV_COLUMNS if with_prices else tuple(c for c in CSV_COLUMNS if c not in PRICE_COLUMNS)


def csv_row(row: EventRow, with_prices: bool = True) -> list[str]:
    """One event as CSV cells, in `csv_columns(with_prices)` order."""
    occurred_at, unit_type, quantity, unit_price, cost, credits, funding, case_type, paid = row
    priced = [usd(unit_price), usd(cost), "USD"] if with_prices else []
    return [
        occurred_at.isoformat(),
        str(unit_type),
        plain(quantity),
        *priced,
        plain(credits),
        str(funding),
        safe_text(case_type or ""),
        "true" if paid else "false",
    ]


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
    def events(self) -> int:
        return sum(t.events for t in self.by_day.values())

    @property
    def cost(self) -> Decimal:
        return sum((t.cost for t in self.by_day.values()), Decimal(0))


@dataclass(frozen=True, slots=True)
class Heading:
    partner_name: str
    customer_name: str
    period_from: date
    period_to: date
    generated_at: datetime
    case_type: str | None = None  # set for the per-case-type PDFs
    with_prices: bool = True  # False: no cost columns (domain/features/pricing.py)


def _latin1(text: str) -> str:
    """The PDF core fonts cover Latin-1 only; other characters print as "?" rather than failing the report."""
    return text.encode("latin-1", "replace").decode("latin-1")


class _Pdf(FPDF):
    footer_text = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(110)
        self.cell(0, 8, _latin1(f"{self.footer_text}   Page {self.page_no()}/{{nb}}"), align="C")


def summary_pdf(heading: Heading, summary: Summary) -> bytes:
    """One PDF: the partner's name on top, then totals by unit type and usage by day, with a grand total."""
    pdf = _Pdf(format="A4")
    pdf.footer_text = f"{heading.partner_name} - {heading.customer_name}"
    pdf.set_title(_latin1(f"{heading.partner_name}: usage report"))
    pdf.set_author(_latin1(heading.partner_name))
    pdf.set_creator("Partnerdesk")
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=20)
    pdf.cell(0, 11, _latin1(heading.partner_name), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", style="B", size=14)
    title = "Usage report" + (f" - case type: {heading.case_type}" if heading.case_type is not None else "")
    pdf.cell(0, 9, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for line in (
        f"Customer: {heading.customer_name}",
        f"Period: {heading.period_from.isoformat()} to {heading.period_to.isoformat()} (UTC, inclusive)",
        f"Generated: {heading.generated_at:%Y-%m-%d %H:%M} UTC",
    ):
        pdf.cell(0, 6, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)

    pdf.set_font("Helvetica", style="B", size=12)
    pdf.cell(0, 8, "Totals by unit type", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    units = summary.by_unit
    priced = heading.with_prices
    _table(
        pdf,
        ("Unit type", "Events", "Quantity", *(("Cost (USD)",) if priced else ())),
        [
            (_UNIT_LABELS[u], str(t.events), plain(t.quantity), *((usd(t.cost),) if priced else ()))
            for u, t in units.items()
        ]
        + [("Total", str(summary.events), "", *((usd(summary.cost),) if priced else ()))],
        (70, 30, 40, 40) if priced else (70, 30, 40),
    )
    pdf.ln(4)

    pdf.set_font("Helvetica", style="B", size=12)
    pdf.cell(0, 8, "Usage by day", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    if not summary.by_day:
        pdf.cell(0, 6, "No usage in this period.", new_x="LMARGIN", new_y="NEXT")
    else:
        order = list(UnitType)
        rows = sorted(summary.by_day.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1])))
        _table(
            pdf,
            ("Day", "Unit type", "Events", "Quantity", *(("Cost (USD)",) if priced else ())),
            [
                (
                    day.isoformat(),
                    _UNIT_LABELS[unit],
                    str(t.events),
                    plain(t.quantity),
                    *((usd(t.cost),) if priced else ()),
                )
                for (day, unit), t in rows
            ],
            (30, 50, 25, 35, 40) if priced else (30, 50, 25, 35),
        )
    return bytes(pdf.output())


def _table(pdf: FPDF, header: Sequence[str], rows: Iterable[Sequence[str]], widths: Sequence[int]) -> None:
    numbers = 3 if "Cost (USD)" in header else 2  # the right-aligned columns: events, quantity (and cost)
    align = ("LEFT",) * (len(header) - numbers) + ("RIGHT",) * numbers
    with pdf.table(col_widths=tuple(widths), width=sum(widths), align="LEFT", text_align=align) as table:
        heading = table.row()
        for cell in header:
            heading.cell(cell)
        for values in rows:
            row = table.row()
            for cell in values:
                row.cell(_latin1(cell))


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
                    heading.partner_name,
                    heading.customer_name,
                    heading.period_from,
                    heading.period_to,
                    heading.generated_at,
                    label,
                    heading.with_prices,
                ),
                summaries[case_type],
            )
            archive.writestr(name, pdf)
            names.append(name)
    return names
