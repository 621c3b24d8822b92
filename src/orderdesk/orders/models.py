"""Orders, their lines, holds, verification checks, timeline events and idempotency keys.

Every table here is tenant-owned: `tenant_id` leads each primary key and each
foreign key between them.
"""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    Enum,
    FetchedValue,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column
from orderdesk.orders.states import HoldReason, OrderStatus


class Channel(enum.StrEnum):
    AGENT = "agent"  # typed in by an agent (phone, fax, email read by a person)
    API = "api"  # pushed by the client's systems
    CSV = "csv"  # bulk import
    EMAIL = "email"  # created from a customer's email
    CHAT = "chat"  # created from a chat conversation
    SHOP = "shop"  # a shop platform's webhook (Shopify, …)
    PORTAL = "portal"  # client staff in the portal


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"  # no money yet
    AUTHORIZED = "authorized"  # reserved on the customer's card, not captured
    PAID = "paid"  # captured
    FAILED = "failed"  # declined or errored
    REFUNDED = "refunded"  # money returned


class Priority(enum.StrEnum):
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class CheckResult(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"


class CheckResolution(enum.StrEnum):
    CONFIRMED = "confirmed"  # an agent confirmed the problem is real (order stays unverified)
    OVERRIDDEN = "overridden"  # an agent judged the check wrong for this order


def pg_enum(kind: type[enum.Enum], name: str) -> Enum:
    return Enum(kind, name=name, values_callable=lambda e: [m.value for m in e])


class CatalogItem(Base):
    """A SKU the tenant sells. With a catalog, orders may only name active SKUs."""

    __tablename__ = "catalog_items"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[dt.datetime] = created_at_column()


class OrderCounter(Base):
    """The last order number handed out per tenant."""

    __tablename__ = "order_counters"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    last_number: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class Order(Base):
    __tablename__ = "orders"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger)
    external_ref: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[Channel] = mapped_column(pg_enum(Channel, "order_channel"))
    status: Mapped[OrderStatus] = mapped_column(pg_enum(OrderStatus, "order_status"))
    payment_status: Mapped[PaymentStatus] = mapped_column(pg_enum(PaymentStatus, "payment_status"))
    priority: Mapped[Priority] = mapped_column(pg_enum(Priority, "order_priority"))
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str | None] = mapped_column(String(254))
    customer_phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    shipping_address: Mapped[dict] = mapped_column(JSONB)
    billing_address: Mapped[dict | None] = mapped_column(JSONB)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    shipping_minor: Mapped[int] = mapped_column(BigInteger)
    discount_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)
    ship_by: Mapped[dt.datetime | None]
    deliver_by: Mapped[dt.datetime | None]
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default="{}")
    notes: Mapped[str | None] = mapped_column(Text)
    # Same customer + same lines within a short time is a likely duplicate; this makes it one lookup.
    lines_fingerprint: Mapped[str] = mapped_column(String(64))
    search_text: Mapped[str] = mapped_column(
        Text,
        Computed(
            "lower(number::text || ' ' || coalesce(external_ref, '') || ' ' || customer_name"
            " || ' ' || coalesce(customer_email, ''))",
            persisted=True,
        ),
    )
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()
    # When the order entered its current status. A trigger keeps it on every insert and
    # status change, whoever writes (the ORM or raw SQL such as the allocation's): never
    # set it here. Like `search_text`, it is expired after an update; load it by name.
    status_changed_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=text("now()"), server_onupdate=FetchedValue()
    )
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    # The timeline's last sequence number; the next event takes the one after.
    last_event_seq: Mapped[int] = mapped_column(Integer, server_default=text("0"))

    __table_args__ = (
        Index("uq_orders_tenant_number", "tenant_id", "number", unique=True),
        Index(
            "uq_orders_tenant_external_ref",
            "tenant_id",
            "external_ref",
            unique=True,
            postgresql_where=text("external_ref IS NOT NULL"),
        ),
        # Keyset pagination: newest first within a tenant.
        Index("ix_orders_tenant_created", "tenant_id", text("created_at DESC"), text("id DESC")),
        Index("ix_orders_tenant_status_created", "tenant_id", "status", text("created_at DESC")),
        # The operations view's stuck orders: entered this status before a cutoff.
        Index("ix_orders_tenant_status_since", "tenant_id", "status", "status_changed_at"),
        Index("ix_orders_duplicate_lookup", "tenant_id", "customer_email", "lines_fingerprint", "created_at"),
        Index("ix_orders_tags", "tags", postgresql_using="gin"),
        Index(
            "ix_orders_search_trgm",
            "search_text",
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        ),
        CheckConstraint("total_minor >= 0", name="total_not_negative"),
    )


class OrderLine(Base):
    __tablename__ = "order_lines"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID] = mapped_column(primary_key=True)
    line_no: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    total_minor: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"], ondelete="CASCADE"
        ),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )


class OrderHold(Base):
    __tablename__ = "order_holds"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    reason: Mapped[HoldReason] = mapped_column(pg_enum(HoldReason, "hold_reason"))
    note: Mapped[str | None] = mapped_column(String(500))
    placed_at: Mapped[dt.datetime] = created_at_column()
    placed_by: Mapped[str] = mapped_column(String(100))
    released_at: Mapped[dt.datetime | None]
    released_by: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"], ondelete="CASCADE"
        ),
        # One active hold per reason; released ones stay as history.
        Index(
            "uq_order_holds_active_reason",
            "tenant_id",
            "order_id",
            "reason",
            unique=True,
            postgresql_where=text("released_at IS NULL"),
        ),
    )


class VerificationCheck(Base):
    __tablename__ = "verification_checks"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID] = mapped_column(primary_key=True)
    check: Mapped[str] = mapped_column(String(40), primary_key=True)
    result: Mapped[CheckResult] = mapped_column(pg_enum(CheckResult, "check_result"))
    detail: Mapped[str] = mapped_column(String(500))
    checked_at: Mapped[dt.datetime] = created_at_column()
    resolution: Mapped[CheckResolution | None] = mapped_column(pg_enum(CheckResolution, "check_resolution"))
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolved_at: Mapped[dt.datetime | None]
    resolution_note: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"], ondelete="CASCADE"
        ),
    )


class OrderEvent(Base):
    """One entry of an order's timeline. Never updated or deleted (the database refuses)."""

    __tablename__ = "order_events"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor_kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(20))
    summary: Mapped[str] = mapped_column(String(500))
    changes: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))

    __table_args__ = (ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),)


class IdempotencyKey(Base):
    """A create request's key and its first answer, replayed for retries."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(SmallInteger)
    response_body: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)
