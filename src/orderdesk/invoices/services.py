"""Issuing invoices and credit notes, and reading them back.

Numbers come from `document_counters`: one UPSERT that increments the tenant's
counter for the kind and year and returns the new value, in the transaction that
inserts the document. Concurrent issuers queue on that row; a transaction that
fails gives its number back by rolling back, so numbers have no gaps.

Public functions raise domain errors only: NotFound (also for other tenants'
documents), Conflict, PermissionDenied.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core.db import Database
from orderdesk.core.errors import Conflict, NotFound, PermissionDenied
from orderdesk.core.ids import new_id
from orderdesk.invoices.models import PREFIX, DocumentCounter, DocumentKind, Invoice
from orderdesk.invoices.schemas import InvoiceView
from orderdesk.orders import services as orders
from orderdesk.orders.models import Order, OrderLine
from orderdesk.orders.states import OrderStatus
from orderdesk.orders.timeline import append_event
from orderdesk.tenants.models import Tenant

NOT_INVOICEABLE = frozenset({OrderStatus.CAPTURED, OrderStatus.AWAITING_VERIFICATION, OrderStatus.CANCELLED})


async def next_number(session: AsyncSession, tenant_id: UUID, kind: DocumentKind, year: int) -> int:
    """The next gapless sequence number; the counter row stays locked until commit."""
    return await session.scalar(
        pg_insert(DocumentCounter)
        .values(tenant_id=tenant_id, kind=kind, year=year, last_number=1)
        .on_conflict_do_update(
            index_elements=["tenant_id", "kind", "year"],
            set_={"last_number": DocumentCounter.last_number + 1},
        )
        .returning(DocumentCounter.last_number)
    )


def _buyer(order: Order) -> dict:
    return {
        "name": order.customer_name,
        "email": order.customer_email,
        "address": order.billing_address or order.shipping_address,
    }


async def _seller(session: AsyncSession, tenant_id: UUID) -> dict:
    tenant = await session.get(Tenant, tenant_id)
    billing = (tenant.settings or {}).get("billing", {}) if tenant else {}
    return {
        "name": billing.get("legal_name") or (tenant.name if tenant else ""),
        "address": billing.get("address"),
    }


async def _issue(
    session: AsyncSession,
    actor: Actor,
    order: Order,
    kind: DocumentKind,
    amounts: dict,
    lines: list[dict],
    *,
    invoice_id: UUID | None = None,
    return_id: UUID | None = None,
) -> Invoice:
    now = dt.datetime.now(dt.UTC)
    sequence = await next_number(session, order.tenant_id, kind, now.year)
    document = Invoice(
        tenant_id=order.tenant_id,
        id=new_id(),
        kind=kind,
        year=now.year,
        sequence=sequence,
        number=f"{PREFIX[kind]}-{now.year}-{sequence:06d}",
        order_id=order.id,
        invoice_id=invoice_id,
        return_id=return_id,
        currency=order.currency,
        lines=lines,
        seller=await _seller(session, order.tenant_id),
        buyer=_buyer(order),
        issued_at=now,
        **amounts,
    )
    session.add(document)
    await session.flush()
    label = "Invoice" if kind is DocumentKind.INVOICE else "Credit note"
    from orderdesk.core.money import format_minor

    append_event(
        session,
        order,
        actor,
        f"{kind.value}_issued",
        f"{label} {document.number} issued: {format_minor(document.total_minor, order.currency)}",
        {"document": {"id": str(document.id), "number": document.number}},
    )
    order.version += 1
    order.updated_at = now
    return document


async def existing_invoice(session: AsyncSession, order: Order) -> Invoice | None:
    return await session.scalar(
        select(Invoice).where(
            Invoice.tenant_id == order.tenant_id,
            Invoice.order_id == order.id,
            Invoice.kind == DocumentKind.INVOICE,
        )
    )


async def issue_invoice_in(session: AsyncSession, actor: Actor, order: Order) -> tuple[Invoice, bool]:
    """The order's invoice, issued now if it has none; (invoice, created). The order row is locked."""
    found = await existing_invoice(session, order)
    if found is not None:
        return found, False
    rows = await session.scalars(
        select(OrderLine)
        .where(OrderLine.tenant_id == order.tenant_id, OrderLine.order_id == order.id)
        .order_by(OrderLine.line_no)
    )
    lines = [
        {
            "description": line.description,
            "sku": line.sku,
            "quantity": line.quantity,
            "unit_price_minor": line.unit_price_minor,
            "tax_minor": line.tax_minor,
            "total_minor": line.total_minor,
        }
        for line in rows
    ]
    amounts = {
        "subtotal_minor": order.subtotal_minor,
        "tax_minor": order.tax_minor,
        "shipping_minor": order.shipping_minor,
        "discount_minor": order.discount_minor,
        "total_minor": order.total_minor,
    }
    return await _issue(session, actor, order, DocumentKind.INVOICE, amounts, lines), True


def proportional_tax(amount: int, tax: int, total: int) -> int:
    """The tax share of `amount` of a `total` that includes `tax`, rounded half up, in minor units."""
    if total <= 0:
        return 0
    return (2 * amount * tax + total) // (2 * total)


async def issue_credit_note_in(
    session: AsyncSession, actor: Actor, order: Order, return_id: UUID, rma: str, amount: int
) -> Invoice | None:
    """A credit note for a refund, against the order's invoice (none without an invoice)."""
    invoice = await existing_invoice(session, order)
    if invoice is None:
        return None
    tax = proportional_tax(amount, invoice.tax_minor, invoice.total_minor)
    lines = [
        {
            "description": f"Refund for return {rma}",
            "sku": None,
            "quantity": 1,
            "unit_price_minor": amount,
            "tax_minor": tax,
            "total_minor": amount,
        }
    ]
    amounts = {
        "subtotal_minor": amount - tax,
        "tax_minor": tax,
        "shipping_minor": 0,
        "discount_minor": 0,
        "total_minor": amount,
    }
    return await _issue(
        session,
        actor,
        order,
        DocumentKind.CREDIT_NOTE,
        amounts,
        lines,
        invoice_id=invoice.id,
        return_id=return_id,
    )


@dataclass(frozen=True, slots=True)
class IssueResult:
    invoice: InvoiceView
    created: bool


async def issue_invoice(db: Database, actor: Actor, order_id: UUID) -> IssueResult:
    """Issue the order's invoice now (tenants who invoice by hand); the existing one if issued.

    Raises NotFound, PermissionDenied (client users), Conflict (not verified yet, or cancelled).
    """
    if actor.kind is ActorKind.CLIENT:
        raise PermissionDenied("Invoices are issued by the operations team or the client's systems")
    async with db.transaction(actor.scope) as session:
        order = await orders.lock_order(session, actor, order_id)
        if order.status in NOT_INVOICEABLE:
            raise Conflict(f"The order is {order.status.value.replace('_', ' ')}; it cannot be invoiced")
        invoice, created = await issue_invoice_in(session, actor, order)
        return IssueResult(InvoiceView.model_validate(invoice), created)


async def list_invoices(db: Database, actor: Actor, order_id: UUID) -> list[InvoiceView]:
    """The order's invoice and credit notes, in issue order. Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        order = await session.scalar(
            select(Order).where(Order.id == order_id, Order.tenant_id.in_(actor.tenant_ids))
        )
        if order is None:
            raise NotFound("Order")
        rows = await session.scalars(
            select(Invoice)
            .where(Invoice.tenant_id == order.tenant_id, Invoice.order_id == order.id)
            .order_by(Invoice.issued_at, Invoice.number)
        )
        return [InvoiceView.model_validate(r) for r in rows]


async def get_invoice(db: Database, actor: Actor, invoice_id: UUID) -> InvoiceView:
    """Raises NotFound."""
    async with db.transaction(actor.scope) as session:
        found = await session.scalar(
            select(Invoice).where(Invoice.id == invoice_id, Invoice.tenant_id.in_(actor.tenant_ids))
        )
        if found is None:
            raise NotFound("Invoice")
        return InvoiceView.model_validate(found)


async def rendered(db: Database, actor: Actor, invoice_id: UUID, fmt: str) -> bytes | str:
    """The document as "html" (str) or "pdf" (bytes). Raises NotFound."""
    from orderdesk.invoices import render

    async with db.transaction(actor.scope) as session:
        found = await session.scalar(
            select(Invoice).where(Invoice.id == invoice_id, Invoice.tenant_id.in_(actor.tenant_ids))
        )
        if found is None:
            raise NotFound("Invoice")
        number = await session.scalar(
            select(Order.number).where(Order.tenant_id == found.tenant_id, Order.id == found.order_id)
        )
        corrects = None
        if found.invoice_id is not None:
            corrects = await session.scalar(
                select(Invoice.number).where(
                    Invoice.tenant_id == found.tenant_id, Invoice.id == found.invoice_id
                )
            )
        view = InvoiceView.model_validate(found)
    doc = render.document(view, number, corrects)
    return render.to_pdf(doc) if fmt == "pdf" else render.to_html(doc)
