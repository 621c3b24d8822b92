"""Periodic fulfillment sweep: stuck shipments flagged, waiting backorders routed again,
delivered orders closed once their return window is over.

Both halves are idempotent (a flagged shipment is not flagged twice; a backorder
with no stock stays as it is), so the sweep may run more than once or overlap.
"""

from __future__ import annotations

from typing import Any

from orderdesk.fulfillment import services as fulfillment
from orderdesk.inventory import services as inventory
from orderdesk.tenants.services import system_actor

SWEEP_MINUTES = set(range(0, 60, 5))


async def sweep_fulfillment(ctx: dict[str, Any]) -> dict[str, int]:
    db = ctx["db"]
    actor = await system_actor(db)
    return {
        "stuck_flagged": await fulfillment.flag_stuck_shipments(db, actor),
        "backorders_served": await inventory.reallocate_waiting_backorders(db, actor),
        "orders_closed": await fulfillment.close_settled_orders(db, actor),
    }
