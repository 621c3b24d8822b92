"""Console pages and API for tenants."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, get
from litestar.params import FromPath
from litestar.response import Template

from orderdesk.tenants import services
from orderdesk.tenants.schemas import TenantView
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_actor, requires_staff
from orderdesk.web.openapi import problem_responses


class ConsoleTenantController(Controller):
    path = "/console"
    guards = [requires_staff]
    include_in_schema = False

    @get("/")
    async def home(self, db: DB, actor: CurrentActor) -> Template:
        tenants = await services.list_tenants(db, actor)
        return Template("tenants/console_home.html", context={"actor": actor, "tenants": tenants})

    @get("/tenants/{tenant_id:uuid}")
    async def tenant_page(self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]) -> Template:
        tenant = await services.get_tenant(db, actor, tenant_id)
        return Template("tenants/console_tenant.html", context={"actor": actor, "tenant": tenant})


class TenantApiController(Controller):
    path = "/api/v1/tenants"
    tags = ["Tenants"]
    guards = [requires_actor]

    @get("/", summary="Tenants the caller reaches", responses=problem_responses(401))
    async def list_tenants(self, db: DB, actor: CurrentActor) -> list[TenantView]:
        return [TenantView.model_validate(t) for t in await services.list_tenants(db, actor)]

    @get("/{tenant_id:uuid}", summary="One tenant", responses=problem_responses(400, 401, 404))
    async def get_tenant(self, db: DB, actor: CurrentActor, tenant_id: FromPath[UUID]) -> TenantView:
        return TenantView.model_validate(await services.get_tenant(db, actor, tenant_id))
