"""Work items, their claims, and each tenant's SLA policy. All tenant-owned.

The SLA clock of an item lives in its row (`sla_*` columns) so that pausing,
resuming and policy changes are plain updates; `due_at` and `at_risk_at` are
derived from it and stored, so that "at risk" and "breached" are comparisons
with now() that an index can answer.
"""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Enum,
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
from orderdesk.orders.models import Priority
from orderdesk.workqueue.states import WorkItemKind, WorkItemStatus, WorkOutcome

# The statuses an item may be claimed from, and those that count as still to do.
ACTIVE_SQL = "status IN ('open', 'claimed', 'snoozed', 'waiting_customer', 'waiting_client')"


def assignment_fits_sql(item: str, assignment: str = "a") -> str:
    """SQL: the agent assignment `assignment` brings the skills the work item `item` needs."""
    return (
        f"(cardinality({assignment}.task_kinds) = 0 OR {item}.kind::text = ANY ({assignment}.task_kinds))"
        f" AND ({item}.language IS NULL OR {item}.language = ANY ({assignment}.languages))"
        f" AND ({item}.channel IS NULL OR {item}.channel = ANY ({assignment}.channels))"
    )


def _enum(kind, name: str, *, create: bool = True) -> Enum:
    return Enum(kind, name=name, values_callable=lambda e: [m.value for m in e], create_type=create)


class SlaPolicyRow(Base):
    """A tenant's SLA policy: business hours, holidays, targets. Absent: the defaults apply."""

    __tablename__ = "sla_policies"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    time_zone: Mapped[str] = mapped_column(String(64))
    # {"mon": ["08:00-12:00", "13:00-17:00"], …, "sun": []}
    business_hours: Mapped[dict] = mapped_column(JSONB)
    holidays: Mapped[list[dt.date]] = mapped_column(ARRAY(Date), server_default="{}")
    # {"verification": {"normal": 240, "high": 120, "urgent": 60}, …} in business minutes
    targets: Mapped[dict] = mapped_column(JSONB)
    at_risk_percent: Mapped[int] = mapped_column(SmallInteger, server_default=text("20"))
    client_tier: Mapped[int] = mapped_column(SmallInteger, server_default=text("2"))
    # {"awaiting_verification": 8, …}: hours in one status after which an order counts as stuck.
    stuck_after_hours: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    updated_at: Mapped[dt.datetime] = created_at_column()
    updated_by: Mapped[str] = mapped_column(String(200))


class WorkItem(Base):
    __tablename__ = "work_items"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    kind: Mapped[WorkItemKind] = mapped_column(_enum(WorkItemKind, "work_item_kind"))
    status: Mapped[WorkItemStatus] = mapped_column(_enum(WorkItemStatus, "work_item_status"))
    outcome: Mapped[WorkOutcome | None] = mapped_column(_enum(WorkOutcome, "work_outcome"))
    outcome_note: Mapped[str | None] = mapped_column(String(500))
    title: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)
    # What opened it ("verification", "hold:address_problem", "manual"); one active item per order and cause.
    cause: Mapped[str] = mapped_column(String(60))
    order_id: Mapped[UUID | None]
    order_number: Mapped[int | None] = mapped_column(BigInteger)
    # The conversation of the communication feature a customer-message item answers.
    conversation_id: Mapped[UUID | None]
    # Skills the agent needs besides the kind itself; NULL means anyone.
    language: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[Priority] = mapped_column(_enum(Priority, "order_priority", create=False))
    value_minor: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    currency: Mapped[str | None] = mapped_column(String(3))
    client_tier: Mapped[int] = mapped_column(SmallInteger, server_default=text("2"))
    # The SLA clock: target, business seconds banked while paused, running since (NULL = paused).
    sla_target_seconds: Mapped[int] = mapped_column(Integer)
    sla_consumed_seconds: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    sla_running_since: Mapped[dt.datetime | None]
    due_at: Mapped[dt.datetime | None]
    at_risk_at: Mapped[dt.datetime | None]
    escalated_at: Mapped[dt.datetime | None]
    claimed_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id"))
    claimed_at: Mapped[dt.datetime | None]
    lease_expires_at: Mapped[dt.datetime | None]
    snoozed_until: Mapped[dt.datetime | None]
    # Set when the cause went away while an agent held the item: theirs to close.
    cause_resolved_at: Mapped[dt.datetime | None]
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = created_at_column()
    updated_at: Mapped[dt.datetime] = created_at_column()
    finished_at: Mapped[dt.datetime | None]
    finished_by: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))

    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "order_id"], ["orders.tenant_id", "orders.id"]),
        ForeignKeyConstraint(
            ["tenant_id", "conversation_id"], ["conversations.tenant_id", "conversations.id"]
        ),
        # An open item's SLA clock runs; Get next starts its scan at a due time (floors.py).
        CheckConstraint("status <> 'open' OR due_at IS NOT NULL", name="open_has_due"),
        # Only the items that have one (most have no conversation): no query looks up a NULL,
        # and a full index piles every other item into one run of equal keys (migration 0020).
        Index(
            "ix_work_items_conversation",
            "tenant_id",
            "conversation_id",
            postgresql_where=text("conversation_id IS NOT NULL"),
        ),
        # "Get next": the claimable items in priority order (see policies.priority_key).
        Index(
            "ix_work_items_queue",
            "due_at",
            text("priority DESC"),
            text("value_minor DESC"),
            "client_tier",
            "created_at",
            "id",
            postgresql_where=text("status = 'open'"),
        ),
        Index(
            "uq_work_items_active_cause",
            "tenant_id",
            "order_id",
            "cause",
            unique=True,
            postgresql_where=text(f"order_id IS NOT NULL AND {ACTIVE_SQL}"),
        ),
        Index("ix_work_items_tenant_status", "tenant_id", "status"),
        Index("ix_work_items_order", "tenant_id", "order_id", postgresql_where=text("order_id IS NOT NULL")),
        # The holder's items in claim order: Get next's look-up starts at the agent's last claim.
        Index(
            "ix_work_items_claimed_by",
            "claimed_by",
            "claimed_at",
            postgresql_where=text("status = 'claimed'"),
        ),
        Index("ix_work_items_lease", "lease_expires_at", postgresql_where=text("status = 'claimed'")),
        Index("ix_work_items_snoozed", "snoozed_until", postgresql_where=text("status = 'snoozed'")),
    )


class WorkQueueFloor(Base):
    """No open item of the tenant that one of its agents may take is due before `due_floor`.

    Get next starts its scan of the queue there (see workqueue/floors.py). Lowered by
    triggers (migration 0021), raised by `floors.raise_floors`; no row: no floor yet.
    """

    __tablename__ = "work_queue_floors"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    due_floor: Mapped[dt.datetime]
    changed_at: Mapped[dt.datetime] = created_at_column()


class WorkClaim(Base):
    """Who held an item, from when until when, and why it ended. The claim history."""

    __tablename__ = "work_claims"

    tenant_id: Mapped[UUID] = mapped_column(primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    work_item_id: Mapped[UUID]
    agent_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # How the claim began: get_next, reassign.
    via: Mapped[str] = mapped_column(String(20))
    released_at: Mapped[dt.datetime | None]
    # done, cancelled, hand_back, expired, snooze, wait, reassigned
    release_reason: Mapped[str | None] = mapped_column(String(20))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "work_item_id"], ["work_items.tenant_id", "work_items.id"], ondelete="CASCADE"
        ),
        # At most one live claim per item: a double claim fails here, whatever the code does.
        Index(
            "uq_work_claims_active",
            "tenant_id",
            "work_item_id",
            unique=True,
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_work_claims_agent", "agent_id", "claimed_at"),
    )


class WorkNotification(Base):
    """A person told that an item is about to breach its SLA, or has breached it.

    One row per item, kind, person and due time: the sweep that writes them may run
    any number of times, and a new due time (a changed policy, a resumed clock) is a
    new notice.
    """

    __tablename__ = "work_notifications"

    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    id: Mapped[UUID] = mapped_column(primary_key=True)
    work_item_id: Mapped[UUID]
    recipient_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    # at_risk (told to the agent holding the item), breached (the holder and the client's leads)
    kind: Mapped[str] = mapped_column(String(20))
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    title: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = created_at_column()
    read_at: Mapped[dt.datetime | None]

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "work_item_id"], ["work_items.tenant_id", "work_items.id"], ondelete="CASCADE"
        ),
        CheckConstraint("kind IN ('at_risk', 'breached')", name="kind"),
        Index(
            "uq_work_notifications_once",
            "tenant_id",
            "work_item_id",
            "kind",
            "recipient_id",
            "due_at",
            unique=True,
        ),
        Index("ix_work_notifications_recipient", "recipient_id", "created_at"),
    )
