"""Warehouses, stock per SKU per warehouse, the stock ledger, allocations and backorders.

Every table is tenant-owned: `tenant_id` leads each primary key and each foreign
key between them. `stock_levels` carries the CHECKs that make overselling
impossible even for a buggy statement; `stock_movements` is append-only.
"""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Time,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column
from orderdesk.orders.models import pg_enum


class MovementKind(enum.StrEnum):
    RECEIPT = "receipt"  # goods arrived (a positive delta from the client's systems)
    COUNT = "count"  # an absolute level reported by the warehouse system (stock take)
    ADJUSTMENT = "adjustment"  # an agent corrected the level, with a reason
    RESERVE = "reserve"  # set aside for an order
    RELEASE = "release"  # a reservation given back (cancellation, override)
    SHIP = "ship"  # reserved goods left with a shipment
    RETURN = "return"  # returned goods restocked


class Warehouse(Base):
    """A fulfillment center of one tenant."""

    __tablename__ = "warehouses"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    region: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Lower ranks first when two warehouses are equally near.
    priority: Mapped[int] = mapped_column(SmallInteger, server_default=text("100"))
    # ISO countries it ships to; empty means anywhere.
    ships_to: Mapped[list[str]] = mapped_column(ARRAY(String(2)), server_default="{}")
    time_zone: Mapped[str] = mapped_column(String(64), server_default="UTC")
    cutoff_time: Mapped[dt.time | None] = mapped_column(Time)
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        Index("uq_warehouses_tenant_code", "tenant_id", "code", unique=True),
        CheckConstraint("priority >= 0", name="priority_not_negative"),
    )


class StockLevel(Base):
    """On hand and reserved units of one SKU in one warehouse; available = on_hand - reserved."""

    __tablename__ = "stock_levels"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    warehouse_id: Mapped[UUID] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    reserved: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    low_stock_threshold: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "warehouse_id"], ["warehouses.tenant_id", "warehouses.id"], ondelete="CASCADE"
        ),
        # The backstop under the conditional UPDATE: no statement can oversell.
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint(
            "low_stock_threshold IS NULL OR low_stock_threshold >= 0", name="threshold_not_negative"
        ),
        Index("ix_stock_levels_tenant_sku", "tenant_id", "sku"),
    )


class StockMovement(Base):
    """One change of a stock level: who, why, before → after. Never updated or deleted."""

    __tablename__ = "stock_movements"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    warehouse_id: Mapped[UUID] = mapped_column()
    sku: Mapped[str] = mapped_column(String(64))
    kind: Mapped[MovementKind] = mapped_column(pg_enum(MovementKind, "stock_movement_kind"))
    on_hand_before: Mapped[int] = mapped_column(Integer)
    on_hand_after: Mapped[int] = mapped_column(Integer)
    reserved_before: Mapped[int] = mapped_column(Integer)
    reserved_after: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[UUID | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(String(500))
    # The sender's event id for changes pushed by client systems (idempotency, audit).
    source_event_id: Mapped[str | None] = mapped_column(String(200))
    actor_kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "warehouse_id"], ["warehouses.tenant_id", "warehouses.id"]),
        Index("ix_stock_movements_level", "tenant_id", "warehouse_id", "sku", "id"),
        Index(
            "ix_stock_movements_order", "tenant_id", "order_id", postgresql_where=text("order_id IS NOT NULL")
        ),
    )


class StockUpdateReceipt(Base):
    """A stock update pushed by a client system, by its event id: retries replay the first answer."""

    __tablename__ = "stock_update_receipts"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_body: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = created_at_column()


class Allocation(Base):
    """Units of one order line reserved (and later shipped) at one warehouse."""

    __tablename__ = "order_allocations"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID] = mapped_column(primary_key=True)
    line_no: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    warehouse_id: Mapped[UUID] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    reserved_qty: Mapped[int] = mapped_column(Integer)  # still set aside, not yet shipped
    shipped_qty: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "order_id", "line_no"],
            ["order_lines.tenant_id", "order_lines.order_id", "order_lines.line_no"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(["tenant_id", "warehouse_id"], ["warehouses.tenant_id", "warehouses.id"]),
        CheckConstraint("reserved_qty >= 0 AND shipped_qty >= 0", name="quantities_not_negative"),
        Index("ix_order_allocations_warehouse_sku", "tenant_id", "warehouse_id", "sku"),
    )


class Backorder(Base):
    """Units of one order line that no warehouse could fill yet; filled as stock arrives."""

    __tablename__ = "backorders"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID] = mapped_column(primary_key=True)
    line_no: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    # Copied from the order so that "most urgent, then oldest" is one index scan.
    urgency: Mapped[int] = mapped_column(SmallInteger)
    order_created_at: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "order_id", "line_no"],
            ["order_lines.tenant_id", "order_lines.order_id", "order_lines.line_no"],
            ondelete="CASCADE",
        ),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_backorders_queue", "tenant_id", "sku", text("urgency DESC"), "order_created_at"),
    )
