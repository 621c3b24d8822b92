"""An issued invoice or credit note as HTML (Jinja2) and as PDF (fpdf2).

Both render the same `Document`, built from the stored figures only: what the
customer sees is exactly what was issued, in minor units formatted per currency.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace
from jinja2 import Environment, FileSystemLoader, select_autoescape

from orderdesk.core.money import format_minor
from orderdesk.invoices.schemas import InvoiceView

TEMPLATES_DIR = Path(__file__).resolve().parents[3] / "templates"
_env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=select_autoescape(["html"]))
# A Unicode font when the system has one (names like "Łódź" or "東京"); the built-in
# Helvetica otherwise, with text folded to Latin-1.
UNICODE_FONTS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans.ttf"),
)


@dataclass(frozen=True, slots=True)
class Line:
    description: str
    sku: str | None
    quantity: int
    unit_price: str
    tax: str
    total: str


@dataclass(frozen=True, slots=True)
class Document:
    title: str
    number: str
    issued_on: str
    order_number: int
    corrects: str | None
    seller_name: str
    seller_address: list[str]
    buyer_name: str
    buyer_address: list[str]
    lines: list[Line]
    totals: list[tuple[str, str]]


def _address_lines(address: dict | None) -> list[str]:
    if not address:
        return []
    city = " ".join(p for p in (address.get("postal_code"), address.get("city")) if p)
    parts = [
        address.get("company"),
        address.get("line1"),
        address.get("line2"),
        city,
        address.get("region"),
        address.get("country"),
    ]
    return [p for p in parts if p]


def document(view: InvoiceView, order_number: int, corrects: str | None = None) -> Document:
    money = lambda amount: format_minor(amount, view.currency)  # noqa: E731
    totals = [("Subtotal", money(view.subtotal_minor))]
    if view.shipping_minor:
        totals.append(("Shipping", money(view.shipping_minor)))
    if view.discount_minor:
        totals.append(("Discount", money(-view.discount_minor)))
    totals += [
        ("Tax included" if view.kind == "credit_note" else "Tax", money(view.tax_minor)),
        ("Total", money(view.total_minor)),
    ]
    return Document(
        title="Invoice" if view.kind == "invoice" else "Credit note",
        number=view.number,
        issued_on=view.issued_at.date().isoformat(),
        order_number=order_number,
        corrects=corrects,
        seller_name=view.seller.get("name") or "",
        seller_address=_address_lines(view.seller.get("address")),
        buyer_name=view.buyer.get("name") or "",
        buyer_address=_address_lines(view.buyer.get("address")),
        lines=[
            Line(
                line.description,
                line.sku,
                line.quantity,
                money(line.unit_price_minor),
                money(line.tax_minor),
                money(line.total_minor),
            )
            for line in view.lines
        ],
        totals=totals,
    )


def to_html(doc: Document) -> str:
    return _env.get_template("invoices/document.html").render(doc=doc)


def _latin1(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return folded.encode("latin-1", "replace").decode("latin-1")


def to_pdf(doc: Document) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    font = next((f for f in UNICODE_FONTS if f.exists()), None)
    if font is not None:
        pdf.add_font("Body", "", str(font))
        family, clean = "Body", (lambda s: s)
    else:
        family, clean = "Helvetica", _latin1
    pdf.set_title(f"{doc.title} {doc.number}")
    pdf.set_font(family, size=18)
    pdf.cell(0, 10, clean(f"{doc.title} {doc.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(family, size=10)
    meta = f"Issued {doc.issued_on} · Order #{doc.order_number}" + (
        f" · corrects {doc.corrects}" if doc.corrects else ""
    )
    pdf.cell(0, 6, clean(meta if font else meta.replace("·", "-")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    top = pdf.get_y()
    pdf.multi_cell(90, 5, clean("\n".join(["From", doc.seller_name, *doc.seller_address])))
    pdf.set_xy(110, top)
    pdf.multi_cell(90, 5, clean("\n".join(["To", doc.buyer_name, *doc.buyer_address])))
    pdf.ln(6)
    widths = (80, 15, 30, 25, 30)
    with pdf.table(
        col_widths=widths,
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        # Regular weight: only the regular face of the Unicode font is loaded.
        headings_style=FontFace(emphasis="", fill_color=(235, 235, 235)),
    ) as table:
        table.row(["Item", "Qty", "Unit price", "Tax", "Amount"])
        for line in doc.lines:
            item = line.description + (f" ({line.sku})" if line.sku else "")
            table.row([clean(item), str(line.quantity), line.unit_price, line.tax, line.total])
    pdf.ln(4)
    for label, value in doc.totals:
        pdf.cell(150, 6, label, align="R")
        pdf.cell(30, 6, value, align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
