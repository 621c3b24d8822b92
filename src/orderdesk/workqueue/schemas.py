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

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "tenant_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                    "kind": "order_entry",
                    "title": "Phone order from Ms Jansen: 2 tents, call back to confirm the address",
                    "priority": "high",
                    "language": "de",
                    "channel": "phone",
                }
            ]
        },
    }


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
    conversation_id: UUID | None = None
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


class WorkItemPage(OutputSchema):
    items: list[WorkItemView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


def _examples(*examples: dict) -> dict:
    return {**InputSchema.model_config, "json_schema_extra": {"examples": list(examples)}}


class SnoozeIn(InputSchema):
    until: dt.datetime = Field(
        description="When the item returns to the queue: in the future, at most 14 days away,"
        " with a time zone"
    )

    model_config = _examples({"until": "2026-11-27T09:00:00+01:00"})


class WaitIn(InputSchema):
    party: str = Field(description="`customer` or `client`: who has the next move; the SLA clock pauses")

    model_config = _examples({"party": "customer"})


class CompleteIn(InputSchema):
    outcome: str = Field(
        description="resolved, no_action_needed, escalated or duplicate;"
        " leads may also withdraw an item (`withdrawn`)"
    )
    note: str | None = Field(default=None, max_length=500)

    model_config = _examples({"outcome": "resolved", "note": "Address confirmed with the customer by phone"})


class ReassignIn(InputSchema):
    agent_id: UUID = Field(description="An active staff member assigned to the item's client")

    model_config = _examples({"agent_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"})


class SlaPolicyIn(InputSchema):
    """A tenant's SLA policy; what is left out takes the default. Every problem is reported at once."""

    time_zone: str | None = Field(
        default=None, description="IANA zone, e.g. Europe/Berlin; default the tenant's"
    )
    business_hours: dict[str, list[str]] | None = Field(
        default=None, description='Opening windows per weekday, e.g. {"mon": ["08:00-12:00", "13:00-17:00"]}'
    )
    holidays: list[str] | None = Field(default=None, description="ISO dates the clock does not run")
    targets: dict[str, dict[str, int]] | None = Field(
        default=None,
        description='Business minutes per kind and priority, e.g. {"verification": {"normal": 240}}',
    )
    at_risk_percent: int | None = Field(
        default=None, description="At risk when less than this share of the target is left"
    )
    client_tier: int | None = Field(
        default=None, description="1 (most important) to 3; ranks items of equal urgency"
    )
    stuck_after_hours: dict[str, int] | None = Field(
        default=None, description="Hours an order may sit in a status before it counts as stuck"
    )

    model_config = _examples(
        {
            "time_zone": "Europe/Berlin",
            "business_hours": {
                "mon": ["08:00-12:00", "13:00-18:00"],
                "tue": ["08:00-18:00"],
                "wed": ["08:00-18:00"],
                "thu": ["08:00-18:00"],
                "fri": ["08:00-16:00"],
                "sat": [],
                "sun": [],
            },
            "holidays": ["2026-12-25", "2026-12-26"],
            "targets": {"verification": {"normal": 240, "high": 120, "urgent": 60}},
            "at_risk_percent": 20,
            "client_tier": 1,
        }
    )


class SlaPolicyView(OutputSchema):
    tenant_id: UUID
    time_zone: str
    business_hours: dict[str, list[str]]
    holidays: list[str]
    targets: dict[str, dict[str, int]]
    at_risk_percent: int
    client_tier: int
    stuck_after_hours: dict[str, int]
    recomputed_items: int | None = Field(
        default=None, description="After a change: active items whose due time was recomputed"
    )
