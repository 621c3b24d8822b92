"""API shapes for webhook endpoints and the delivery log."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from pydantic import Field

from orderdesk.core.schemas import InputSchema, OutputSchema


class EndpointCreate(InputSchema):
    url: str = Field(max_length=2000, examples=["https://wms.example.com/hooks/orderdesk"])
    description: str = Field(default="", max_length=300, examples=["Warehouse system"])
    event_types: list[str] = Field(
        default_factory=list,
        description="Empty: every event type",
        examples=[["order.verified", "order.cancelled"]],
    )
    ordered: bool = Field(default=True, description="Deliver an order's events strictly in order")
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1000)
    enabled: bool = True
    tenant_id: UUID | None = Field(default=None, description="Required for staff who reach several tenants")

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {
            "examples": [
                {
                    "url": "https://wms.example.com/hooks/orderdesk",
                    "description": "Warehouse system",
                    "event_types": ["order.verified", "order.cancelled"],
                    "ordered": True,
                }
            ]
        },
    }


class EndpointUpdate(InputSchema):
    url: str | None = Field(default=None, max_length=2000)
    description: str | None = Field(default=None, max_length=300)
    event_types: list[str] | None = None
    ordered: bool | None = None
    rate_limit_per_second: int | None = Field(default=None, ge=1, le=1000)
    enabled: bool | None = None

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"enabled": False}]},
    }


class RotateSecretIn(InputSchema):
    overlap_hours: float = Field(
        default=24, ge=0, le=24 * 7, description="How long the previous secret keeps signing too"
    )

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"overlap_hours": 24}]},
    }


class EndpointView(OutputSchema):
    id: UUID
    tenant_id: UUID
    url: str
    description: str
    event_types: list[str]
    ordered: bool
    rate_limit_per_second: int | None
    enabled: bool
    disabled_reason: str | None
    failing_since: dt.datetime | None
    previous_secret_expires_at: dt.datetime | None
    created_at: dt.datetime


class EndpointWithSecret(EndpointView):
    secret: str = Field(description="whsec_… — verify our signatures with it")


class AttemptView(OutputSchema):
    attempted_at: dt.datetime
    event_id: UUID
    delivery_id: UUID
    order_id: UUID | None
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None
    error: str | None


class DeliveryView(OutputSchema):
    id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_type: str
    order_id: UUID | None
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None


class ReplayResult(OutputSchema):
    replayed: int
