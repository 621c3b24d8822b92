"""The client portal: client users see their own tenant, and only it."""

from __future__ import annotations

from litestar import Controller, get
from litestar.response import Template

from orderdesk.tenants import services as tenants
from orderdesk.web.deps import DB, CurrentActor
from orderdesk.web.guards import requires_client


class PortalController(Controller):
    path = "/portal"
    guards = [requires_client]
    include_in_schema = False

    @get("/")
    async def home(self, db: DB, actor: CurrentActor) -> Template:
        tenant = await tenants.get_tenant(db, actor, actor.single_tenant_id)
        return Template("portal/home.html", context={"actor": actor, "tenant": tenant})
