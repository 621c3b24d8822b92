"""Shipments and their lines, tracking events, returns (RMA) and their lines.

Every table is tenant-owned: `tenant_id` leads each primary key and each foreign
key between them.
"""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKeyConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from orderdesk.core.db import Base, created_at_column
from orderdesk.orders.models import pg_enum


class TrackingStatus(enum.StrEnum):
    """Normalised carrier statuses (the carrier's own wording is kept as `raw_status`)."""

    SHIPPED = "shipped"  # handed over, no carrier scan yet
    INFO_RECEIVED = "info_received"  # the carrier has the label data
    IN_TRANSIT = "in_transit"  # moving through the carrier's network
    OUT_FOR_DELIVERY = "out_for_delivery"  # on the van today
    FAILED_ATTEMPT = "failed_attempt"  # nobody home, address problem, …
    AVAILABLE_FOR_PICKUP = "available_for_pickup"  # waiting at a pick-up point
    DELIVERED = "delivered"  # with the customer: closes the shipment
    EXCEPTION = "exception"  # damaged, lost, held in customs, …
    RETURNED_TO_SENDER = "returned_to_sender"  # on its way back


class Attention(enum.StrEnum):
    """Why a shipment needs a person."""

    STUCK = "stuck"  # no tracking event for longer than the tenant allows
    FAILED_ATTEMPT = "failed_attempt"
    EXCEPTION = "exception"
    RETURNED_TO_SENDER = "returned_to_sender"


class ReturnStatus(enum.StrEnum):
    REQUESTED = "requested"  # asked for, not yet decided
    APPROVED = "approved"  # the customer may send the goods
    REJECTED = "rejected"  # refused (condition, window, policy)
    RECEIVED = "received"  # the goods are back and inspected
    REFUNDED = "refunded"  # money returned; nothing left to do


class ReturnReason(enum.StrEnum):
    DAMAGED = "damaged"
    DEFECTIVE = "defective"
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    NO_LONGER_NEEDED = "no_longer_needed"
    ARRIVED_LATE = "arrived_late"
    OTHER = "other"


class Shipment(Base):
    """One parcel (or consignment) from one warehouse: part or all of an order."""

    __tablename__ = "shipments"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID] = mapped_column()
    number: Mapped[int] = mapped_column(SmallInteger)  # 1, 2, … within the order
    warehouse_id: Mapped[UUID] = mapped_column()
    # The client system's own id for the shipment: a repeated create returns the first.
    external_ref: Mapped[str | None] = mapped_column(String(100))
    carrier: Mapped[str] = mapped_column(String(60))
    service: Mapped[str | None] = mapped_column(String(60))
    tracking_number: Mapped[str | None] = mapped_column(String(100))
    tracking_url: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[TrackingStatus] = mapped_column(pg_enum(TrackingStatus, "tracking_status"))
    attention: Mapped[Attention | None] = mapped_column(pg_enum(Attention, "shipment_attention"))
    attention_since: Mapped[dt.datetime | None]
    attention_detail: Mapped[str | None] = mapped_column(String(500))
    shipped_at: Mapped[dt.datetime] = mapped_column()
    last_event_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
    # The carrier's latest estimate: from the newest tracking event (by occurred_at) that gave one.
    estimated_delivery_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        ForeignKeyConstraint(["tenant_id", "warehouse_id"], ["warehouses.tenant_id", "warehouses.id"]),
        Index("uq_shipments_order_number", "tenant_id", "order_id", "number", unique=True),
        Index(
            "uq_shipments_external_ref",
            "tenant_id",
            "external_ref",
            unique=True,
            postgresql_where=text("external_ref IS NOT NULL"),
        ),
        Index("ix_shipments_tracking_number", "tenant_id", "tracking_number"),
        # The stuck-shipment sweep reads only shipments still on their way.
        Index(
            "ix_shipments_in_flight",
            "tenant_id",
            "last_event_at",
            postgresql_where=text("delivered_at IS NULL"),
        ),
    )


class ShipmentLine(Base):
    __tablename__ = "shipment_lines"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    shipment_id: Mapped[UUID] = mapped_column(primary_key=True)
    line_no: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    order_id: Mapped[UUID] = mapped_column()
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "shipment_id"], ["shipments.tenant_id", "shipments.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["tenant_id", "order_id", "line_no"],
            ["order_lines.tenant_id", "order_lines.order_id", "order_lines.line_no"],
        ),
        CheckConstraint("quantity > 0", name="quantity_positive"),
    )


class TrackingEvent(Base):
    """One carrier scan as reported; `external_event_id` makes retries harmless."""

    __tablename__ = "tracking_events"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    shipment_id: Mapped[UUID] = mapped_column()
    external_event_id: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[TrackingStatus] = mapped_column(pg_enum(TrackingStatus, "tracking_status"))
    raw_status: Mapped[str | None] = mapped_column(String(200))
    location: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[dt.datetime] = mapped_column()
    # The carrier's estimated delivery as this event stated it, if it did.
    estimated_delivery_at: Mapped[dt.datetime | None]
    received_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "shipment_id"], ["shipments.tenant_id", "shipments.id"], ondelete="CASCADE"
        ),
        Index("uq_tracking_events_sender_id", "tenant_id", "shipment_id", "external_event_id", unique=True),
        Index("ix_tracking_events_shipment_time", "tenant_id", "shipment_id", "occurred_at"),
    )


class Return(Base):
    """A return merchandise authorisation (RMA) for some lines of a delivered order."""

    __tablename__ = "returns"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    order_id: Mapped[UUID] = mapped_column()
    number: Mapped[int] = mapped_column(SmallInteger)  # 1, 2, … within the order
    rma: Mapped[str] = mapped_column(String(40))
    status: Mapped[ReturnStatus] = mapped_column(pg_enum(ReturnStatus, "return_status"))
    reason: Mapped[ReturnReason] = mapped_column(pg_enum(ReturnReason, "return_reason"))
    note: Mapped[str | None] = mapped_column(String(1000))
    channel: Mapped[str] = mapped_column(String(20))
    requested_by: Mapped[str] = mapped_column(String(200))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[dt.datetime | None]
    decision_note: Mapped[str | None] = mapped_column(String(1000))
    received_at: Mapped[dt.datetime | None]
    received_warehouse_id: Mapped[UUID | None] = mapped_column()
    refund_minor: Mapped[int | None] = mapped_column(BigInteger)
    refunded_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "received_warehouse_id"], ["warehouses.tenant_id", "warehouses.id"]
        ),
        Index("uq_returns_order_number", "tenant_id", "order_id", "number", unique=True),
        Index("uq_returns_tenant_rma", "tenant_id", "rma", unique=True),
        CheckConstraint("refund_minor IS NULL OR refund_minor > 0", name="refund_positive"),
    )


class ReturnLine(Base):
    __tablename__ = "return_lines"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    return_id: Mapped[UUID] = mapped_column(primary_key=True)
    line_no: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    order_id: Mapped[UUID] = mapped_column()
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    restocked_qty: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    condition: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "return_id"], ["returns.tenant_id", "returns.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(
            ["tenant_id", "order_id", "line_no"],
            ["order_lines.tenant_id", "order_lines.order_id", "order_lines.line_no"],
        ),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("restocked_qty >= 0 AND restocked_qty <= quantity", name="restocked_within_quantity"),
    )
