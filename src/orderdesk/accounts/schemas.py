"""API shapes for accounts and keys."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from pydantic import Field

from orderdesk.core.schemas import InputSchema, OutputSchema


class ApiKeyCreate(InputSchema):
    name: str = Field(min_length=1, max_length=100, examples=["Warehouse sync"])
    # Staff choose the tenant; a client user's key is always for their own tenant.
    tenant_id: UUID | None = None

    model_config = {
        **InputSchema.model_config,
        "json_schema_extra": {"examples": [{"name": "Warehouse sync"}]},
    }


class ApiKeyView(OutputSchema):
    id: UUID
    tenant_id: UUID
    name: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class IssuedApiKeyView(ApiKeyView):
    secret: str = Field(description="The key itself. It is shown once and cannot be retrieved later.")


class MeView(OutputSchema):
    kind: str
    id: UUID
    display_name: str
    staff_role: str | None
    client_role: str | None
    tenant_ids: list[UUID]
