"""API shapes for tenants."""

from __future__ import annotations

import datetime as dt
from uuid import UUID

from orderdesk.core.schemas import OutputSchema


class TenantView(OutputSchema):
    id: UUID
    slug: str
    name: str
    time_zone: str
    created_at: dt.datetime
