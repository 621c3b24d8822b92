"""API shapes for invoices and credit notes."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from orderdesk.core.schemas import OutputSchema


class InvoiceLineView(OutputSchema):
    description: str
    sku: str | None = None
    quantity: int
    unit_price_minor: int
    tax_minor: int
    total_minor: int


class InvoiceView(OutputSchema):
    id: UUID
    kind: str
    number: str
    year: int
    sequence: int
    order_id: UUID
    invoice_id: UUID | None
    return_id: UUID | None
    currency: str
    subtotal_minor: int
    tax_minor: int
    shipping_minor: int
    discount_minor: int
    total_minor: int
    lines: list[InvoiceLineView]
    seller: dict
    buyer: dict
    issued_at: dt.datetime
