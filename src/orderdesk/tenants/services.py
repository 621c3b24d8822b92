"""Tenant registry: onboarding client companies and looking them up within scope."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from orderdesk.accounts.actors import Actor, ActorKind
from orderdesk.core.db import Database
from orderdesk.core.errors import Conflict, NotFound, PermissionDenied
from orderdesk.core.ids import new_id
from orderdesk.core.tenancy import Scope
from orderdesk.core.validation import Collector
from orderdesk.tenants.models import Tenant


async def create_tenant(
    db: Database, actor: Actor, *, slug: str, name: str, time_zone: str = "UTC"
) -> Tenant:
    """Onboard a client company.

    Raises PermissionDenied unless the actor is a staff admin or the system,
    ValidationFailed for a bad slug, name or time zone, Conflict for a taken slug.
    """
    if not (actor.kind is ActorKind.SYSTEM or actor.is_admin):
        raise PermissionDenied("Only administrators can create tenants")
    check = Collector()
    slug = check.slug("slug", slug.strip())
    name = check.text("name", name, max_length=200)
    time_zone = check.time_zone("time_zone", time_zone.strip())
    check.raise_if_any()
    tenant = Tenant(id=new_id(), slug=slug, name=name, time_zone=time_zone, settings={})
    try:
        async with db.transaction(Scope()) as session:
            session.add(tenant)
    except IntegrityError as exc:
        raise Conflict(f"A tenant with slug {slug!r} already exists") from exc
    return tenant


async def list_tenants(db: Database, actor: Actor) -> list[Tenant]:
    """The active tenants the actor may reach, by name."""
    async with db.transaction(actor.scope) as session:
        rows = await session.scalars(
            select(Tenant).where(Tenant.id.in_(actor.tenant_ids)).order_by(Tenant.name)
        )
        return list(rows)


async def get_tenant(db: Database, actor: Actor, tenant_id: UUID) -> Tenant:
    """One tenant within the actor's reach. Raises NotFound otherwise."""
    if tenant_id not in actor.tenant_ids:
        raise NotFound("Tenant")
    async with db.transaction(actor.scope) as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("Tenant")
    return tenant


async def get_tenant_by_slug(db: Database, actor: Actor, slug: str) -> Tenant:
    """Raises NotFound for an unknown slug or one outside the actor's reach."""
    async with db.transaction(actor.scope) as session:
        tenant = await session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None or tenant.id not in actor.tenant_ids:
        raise NotFound("Tenant")
    return tenant


async def all_tenant_ids(db: Database) -> frozenset[UUID]:
    """Every tenant's id: the reach of the platform itself (CLI, workers)."""
    async with db.transaction(Scope()) as session:
        return frozenset(await session.scalars(select(Tenant.id)))


async def system_actor(db: Database) -> Actor:
    """The platform acting for itself, across every tenant (CLI and workers)."""
    return Actor(
        kind=ActorKind.SYSTEM,
        id=UUID(int=0),
        display_name="OrderDesk",
        tenant_ids=await all_tenant_ids(db),
    )
