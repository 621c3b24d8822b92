"""A tenant's fulfillment policy, kept in `tenants.settings["fulfillment"]`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole
from orderdesk.core.db import Database
from orderdesk.core.errors import NotFound, PermissionDenied
from orderdesk.tenants.models import Tenant

INVOICE_MOMENTS = ("verification", "shipment", "manual")
# Days from the warehouse to the customer when the carrier gives no estimate: a domestic
# parcel service's usual promise, erring late so that "on track" is not said too easily.
DEFAULT_TRANSIT_DAYS = 3
MAX_TRANSIT_DAYS = 60


@dataclass(frozen=True, slots=True)
class FulfillmentPolicy:
    stuck_after_hours: int = 72
    return_window_days: int = 30
    invoice_on: str = "manual"  # until the tenant chooses verification or shipment
    transit_days: int = DEFAULT_TRANSIT_DAYS  # the expected delivery when no carrier estimate exists

    @classmethod
    def from_settings(cls, settings: dict | None) -> FulfillmentPolicy:
        raw = (settings or {}).get("fulfillment", {}) if isinstance(settings, dict) else {}
        invoice_on = raw.get("invoice_on", "manual")
        transit_days = raw.get("transit_days", DEFAULT_TRANSIT_DAYS)
        return cls(
            stuck_after_hours=int(raw.get("stuck_after_hours", 72)),
            return_window_days=int(raw.get("return_window_days", 30)),
            invoice_on=invoice_on if invoice_on in INVOICE_MOMENTS else "manual",
            transit_days=(
                int(transit_days)
                if isinstance(transit_days, int) and 1 <= transit_days <= MAX_TRANSIT_DAYS
                else DEFAULT_TRANSIT_DAYS
            ),
        )


async def policy_of(session: AsyncSession, tenant_id: UUID) -> FulfillmentPolicy:
    tenant = await session.get(Tenant, tenant_id)
    return FulfillmentPolicy.from_settings(tenant.settings if tenant else {})


async def get_policy(db: Database, actor: Actor, tenant_id: UUID) -> FulfillmentPolicy:
    """Raises NotFound."""
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    async with db.transaction(actor.scope) as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("Tenant")
    return FulfillmentPolicy.from_settings(tenant.settings)


async def set_policy(
    db: Database, actor: Actor, tenant_id: UUID, policy: FulfillmentPolicy
) -> FulfillmentPolicy:
    """Raises NotFound, PermissionDenied (administrators only)."""
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    if not (
        actor.kind is ActorKind.SYSTEM
        or actor.is_admin
        or (actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN)
    ):
        raise PermissionDenied("Only administrators can change the fulfillment policy")
    async with db.transaction(actor.scope) as session:
        tenant = await session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("Tenant")
        tenant.settings = {**tenant.settings, "fulfillment": asdict(policy)}
    return policy
