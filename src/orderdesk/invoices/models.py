"""Invoices and credit notes, numbered without gaps per tenant, series and year.

An issued document is never changed or deleted (the database refuses): a
correction is a credit note. The counter row is updated in the transaction that
issues the document, so a rollback takes its number back with it.
"""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column
from orderdesk.orders.models import pg_enum


class DocumentKind(enum.StrEnum):
    INVOICE = "invoice"  # what the customer owes for an order
    CREDIT_NOTE = "credit_note"  # money given back (a refund), against an invoice


PREFIX = {DocumentKind.INVOICE: "INV", DocumentKind.CREDIT_NOTE: "CN"}


class DocumentCounter(Base):
    """The last number issued per tenant, kind and calendar year."""

    __tablename__ = "document_counters"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    kind: Mapped[DocumentKind] = mapped_column(pg_enum(DocumentKind, "document_kind"), primary_key=True)
    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer)


class Invoice(Base):
    """An invoice or credit note as issued: amounts, lines and parties frozen at that moment."""

    __tablename__ = "invoices"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    kind: Mapped[DocumentKind] = mapped_column(pg_enum(DocumentKind, "document_kind"))
    year: Mapped[int] = mapped_column(SmallInteger)
    sequence: Mapped[int] = mapped_column(Integer)
    number: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[UUID] = mapped_column()
    # Credit notes name the invoice they correct and the return they refund.
    invoice_id: Mapped[UUID | None] = mapped_column()
    return_id: Mapped[UUID | None] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    shipping_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[list] = mapped_column(JSONB)
    seller: Mapped[dict] = mapped_column(JSONB)
    buyer: Mapped[dict] = mapped_column(JSONB)
    issued_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        ForeignKeyConstraint(["tenant_id", "invoice_id"], ["invoices.tenant_id", "invoices.id"]),
        Index("uq_invoices_sequence", "tenant_id", "kind", "year", "sequence", unique=True),
        Index("uq_invoices_number", "tenant_id", "number", unique=True),
        # One invoice per order; one credit note per refunded return.
        Index(
            "uq_invoices_order_invoice",
            "tenant_id",
            "order_id",
            unique=True,
            postgresql_where=text("kind = 'invoice'"),
        ),
        Index(
            "uq_invoices_return",
            "tenant_id",
            "return_id",
            unique=True,
            postgresql_where=text("return_id IS NOT NULL"),
        ),
        Index("ix_invoices_order", "tenant_id", "order_id"),
    )
