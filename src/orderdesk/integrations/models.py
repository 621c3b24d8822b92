"""The transactional outbox and webhook delivery to client systems.

`outbox_events` is written in the same transaction as the order change it
describes. Workers fan each event out to the tenant's matching endpoints as
`webhook_deliveries`, and every HTTP attempt is kept in `webhook_attempts` (the
delivery log).
"""

from __future__ import annotations

import datetime as dt
import enum
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Identity,
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
from orderdesk.orders.models import pg_enum


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or for an earlier event of the order)
    SUCCEEDED = "succeeded"  # the receiver answered 2xx
    DEAD = "dead"  # every attempt failed, or the endpoint is gone; replayable


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(300), server_default="")
    # Empty means every event type.
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(60)), server_default="{}")
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))
    # Ordered endpoints get an order's event n+1 only after event n succeeded or died.
    ordered: Mapped[bool] = mapped_column(server_default=text("true"))
    rate_limit_per_second: Mapped[int | None] = mapped_column(Integer)
    secret: Mapped[str] = mapped_column(String(200))
    # During a rotation both secrets sign, until the previous one expires.
    previous_secret: Mapped[str | None] = mapped_column(String(200))
    previous_secret_expires_at: Mapped[dt.datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(300))
    failing_since: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()


class OutboxEvent(Base):
    __tablename__ = "outbox_events"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)  # the stable event id (webhook-id)
    event_type: Mapped[str] = mapped_column(String(60))
    order_id: Mapped[UUID | None]
    # Per order, 1, 2, 3…: the order in which its events happened.
    order_seq: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict] = mapped_column(JSONB)
    created_at: Mapped[dt.datetime] = created_at_column()
    # Set once deliveries exist for every matching endpoint.
    fanned_out_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_outbox_events_unfanned", "created_at", postgresql_where=text("fanned_out_at IS NULL")),
        Index("uq_outbox_events_order_seq", "tenant_id", "order_id", "order_seq", unique=True),
    )


class WebhookDelivery(Base):
    """One event for one endpoint, attempted until it succeeds or dies."""

    __tablename__ = "webhook_deliveries"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    endpoint_id: Mapped[UUID]
    event_id: Mapped[UUID]
    order_id: Mapped[UUID | None]
    order_seq: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[DeliveryStatus] = mapped_column(pg_enum(DeliveryStatus, "delivery_status"))
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # A worker holds a delivery while it posts it; an expired lease means the worker died.
    leased_until: Mapped[dt.datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = created_at_column()
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "endpoint_id"],
            ["webhook_endpoints.tenant_id", "webhook_endpoints.id"],
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(["tenant_id", "event_id"], ["outbox_events.tenant_id", "outbox_events.id"]),
        Index("uq_webhook_deliveries_event_endpoint", "tenant_id", "event_id", "endpoint_id", unique=True),
        Index("ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_deliveries_order", "tenant_id", "endpoint_id", "order_id", "order_seq"),
    )


class WebhookAttempt(Base):
    """One HTTP attempt: the delivery log."""

    __tablename__ = "webhook_attempts"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    delivery_id: Mapped[UUID]
    endpoint_id: Mapped[UUID]
    event_id: Mapped[UUID]
    order_id: Mapped[UUID | None]
    attempted_at: Mapped[dt.datetime] = created_at_column()
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    latency_ms: Mapped[int] = mapped_column(Integer)
    response_excerpt: Mapped[str | None] = mapped_column(String(1000))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "delivery_id"],
            ["webhook_deliveries.tenant_id", "webhook_deliveries.id"],
            ondelete="CASCADE",
        ),
        Index("ix_webhook_attempts_endpoint_time", "tenant_id", "endpoint_id", text("attempted_at DESC")),
        Index("ix_webhook_attempts_order", "tenant_id", "order_id"),
    )
