"""The client portal: client users see their own tenant, and only it."""

from __future__ import annotations

from uuid import UUID

from litestar import Controller, Response, get
from litestar.params import FromPath
from litestar.response import Template

from orderdesk.tenants import branding as brand
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


class PortalBrandingAssetController(Controller):
    """The tenant's logo, public: the tracking page and emails show it to people without a session."""

    path = "/portal/branding"
    include_in_schema = False

    @get("/{tenant_id:uuid}/logo/{version:str}")
    async def logo(self, db: DB, tenant_id: FromPath[UUID], version: FromPath[str]) -> Response[bytes]:
        logo = await brand.get_logo(db, tenant_id)
        # The URL names the logo's hash: the current one may be cached for good, an old one not.
        current = logo.sha256.startswith(version) and len(version) >= 16
        return Response(
            content=logo.content,
            media_type=logo.content_type,
            headers={
                "Cache-Control": "public, max-age=31536000, immutable" if current else "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'",
            },
        )
