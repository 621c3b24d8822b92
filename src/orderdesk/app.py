"""create_app(settings): plugins, routers, error handlers — nothing else."""

from __future__ import annotations

import gc
from pathlib import Path

from litestar import Litestar, Request, get
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.plugins.htmx import HTMXPlugin
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from orderdesk.accounts.controllers import AccountApiController, SignInController
from orderdesk.comms.controllers import CommsApiController, ConsoleCommsController, InboundEmailController
from orderdesk.comms.outbound_controllers import ROUTE_HANDLERS as OUTBOUND_COMMS_ROUTE_HANDLERS
from orderdesk.console.controllers import ConsoleOrderController
from orderdesk.core import queue
from orderdesk.core.db import Database, make_engine
from orderdesk.fulfillment.controllers import (
    FulfillmentPolicyController,
    OrderFulfillmentController,
    ReturnController,
    ShipmentController,
)
from orderdesk.imports.controllers import ROUTE_HANDLERS as IMPORT_ROUTE_HANDLERS
from orderdesk.integrations.controllers import (
    ConsoleWebhookController,
    WebhookDeliveryController,
    WebhookEndpointController,
)
from orderdesk.inventory.controllers import (
    OrderAllocationController,
    StockApiController,
    WarehouseApiController,
)
from orderdesk.invoices.controllers import InvoiceController, OrderInvoiceController
from orderdesk.orders.controllers import (
    CatalogApiController,
    OrderApiController,
    VerificationPolicyController,
)
from orderdesk.portal.controllers import (
    ConsolePortalPreferencesController,
    PortalBrandingAssetController,
    PortalController,
    PortalInvitationController,
    PortalSettingsController,
)
from orderdesk.settings import Settings
from orderdesk.shops.controllers import ShopConnectionApiController, ShopifyWebhookController
from orderdesk.tenants.controllers import ConsoleTenantController, TenantApiController
from orderdesk.tracking import links as tracking_links
from orderdesk.tracking.controllers import TrackingController
from orderdesk.web.auth import AuthenticationMiddleware
from orderdesk.web.csrf import check_csrf
from orderdesk.web.deps import DEPENDENCIES
from orderdesk.web.errors import EXCEPTION_HANDLERS
from orderdesk.web.health import healthz, readyz
from orderdesk.web.logging import RequestLogMiddleware, configure_logging
from orderdesk.web.openapi import ModelExamplesPlugin
from orderdesk.web.templating import configure_templates
from orderdesk.wiring import connect_features
from orderdesk.workqueue.api import ROUTE_HANDLERS as WORK_QUEUE_API_HANDLERS
from orderdesk.workqueue.controllers import WorkQueueConsoleController

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"
# JSON bodies larger than this are refused with 413 before they are parsed.
MAX_BODY_BYTES = 1 * 1024 * 1024


@get("/", include_in_schema=False)
async def index(request: Request) -> Redirect:
    actor = request.scope.get("user")
    if actor is None:
        return Redirect(path="/sign-in")
    return Redirect(path="/console" if actor.is_staff else "/portal")


def configure_process(settings: Settings) -> None:
    """What an app sets for the whole process: logging, the features' event handlers, and
    the key and address of tracking links. create_app calls it."""
    configure_logging(settings.log_level, json=settings.log_json)
    connect_features()
    tracking_links.configure_public_links(settings.public_url, settings.secret_key)


def create_app(settings: Settings) -> Litestar:
    configure_process(settings)

    async def open_resources(app: Litestar) -> None:
        app.state.settings = settings
        engine = make_engine(
            settings.app_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
        )
        app.state.db = Database(engine)
        app.state.queue = queue.connect(settings.redis_url, settings.queue_name)

    async def close_resources(app: Litestar) -> None:
        await app.state.queue.aclose()
        await app.state.db.dispose()

    return Litestar(
        route_handlers=[
            index,
            healthz,
            readyz,
            SignInController,
            AccountApiController,
            ConsoleTenantController,
            WorkQueueConsoleController,
            ConsoleOrderController,
            TenantApiController,
            PortalController,
            PortalBrandingAssetController,
            PortalSettingsController,
            PortalInvitationController,
            ConsolePortalPreferencesController,
            TrackingController,
            OrderApiController,
            *IMPORT_ROUTE_HANDLERS,
            WebhookEndpointController,
            WebhookDeliveryController,
            ConsoleWebhookController,
            CatalogApiController,
            VerificationPolicyController,
            ShopConnectionApiController,
            ShopifyWebhookController,
            WarehouseApiController,
            StockApiController,
            OrderAllocationController,
            OrderFulfillmentController,
            ShipmentController,
            ReturnController,
            FulfillmentPolicyController,
            OrderInvoiceController,
            InvoiceController,
            # Customer communication
            CommsApiController,
            ConsoleCommsController,
            InboundEmailController,
            *OUTBOUND_COMMS_ROUTE_HANDLERS,
            *WORK_QUEUE_API_HANDLERS,
            create_static_files_router(path="/static", directories=[STATIC_DIR], include_in_schema=False),
        ],
        dependencies=DEPENDENCIES,
        middleware=[RequestLogMiddleware(), AuthenticationMiddleware()],
        before_request=check_csrf,
        exception_handlers=EXCEPTION_HANDLERS,
        template_config=TemplateConfig(
            directory=TEMPLATES_DIR, engine=JinjaTemplateEngine, engine_callback=configure_templates
        ),
        plugins=[HTMXPlugin(), ModelExamplesPlugin()],
        openapi_config=OpenAPIConfig(
            title="OrderDesk API",
            version="1",
            description="Tenant-scoped order desk API. Authenticate with `Authorization: Bearer <API key>`.",
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        on_startup=[open_resources],
        on_shutdown=[close_resources],
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
    )


def create_app_from_environment() -> Litestar:
    """App factory for `orderdesk serve` (uvicorn imports it in each web process)."""
    from orderdesk.settings import get_settings

    app = create_app(get_settings())
    app.on_startup.append(_freeze_startup_objects)
    return app


async def _freeze_startup_objects(app: Litestar) -> None:
    """Move what start-up built (modules, routes, compiled statements, templates) out of the
    garbage collector's sight. Otherwise every full collection walks those hundreds of
    thousands of long-lived objects again, a pause of tens of milliseconds in the middle of
    whichever requests are running (bench/intake.py's p99)."""
    gc.collect()
    gc.freeze()
