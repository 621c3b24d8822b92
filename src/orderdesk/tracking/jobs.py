"""Housekeeping for the tracking page: failed lookups older than every throttling window."""

from __future__ import annotations

from typing import Any

from orderdesk.tracking.services import purge_lookup_failures


async def purge_tracking_lookups_job(ctx: dict[str, Any]) -> dict[str, int]:
    return {"failures": await purge_lookup_failures(ctx["db"])}
