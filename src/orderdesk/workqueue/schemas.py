"""Shapes of the work queue: what comes in from forms, what pages and jobs read."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from pydantic import Field

from orderdesk.core.schemas import InputSchema, OutputSchema
from orderdesk.orders.models import Priority
from orderdesk.workqueue.states import WorkItemKind


class WorkItemCreate(InputSchema):
    """A work item made by hand (an order taken by phone, a follow-up, …)."""

    tenant_id: UUID
    kind: WorkItemKind
    title: str = Field(min_length=1, max_length=200)
    detail: str | None = Field(default=None, max_length=5000)
    order_number: int | None = Field(default=None, ge=1, description="Links the item to this order")
    priority: Priority | None = Field(default=None, description="Defaults to the order's priority, or normal")
    language: str | None = Field(default=None, max_length=16)
    channel: str | None = Field(default=None, max_length=16)


class WorkItemView(OutputSchema):
    id: UUID
    tenant_id: UUID
    tenant_name: str = ""
    kind: str
    status: str
    outcome: str | None
    outcome_note: str | None
    title: str
    detail: str | None
    cause: str
    order_id: UUID | None
    order_number: int | None
    language: str | None
    channel: str | None
    priority: str
    value_minor: int
    currency: str | None
    client_tier: int
    due_at: dt.datetime | None
    at_risk_at: dt.datetime | None
    sla_target_seconds: int
    sla_consumed_seconds: int
    sla_running_since: dt.datetime | None
    escalated_at: dt.datetime | None
    claimed_by: UUID | None
    claimed_by_name: str | None = None
    claimed_at: dt.datetime | None
    lease_expires_at: dt.datetime | None
    snoozed_until: dt.datetime | None
    cause_resolved_at: dt.datetime | None
    created_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    finished_by: str | None
    # Derived at read time from the stored clock.
    at_risk: bool = False
    breached: bool = False

    @property
    def active(self) -> bool:
        return self.status not in ("done", "cancelled")


class QueueCount(OutputSchema):
    tenant_id: UUID
    tenant_name: str
    kind: str
    ready: int
    at_risk: int
    breached: int
    oldest_created_at: dt.datetime | None


class AgentLoad(OutputSchema):
    agent_id: UUID
    name: str
    role: str
    last_seen_at: dt.datetime | None
    online: bool
    claimed: list[WorkItemView]


class TenantBoard(OutputSchema):
    tenant_id: UUID
    tenant_name: str
    open: int
    claimed: int
    snoozed: int
    waiting: int
    at_risk: int
    breached: int
    oldest_created_at: dt.datetime | None
    by_kind: dict[str, int]


class LeadBoard(OutputSchema):
    generated_at: dt.datetime
    tenants: list[TenantBoard]
    agents: list[AgentLoad]
    urgent: list[WorkItemView]


class WorkNotificationView(OutputSchema):
    """An SLA notice for one person: an item they hold is at risk, or an item breached."""

    id: UUID
    tenant_id: UUID
    tenant_name: str = ""
    work_item_id: UUID
    kind: str = Field(description="`at_risk` (less than the policy's share of the SLA left) or `breached`")
    due_at: dt.datetime
    title: str
    created_at: dt.datetime
    read_at: dt.datetime | None
