"""The tenant's catalog of SKUs, and the verification policy orders are checked against."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.accounts.models import ClientRole
from orderdesk.core import money
from orderdesk.core.db import Database
from orderdesk.core.errors import NotFound, PermissionDenied
from orderdesk.core.validation import Collector
from orderdesk.orders.models import CatalogItem
from orderdesk.orders.verification import VerificationPolicy
from orderdesk.tenants.models import Tenant


def _require_tenant(actor: Actor, tenant_id: UUID) -> None:
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")


def _require_manager(actor: Actor) -> None:
    if actor.kind in (ActorKind.SYSTEM, ActorKind.API_KEY) or actor.is_admin:
        return
    if actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN:
        return
    raise PermissionDenied("Only administrators and the client's systems can change the catalog")


async def upsert_catalog_item(
    db: Database, actor: Actor, tenant_id: UUID, sku: str, name: str, active: bool
) -> CatalogItem:
    """Create or update one SKU. Raises NotFound, PermissionDenied, ValidationFailed."""
    _require_tenant(actor, tenant_id)
    _require_manager(actor)
    check = Collector()
    sku = check.text("sku", sku, max_length=64)
    name = check.text("name", name, max_length=200)
    check.raise_if_any()
    async with db.transaction(actor.scope) as session:
        await session.execute(
            pg_insert(CatalogItem)
            .values(tenant_id=tenant_id, sku=sku, name=name, active=active)
            .on_conflict_do_update(index_elements=["tenant_id", "sku"], set_={"name": name, "active": active})
        )
        return await session.scalar(
            select(CatalogItem).where(CatalogItem.tenant_id == tenant_id, CatalogItem.sku == sku)
        )


async def list_catalog(db: Database, actor: Actor, tenant_id: UUID) -> list[CatalogItem]:
    """Every SKU of the tenant, by SKU. Raises NotFound."""
    _require_tenant(actor, tenant_id)
    async with db.transaction(actor.scope) as session:
        rows = await session.scalars(
            select(CatalogItem).where(CatalogItem.tenant_id == tenant_id).order_by(CatalogItem.sku)
        )
        return list(rows)


async def set_verification_policy(
    db: Database, actor: Actor, tenant_id: UUID, policy: VerificationPolicy
) -> VerificationPolicy:
    """Store the tenant's verification policy. Raises NotFound, PermissionDenied, ValidationFailed."""
    _require_tenant(actor, tenant_id)
    if not (
        actor.kind is ActorKind.SYSTEM
        or actor.is_admin
        or (actor.kind is ActorKind.CLIENT and actor.client_role is ClientRole.ADMIN)
    ):
        raise PermissionDenied("Only administrators can change how orders are verified")
    check = Collector()
    if not 1 <= policy.duplicate_window_minutes <= 7 * 24 * 60:
        check.add("duplicate_window_minutes", "must be between 1 and 10080 (a week)")
    for currency, amount in (policy.high_value_minor or {}).items():
        if not money.is_currency(currency):
            check.add(f"high_value_minor.{currency}", "is not an ISO 4217 currency code")
        elif amount <= 0:
            check.add(f"high_value_minor.{currency}", "must be positive")
    check.raise_if_any()
    async with db.transaction(actor.scope) as session:
        tenant = await session.get(Tenant, tenant_id, with_for_update=True)
        if tenant is None:
            raise NotFound("Tenant")
        tenant.settings = {
            **tenant.settings,
            "verification": {
                "auto_verify": policy.auto_verify,
                "high_value_minor": policy.high_value_minor or {},
                "duplicate_window_minutes": policy.duplicate_window_minutes,
            },
        }
    return policy


async def get_verification_policy(db: Database, actor: Actor, tenant_id: UUID) -> VerificationPolicy:
    _require_tenant(actor, tenant_id)
    async with db.transaction(actor.scope) as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("Tenant")
    return VerificationPolicy.from_settings(tenant.settings)
