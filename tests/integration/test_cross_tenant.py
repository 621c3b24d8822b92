"""The cross-tenant matrix: every route that takes an id, asked by A's people for B's objects.

A foreign id must answer exactly like a missing one: 404, same body. Extend
ROUTES whenever a route with an id is added.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import pytest

from orderdesk.orders.states import Action
from tests.conftest import World, session_csrf, sign_in
from tests.integration.test_orders_api import order_body


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "{id}" is replaced by the object's id
    # Which of B's objects the id names (an attribute of World), and who may call the route.
    target: str
    callers: tuple[str, ...]
    body: dict | None = None

    def path(self, object_id) -> str:
        return self.template.replace("{id}", str(object_id))


ALL = ("staff", "client", "api_key")
ORDER_ACTIONS = [
    a.value.replace("_", "-") for a in Action if a not in (Action.PLACE_HOLD, Action.RELEASE_HOLD)
]

ROUTES = [
    Route("GET", "/api/v1/tenants/{id}", "b_tenant", ALL),
    Route("GET", "/console/tenants/{id}", "b_tenant", ("staff",)),
    Route("GET", "/api/v1/api-keys/{id}", "b_key", ALL),
    Route("DELETE", "/api/v1/api-keys/{id}", "b_key", ALL),
    Route("GET", "/api/v1/orders/{id}", "b_order", ALL),
    Route("GET", "/api/v1/orders/{id}/events", "b_order", ALL),
    Route("POST", "/api/v1/orders/{id}/holds", "b_order", ("staff", "api_key"), {"reason": "other"}),
    Route("POST", "/api/v1/orders/{id}/holds/release", "b_order", ("staff", "api_key"), {"reason": "other"}),
    Route(
        "POST",
        "/api/v1/orders/{id}/checks/payment_confirmed",
        "b_order",
        ("staff",),
        {"resolution": "overridden"},
    ),
    Route("POST", "/api/v1/orders/{id}/payment", "b_order", ("staff", "api_key"), {"payment_status": "paid"}),
    *[
        Route("POST", f"/api/v1/orders/{{id}}/{slug}", "b_order", ("staff", "api_key"))
        for slug in ORDER_ACTIONS
    ],
    Route("POST", "/api/v1/orders/{id}/cancel", "b_order", ("client",)),
    Route("GET", "/api/v1/orders/imports/{id}", "b_import", ALL),
    Route("GET", "/api/v1/orders/imports/{id}/errors.csv", "b_import", ALL),
    Route("PUT", "/api/v1/orders/imports/{id}/file", "b_import", ALL),
    Route("GET", "/console/imports/{id}/progress", "b_import", ("staff",)),
    Route("GET", "/api/v1/tenants/{id}/verification-policy", "b_tenant", ALL),
    Route("PUT", "/api/v1/tenants/{id}/verification-policy", "b_tenant", ALL, {"auto_verify": True}),
    Route("GET", "/api/v1/catalog?tenant_id={id}", "b_tenant", ALL),
    Route("PUT", "/api/v1/catalog/SKU-1?tenant_id={id}", "b_tenant", ALL, {"name": "x"}),
    Route("GET", "/api/v1/orders?tenant_id={id}", "b_tenant", ALL),
    # Inventory
    Route("GET", "/api/v1/warehouses?tenant_id={id}", "b_tenant", ALL),
    Route("GET", "/api/v1/stock?tenant_id={id}", "b_tenant", ALL),
    Route("GET", "/api/v1/warehouses/{id}", "b_warehouse", ALL),
    Route("PATCH", "/api/v1/warehouses/{id}", "b_warehouse", ("client", "api_key"), {"priority": 1}),
    Route("DELETE", "/api/v1/warehouses/{id}", "b_warehouse", ("client", "api_key")),
    Route("GET", "/api/v1/warehouses/{id}/stock", "b_warehouse", ALL),
    Route(
        "POST",
        "/api/v1/warehouses/{id}/stock",
        "b_warehouse",
        ("client", "api_key"),
        {"updates": [{"sku": "TENT", "delta": 1}]},
    ),
    Route(
        "POST",
        "/api/v1/warehouses/{id}/stock/TENT/adjustments",
        "b_warehouse",
        ("staff",),
        {"delta": 1, "reason": "found one"},
    ),
    Route("GET", "/api/v1/warehouses/{id}/stock/TENT/movements", "b_warehouse", ALL),
    Route("POST", "/api/v1/warehouses/{id}/stock.csv", "b_warehouse", ("client", "api_key")),
    Route("GET", "/api/v1/orders/{id}/allocation", "b_order", ALL),
    Route("POST", "/api/v1/orders/{id}/allocation/retry", "b_order", ("staff", "api_key")),
    Route(
        "POST",
        "/api/v1/orders/{id}/allocation/override",
        "b_order",
        ("staff",),
        {"warehouse_id": "00000000-0000-7000-8000-000000000000", "reason": "closer"},
    ),
    # Fulfillment
    Route("GET", "/api/v1/orders/{id}/shipments", "b_order", ALL),
    Route(
        "POST",
        "/api/v1/orders/{id}/shipments",
        "b_order",
        ("staff", "api_key"),
        {
            "warehouse_id": "00000000-0000-7000-8000-000000000000",
            "carrier": "DHL",
            "lines": [{"line_no": 1, "quantity": 1}],
        },
    ),
    Route("GET", "/api/v1/orders/{id}/returns", "b_order", ALL),
    Route(
        "POST",
        "/api/v1/orders/{id}/returns",
        "b_order",
        ALL,
        {"reason": "damaged", "lines": [{"line_no": 1, "quantity": 1}]},
    ),
    Route("GET", "/api/v1/shipments/{id}", "b_shipment", ALL),
    Route("PATCH", "/api/v1/shipments/{id}", "b_shipment", ("staff", "api_key"), {"carrier": "UPS"}),
    Route(
        "POST",
        "/api/v1/shipments/{id}/tracking-events",
        "b_shipment",
        ("staff", "api_key"),
        {"event_id": "e-1", "status": "in_transit", "occurred_at": "2026-01-01T10:00:00Z"},
    ),
    Route("POST", "/api/v1/shipments/{id}/attention/clear", "b_shipment", ("staff",)),
    Route("GET", "/api/v1/returns/{id}", "b_return", ALL),
    Route("POST", "/api/v1/returns/{id}/approve", "b_return", ALL),
    Route("POST", "/api/v1/returns/{id}/reject", "b_return", ALL, {"reason": "not ours"}),
    Route("POST", "/api/v1/returns/{id}/receive", "b_return", ("staff", "api_key"), {}),
    Route("POST", "/api/v1/returns/{id}/refund", "b_return", ALL, {"amount_minor": 1}),
    Route("GET", "/api/v1/tenants/{id}/fulfillment-policy", "b_tenant", ALL),
    Route("PUT", "/api/v1/tenants/{id}/fulfillment-policy", "b_tenant", ALL, {"return_window_days": 1}),
    # Invoices
    Route("GET", "/api/v1/orders/{id}/invoices", "b_order", ALL),
    Route("POST", "/api/v1/orders/{id}/invoice", "b_order", ("staff", "api_key")),
    Route("GET", "/api/v1/invoices/{id}", "b_invoice", ALL),
    Route("GET", "/api/v1/invoices/{id}/html", "b_invoice", ALL),
    Route("GET", "/api/v1/invoices/{id}/pdf", "b_invoice", ALL),
    Route("GET", "/api/v1/shop-connections/{id}", "b_shop", ALL),
    Route("DELETE", "/api/v1/shop-connections/{id}", "b_shop", ALL),
    Route("GET", "/api/v1/shop-connections?tenant_id={id}", "b_tenant", ALL),
    Route("GET", "/api/v1/orders/{id}/webhook-deliveries", "b_order", ALL),
    Route("GET", "/console/tenants/{id}/webhooks", "b_tenant", ("staff",)),
    Route("POST", "/console/tenants/{id}/webhooks", "b_tenant", ("staff",)),
    Route("GET", "/api/v1/webhook-endpoints?tenant_id={id}", "b_tenant", ("staff", "client", "api_key")),
    *[
        Route(
            method,
            f"/api/v1/webhook-endpoints/{{id}}{suffix}",
            "b_endpoint",
            ("staff", "client", "api_key"),
            body,
        )
        for method, suffix, body in (
            ("GET", "", None),
            ("GET", "/secret", None),
            ("PATCH", "", {"description": "x"}),
            ("DELETE", "", None),
            ("POST", "/rotate-secret", None),
            ("POST", "/test", None),
            ("GET", "/deliveries", None),
            ("GET", "/attempts", None),
            ("POST", "/replay-failed?since=2020-01-01T00:00:00Z", None),
        )
    ],
    Route("POST", "/api/v1/webhook-deliveries/{id}/replay", "b_delivery", ("staff", "client", "api_key")),
    # Work queue console
    *[
        Route(method, f"/console/work/{{id}}{suffix}", "b_work_item", ("staff",))
        for method, suffix in (
            ("GET", ""),
            ("GET", "/status"),
            ("POST", "/lease"),
            ("POST", "/done"),
            ("POST", "/snooze"),
            ("POST", "/hand-back"),
            ("POST", "/wait"),
            ("POST", "/resume"),
            ("POST", "/reassign"),
        )
    ],
    Route("GET", "/console/orders/{id}", "b_order", ("staff",)),
    Route("GET", "/console/orders/{id}/panel", "b_order", ("staff",)),
    Route("POST", "/console/orders/{id}/actions/verify", "b_order", ("staff",)),
    Route("POST", "/console/orders/{id}/actions/place_hold", "b_order", ("staff",)),
    Route("POST", "/console/orders/{id}/checks/payment_confirmed", "b_order", ("staff",)),
    Route("GET", "/console/sla/{id}", "b_tenant", ("staff",)),
    Route("POST", "/console/sla/{id}", "b_tenant", ("staff",)),
    # Tracking page: a link signed by us for A's tenant but naming B's order (the token is the
    # id here; the missing case is a random id, i.e. a token we never signed). Public routes:
    # whoever calls, the answer is the same "cannot open this page".
    *[
        Route(method, f"/track/o/{{id}}{suffix}", "b_order_link_in_a", ALL)
        for method, suffix in (("GET", ""), ("POST", "/messages"), ("POST", "/returns"))
    ],
    # Customer communication
    Route("GET", "/api/v1/orders/{id}/conversations", "b_order", ALL),
    Route("GET", "/api/v1/conversations/{id}", "b_conversation", ALL),
    Route("GET", "/api/v1/attachments/{id}", "b_attachment", ALL),
    Route("GET", "/console/orders/{id}/messages", "b_order", ("staff",)),
    Route("GET", "/console/conversations/{id}", "b_conversation", ("staff",)),
    Route("POST", "/console/conversations/{id}/notes", "b_conversation", ("staff",)),
    Route("GET", "/console/attachments/{id}", "b_attachment", ("staff",)),
    # Outbound communication: templates, macros, replies
    Route("GET", "/api/v1/email-templates?tenant_id={id}", "b_tenant", ALL),
    Route("GET", "/api/v1/email-templates/{id}", "b_template", ALL),
    Route("PATCH", "/api/v1/email-templates/{id}", "b_template", ALL, {"name": "x"}),
    Route("DELETE", "/api/v1/email-templates/{id}", "b_template", ALL),
    Route("GET", "/api/v1/email-templates/{id}/preview", "b_template", ALL),
    Route("GET", "/api/v1/macros?tenant_id={id}", "b_tenant", ALL),
    Route("GET", "/api/v1/macros/{id}", "b_macro", ALL),
    Route("PATCH", "/api/v1/macros/{id}", "b_macro", ALL, {"add_tag": "x"}),
    Route("DELETE", "/api/v1/macros/{id}", "b_macro", ALL),
    Route("PUT", "/api/v1/tenants/{id}/comms-outbound", "b_tenant", ALL, {}),
    Route("POST", "/api/v1/conversations/{id}/replies", "b_conversation", ("staff",), {"text": "hi"}),
    Route("GET", "/console/tenants/{id}/templates", "b_tenant", ("staff",)),
    Route("POST", "/console/tenants/{id}/templates", "b_tenant", ("staff",)),
    Route("POST", "/console/tenants/{id}/macros", "b_tenant", ("staff",)),
    Route("GET", "/console/templates/{id}", "b_template", ("staff",)),
    Route("POST", "/console/templates/{id}", "b_template", ("staff",)),
    Route("POST", "/console/templates/{id}/delete", "b_template", ("staff",)),
    Route("POST", "/console/macros/{id}/delete", "b_macro", ("staff",)),
    Route("GET", "/console/conversations/{id}/reply", "b_conversation", ("staff",)),
    Route("POST", "/console/conversations/{id}/reply", "b_conversation", ("staff",)),
    Route("GET", "/console/conversations/{id}/macro-text", "b_conversation", ("staff",)),
    # Work queue API (staff only: API keys and client users are refused before any lookup)
    Route("GET", "/api/v1/work-items/{id}", "b_work_item", ("staff",)),
    *[
        Route("POST", f"/api/v1/work-items/{{id}}/{action}", "b_work_item", ("staff",), body)
        for action, body in (
            ("lease", None),
            ("hand-back", None),
            ("snooze", {"until": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).isoformat()}),
            ("wait", {"party": "customer"}),
            ("resume", None),
            ("complete", {"outcome": "resolved"}),
            ("reassign", {"agent_id": "00000000-0000-7000-8000-000000000000"}),
        )
    ],
    Route("GET", "/api/v1/work-items?tenant_id={id}", "b_tenant", ("staff",)),
    Route("GET", "/api/v1/tenants/{id}/sla-policy", "b_tenant", ("staff",)),
    Route("PUT", "/api/v1/tenants/{id}/sla-policy", "b_tenant", ("staff",), {"client_tier": 1}),
    Route("POST", "/api/v1/work-notifications/{id}/read", "b_notification", ("staff",)),
    Route("POST", "/console/notifications/{id}/read", "b_notification", ("staff",)),
]

CALLERS = ("staff", "client", "api_key")


@pytest.fixture
async def b_objects(client, db, world: World, settings) -> dict[str, object]:
    """One object of each kind belonging to B, made through B's own API key."""
    order = await client.post(
        "/api/v1/orders", json=order_body(), headers={"Authorization": f"Bearer {world.key_b}"}
    )
    assert order.status_code == 201, order.text
    b_headers = {"Authorization": f"Bearer {world.key_b}"}
    endpoint = await b_webhook_endpoint(db, world)
    test = await client.post(f"/api/v1/webhook-endpoints/{endpoint}/test", headers=b_headers)
    assert test.status_code == 202, test.text
    objects = {
        "b_tenant": world.b.id,
        "b_key": world.key_b_id,
        "b_order": order.json()["id"],
        **await b_shipment_and_return(client, world, await b_warehouse(client, world)),
        "b_import": await b_import(client, world),
        "b_shop": await b_shop_connection(db, world),
        "b_endpoint": endpoint,
        "b_delivery": test.json()["id"],
        "b_work_item": await b_work_item(db, world, order.json()["id"]),
        **await b_portal_objects(db, world, await b_work_item(db, world, order.json()["id"])),
        **await b_conversation(client, db, world),
        **await b_comms_objects(db, world),
        "b_order_link_in_a": b_order_link_in_a(settings.secret_key, world, order.json()["id"]),
    }
    objects["b_notification"] = await b_notification(db, world, objects["b_work_item"])
    return objects


def b_order_link_in_a(secret_key: str, world: World, order_id: str) -> str:
    """A correctly signed tracking token that pairs A's tenant with B's order."""
    from orderdesk.tracking import links

    return links.tracking_path(secret_key, world.a.id, uuid.UUID(order_id)).removeprefix(links.PATH_PREFIX)


async def b_webhook_endpoint(db, world: World) -> str:
    """B's endpoint, registered directly (the API refuses the loopback URL a test would use)."""
    from orderdesk.core.ids import new_id
    from orderdesk.core.tenancy import Scope
    from orderdesk.integrations.models import WebhookEndpoint
    from orderdesk.integrations.signing import new_secret

    endpoint_id = new_id()
    async with db.transaction(Scope(tenant_ids=frozenset({world.b.id}))) as session:
        session.add(
            WebhookEndpoint(
                tenant_id=world.b.id,
                id=endpoint_id,
                url="https://hooks.example.com/b",
                description="B",
                event_types=[],
                secret=new_secret(),
            )
        )
    return str(endpoint_id)


async def b_shop_connection(db, world: World) -> str:
    """B's Shopify connection, made as the platform (the API would need B's administrator)."""
    from orderdesk.shops import services as shops
    from orderdesk.tenants import services as tenants

    system = await tenants.system_actor(db)
    connected = await shops.connect_shop(
        db, system, tenant_id=world.b.id, shop_domain="borealis.myshopify.com", webhook_secret="b" * 32
    )
    return str(connected.connection.id)


async def b_import(client, world: World) -> str:
    """B's CSV import, still waiting for its file (a foreign upload must not reach it)."""
    b_headers = {"Authorization": f"Bearer {world.key_b}"}
    created = await client.post("/api/v1/orders/imports", json={"filename": "b.csv"}, headers=b_headers)
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def b_warehouse(client, world: World) -> str:
    """B's warehouse, made through B's API key."""
    created = await client.post(
        "/api/v1/warehouses",
        json={"code": "B-WH", "name": "B's warehouse", "country": "DE"},
        headers={"Authorization": f"Bearer {world.key_b}"},
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def b_shipment_and_return(client, world: World, warehouse_id: str) -> dict[str, str]:
    """B's warehouse, a delivered shipment of another B order, and a return of it."""
    b_headers = {"Authorization": f"Bearer {world.key_b}"}
    stocked = await client.post(
        f"/api/v1/warehouses/{warehouse_id}/stock",
        json={"updates": [{"sku": "TENT-2P", "on_hand": 5}, {"sku": "MAT-1", "on_hand": 5}]},
        headers=b_headers,
    )
    assert stocked.status_code == 200, stocked.text
    order = (await client.post("/api/v1/orders", json=order_body(), headers=b_headers)).json()
    assert (await client.post(f"/api/v1/orders/{order['id']}/verify", headers=b_headers)).json()[
        "status"
    ] == "allocated"
    shipment = await client.post(
        f"/api/v1/orders/{order['id']}/shipments",
        json={
            "warehouse_id": warehouse_id,
            "carrier": "DHL",
            "lines": [{"line_no": 1, "quantity": 2}, {"line_no": 2, "quantity": 1}],
        },
        headers=b_headers,
    )
    assert shipment.status_code == 201, shipment.text
    delivered = await client.post(
        f"/api/v1/shipments/{shipment.json()['id']}/tracking-events",
        json={"event_id": "b-1", "status": "delivered", "occurred_at": dt.datetime.now(dt.UTC).isoformat()},
        headers=b_headers,
    )
    assert delivered.status_code == 201, delivered.text
    returned = await client.post(
        f"/api/v1/orders/{order['id']}/returns",
        json={"reason": "damaged", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=b_headers,
    )
    assert returned.status_code == 201, returned.text
    invoice = await client.post(f"/api/v1/orders/{order['id']}/invoice", headers=b_headers)
    assert invoice.status_code == 201, invoice.text
    return {
        "b_warehouse": warehouse_id,
        "b_shipment": shipment.json()["id"],
        "b_return": returned.json()["id"],
        "b_invoice": invoice.json()["id"],
    }


async def b_work_item(db, world: World, order_id: str) -> str:
    """The verification item B's order opened (it waits for verification)."""
    from sqlalchemy import select

    from orderdesk.core.tenancy import Scope
    from orderdesk.workqueue.models import WorkItem

    async with db.transaction(Scope(tenant_ids=frozenset({world.b.id}))) as session:
        item_id = await session.scalar(select(WorkItem.id).where(WorkItem.order_id == uuid.UUID(order_id)))
    assert item_id is not None
    return str(item_id)


async def b_conversation(client, db, world: World) -> dict[str, str]:
    """A conversation about another B order, with a customer message carrying an attachment."""
    from orderdesk.comms import services as comms
    from orderdesk.comms.models import Direction, MessageChannel
    from orderdesk.orders.models import Order
    from orderdesk.tenants import services as tenants

    created = await client.post(
        "/api/v1/orders", json=order_body(), headers={"Authorization": f"Bearer {world.key_b}"}
    )
    assert created.status_code == 201, created.text
    system = await tenants.system_actor(db)
    async with db.transaction(system.scope) as session:
        order = await session.get(Order, (world.b.id, uuid.UUID(created.json()["id"])))
        conversation = await comms.start_conversation_in(
            session,
            world.b.id,
            channel=MessageChannel.EMAIL,
            order=order,
            customer_email=order.customer_email,
        )
    appended = await comms.append_message(
        db,
        system,
        conversation.id,
        comms.MessageDraft(
            direction=Direction.INBOUND,
            channel=MessageChannel.EMAIL,
            created_by="test",
            sender_address=order.customer_email,
            subject="B's question",
            text_body="where is my order?",
            attachments=[comms.AttachmentDraft("b.txt", "text/plain", b"B's file")],
        ),
    )
    view = await comms.get_conversation(db, system, conversation.id)
    assert view.messages[0].id == appended.message.id
    return {"b_conversation": str(conversation.id), "b_attachment": str(view.messages[0].attachments[0].id)}


async def b_comms_objects(db, world: World) -> dict[str, str]:
    """B's email template and macro."""
    from orderdesk.comms import outbound
    from orderdesk.tenants import services as tenants

    system = await tenants.system_actor(db)
    template = await outbound.create_template(
        db, system, world.b.id, outbound.TemplateFields(name="B", subject="B {{ order.reference }}", body="B")
    )
    macro = await outbound.create_macro(db, system, world.b.id, outbound.MacroFields(name="B", add_tag="b"))
    return {"b_template": str(template.id), "b_macro": str(macro.id)}


async def b_notification(db, world: World, item_id: str) -> str:
    """An SLA notice about B's item for B's agent, written as the sweep would."""
    from orderdesk.core.ids import new_id
    from orderdesk.core.tenancy import Scope
    from orderdesk.workqueue.models import WorkNotification

    notification_id = new_id()
    async with db.transaction(Scope(tenant_ids=frozenset({world.b.id}))) as session:
        session.add(
            WorkNotification(
                tenant_id=world.b.id,
                id=notification_id,
                work_item_id=uuid.UUID(item_id),
                recipient_id=world.agent_b.id,
                kind="breached",
                due_at=dt.datetime.now(dt.UTC),
                title="B's late item",
            )
        )
    return str(notification_id)


async def as_caller(client, world: World, caller: str) -> dict[str, str]:
    """Authenticate `client` as one of A's callers; return headers for unsafe requests."""
    if caller == "api_key":
        return {"Authorization": f"Bearer {world.key_a}"}
    # A lead assigned to A only (an admin would reach every tenant by design).
    person = world.lead_a if caller == "staff" else world.client_admin_a
    await sign_in(client, person)
    home = await client.get("/console" if caller == "staff" else "/portal")
    return {"X-CSRF-Token": session_csrf(home.text)}


async def test_the_console_never_shows_b_work(client, db, world: World, b_objects):
    """Queue counts, Get next, search, the live board and the queue API of A's lead leave B's work out."""
    order = (
        await client.get(
            f"/api/v1/orders/{b_objects['b_order']}", headers={"Authorization": f"Bearer {world.key_b}"}
        )
    ).json()
    headers = await as_caller(client, world, "staff")
    pages = [
        await client.get("/console/queue"),
        await client.get("/console/lead/board"),
        await client.get("/console/operations/board"),
        await client.get(f"/console/search?q={order['customer_email']}"),
        await client.post("/console/queue/next", headers={**headers, "HX-Request": "true"}),
        await client.get("/api/v1/work-items?limit=200"),
        await client.get("/api/v1/work-items/counts"),
        await client.get("/api/v1/work-notifications?unread=false"),
        await client.get(f"/api/v1/work-items?order_id={b_objects['b_order']}"),
    ]
    for page in pages:
        assert page.status_code == 200, page.text
        assert b_objects["b_work_item"] not in page.text
        assert b_objects["b_order"] not in page.text
        assert world.b.name not in page.text
    # Get next answers a claim with a redirect to the item, not in the body.
    assert b_objects["b_work_item"] not in (pages[4].headers.get("HX-Redirect") or "")
    assert await b_item_state(db, world, b_objects) == ("open", None)


async def b_item_state(db, world: World, b_objects) -> tuple[str, uuid.UUID | None]:
    """B's verification item as B sees it: (status, holder)."""
    from orderdesk.core.tenancy import Scope
    from orderdesk.workqueue.models import WorkItem

    async with db.transaction(Scope(tenant_ids=frozenset({world.b.id}))) as session:
        item = await session.get(WorkItem, (world.b.id, uuid.UUID(b_objects["b_work_item"])))
        return item.status.value, item.claimed_by


def normalised(response) -> tuple[int, str]:
    text = response.text
    return response.status_code, text.replace(response.headers.get("x-request-id", "~"), "")


@pytest.mark.parametrize("caller", CALLERS)
async def test_foreign_ids_answer_like_missing_ones(client, world: World, b_objects, caller):
    headers = await as_caller(client, world, caller)
    checked = 0
    for route in ROUTES:
        if caller not in route.callers:
            continue
        foreign = await client.request(
            route.method, route.path(b_objects[route.target]), headers=headers, json=route.body
        )
        missing = await client.request(
            route.method, route.path(uuid.uuid4()), headers=headers, json=route.body
        )
        assert foreign.status_code == 404, f"{caller} {route.method} {route.template}: {foreign.status_code}"
        assert normalised(foreign) == normalised(missing), (
            f"{caller} {route.template} tells foreign from missing"
        )
        checked += 1
    assert checked >= 3


async def test_a_plain_agent_cannot_tell_b_objects_from_missing_ones(client, world: World, b_objects):
    """The matrix's staff caller is A's lead; an agent's requests take the paths that
    filter by the agent's own skills and holdings. Lead-only routes refuse the agent
    before they look at the id, for foreign and missing ids alike."""
    await sign_in(client, world.agent_a)
    headers = {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}
    not_found = 0
    for route in ROUTES:
        if "staff" not in route.callers:
            continue
        foreign = await client.request(
            route.method, route.path(b_objects[route.target]), headers=headers, json=route.body
        )
        missing = await client.request(
            route.method, route.path(uuid.uuid4()), headers=headers, json=route.body
        )
        assert foreign.status_code in (403, 404), (
            f"agent {route.method} {route.template}: {foreign.status_code}"
        )
        assert normalised(foreign) == normalised(missing), (
            f"agent {route.template} tells foreign from missing"
        )
        not_found += foreign.status_code == 404
    assert not_found >= 20


async def test_creating_work_or_orders_for_b_is_refused_like_a_missing_tenant(
    client, db, world: World, b_objects
):
    """Ids in a request's body, not its path: a work item or an order for B's tenant."""
    headers = await as_caller(client, world, "staff")
    item = {"kind": "verification", "title": "Call the customer back"}
    for_b = await client.post(
        "/api/v1/work-items", json={**item, "tenant_id": str(world.b.id)}, headers=headers
    )
    for_nobody = await client.post(
        "/api/v1/work-items", json={**item, "tenant_id": str(uuid.uuid4())}, headers=headers
    )
    assert for_b.status_code == 404 and normalised(for_b) == normalised(for_nobody)
    entry = order_body(tenant_id=str(world.b.id))
    form = {
        "tenant_id": str(world.b.id),
        "customer.name": entry["customer"]["name"],
        "customer.email": entry["customer"]["email"],
        "shipping_address.line1": entry["shipping_address"]["line1"],
        "shipping_address.city": entry["shipping_address"]["city"],
        "shipping_address.postal_code": entry["shipping_address"]["postal_code"],
        "shipping_address.country": entry["shipping_address"]["country"],
        "currency": entry["currency"],
        "lines[0].sku": "TENT-2P",
        "lines[0].quantity": "1",
        "lines[0].unit_price": "19.90",
        "payment_status": "paid",
        "priority": "normal",
    }
    b_before = await b_order_count(client, world)
    refused = await client.post("/console/orders/new", data=form, headers=headers, follow_redirects=False)
    nobodys = await client.post(
        "/console/orders/new",
        data={**form, "tenant_id": str(uuid.uuid4())},
        headers=headers,
        follow_redirects=False,
    )
    assert refused.status_code == 404 and normalised(refused) == normalised(nobodys)
    assert await b_order_count(client, world) == b_before


async def b_order_count(client, world: World) -> int:
    listed = await client.get("/api/v1/orders?limit=200", headers={"Authorization": f"Bearer {world.key_b}"})
    return len(listed.json()["items"])


async def test_the_live_board_shows_a_shared_agent_but_not_their_b_item(
    client, db, world: World, b_objects, app_client_factory
):
    """An agent who also works for B appears on A's board (assigned to A), online, but what
    they hold for B does not; an agent of A holding A's item shows it."""
    from orderdesk.accounts.actors import Actor, ActorKind
    from orderdesk.accounts.models import StaffRole
    from orderdesk.workqueue import services as work
    from tests.conftest import make_staff

    shared = await make_staff(db, StaffRole.AGENT, world.a, world.b)
    async with app_client_factory() as own_browser:  # a web session: seen now, so online
        assert (await sign_in(own_browser, shared)).status_code == 302
    as_b_only = Actor(
        kind=ActorKind.STAFF,
        id=shared.id,
        display_name="Shared agent",
        tenant_ids=frozenset({world.b.id}),
        staff_role=StaffRole.AGENT,
    )
    held = await work.claim_next_work_item(db, as_b_only)
    assert held is not None and held.tenant_id == world.b.id
    a_order = await client.post(
        "/api/v1/orders", json=order_body(), headers={"Authorization": f"Bearer {world.key_a}"}
    )
    assert a_order.status_code == 201, a_order.text
    as_a = Actor(
        kind=ActorKind.STAFF,
        id=world.agent_a.id,
        display_name="Agent A",
        tenant_ids=frozenset({world.a.id}),
        staff_role=StaffRole.AGENT,
    )
    a_item = await work.claim_next_work_item(db, as_a)
    assert a_item is not None and a_item.tenant_id == world.a.id

    await as_caller(client, world, "staff")
    board = await client.get("/console/lead/board")
    assert board.status_code == 200
    shared_row = next(line for line in board.text.splitlines() if shared.email[:10] in line)
    assert 'aria-label="online"' in shared_row
    assert str(held.id) not in board.text and world.b.name not in board.text
    assert f"/console/work/{a_item.id}" in board.text


async def test_a_foreign_revoke_changes_nothing(client, world: World):
    headers = await as_caller(client, world, "client")
    assert (await client.delete(f"/api/v1/api-keys/{world.key_b_id}", headers=headers)).status_code == 404
    client.cookies.clear()
    still_works = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {world.key_b}"})
    assert still_works.status_code == 200
    assert still_works.json()["tenant_ids"] == [str(world.b.id)]


async def test_b_order_is_untouched_by_a(client, world: World, b_objects):
    for caller in CALLERS:
        headers = await as_caller(client, world, caller)
        for slug in ("cancel", "verify"):
            await client.post(f"/api/v1/orders/{b_objects['b_order']}/{slug}", headers=headers)
        client.cookies.clear()
    events = await client.get(
        f"/api/v1/orders/{b_objects['b_order']}/events", headers={"Authorization": f"Bearer {world.key_b}"}
    )
    assert [e["kind"] for e in events.json()] == ["created", "verification_needed"]


@pytest.mark.parametrize("caller", CALLERS)
async def test_lists_never_include_b(client, world: World, b_objects, caller):
    headers = await as_caller(client, world, caller)
    tenants = (await client.get("/api/v1/tenants", headers=headers)).json()
    assert str(world.a.id) in {t["id"] for t in tenants}
    assert str(world.b.id) not in {t["id"] for t in tenants}
    if caller == "client":
        keys = (await client.get("/api/v1/api-keys", headers=headers)).json()
        assert {k["tenant_id"] for k in keys} == {str(world.a.id)}
    orders = (await client.get("/api/v1/orders?limit=200", headers=headers)).json()["items"]
    assert b_objects["b_order"] not in {o["id"] for o in orders}
    assert all(o["tenant_id"] == str(world.a.id) for o in orders)
    foreign_filter = await client.get(f"/api/v1/orders?tenant_id={world.b.id}", headers=headers)
    assert foreign_filter.status_code == 404


async def test_creating_an_endpoint_for_b_is_404(client, world: World):
    for caller in ("staff", "api_key"):
        headers = await as_caller(client, world, caller)
        response = await client.post(
            "/api/v1/webhook-endpoints",
            json={"url": "https://hooks.example.com/x", "tenant_id": str(world.b.id)},
            headers=headers,
        )
        assert response.status_code == 404, response.text
        client.cookies.clear()


async def test_staff_asking_for_b_keys_by_tenant_gets_404(client, world: World):
    headers = await as_caller(client, world, "staff")
    response = await client.get(f"/api/v1/api-keys?tenant_id={world.b.id}", headers=headers)
    assert response.status_code == 404


async def test_malformed_id_is_404_too(client, world: World):
    headers = await as_caller(client, world, "api_key")
    response = await client.get("/api/v1/tenants/not-a-uuid", headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_cannot_touch_or_list_b_shop_connections(client, world: World, db, b_objects):
    from orderdesk.shops import services as shops
    from orderdesk.tenants import services as tenants

    headers = await as_caller(client, world, "client")
    b_shop = b_objects["b_shop"]
    assert (await client.delete(f"/api/v1/shop-connections/{b_shop}", headers=headers)).status_code == 404
    listed = (await client.get("/api/v1/shop-connections", headers=headers)).json()
    assert b_shop not in {c["id"] for c in listed}
    connection = await shops.get_shop_connection(db, await tenants.system_actor(db), uuid.UUID(b_shop))
    assert connection.active is True


# ---------------------------------------------------------------- client portal (#8)
# Foreign ids in portal routes answer like missing ones (checked by the matrix test above);
# B's decision and invitation come from `b_portal_objects`, called by `b_objects`.
PORTAL_ROUTES = [
    Route("GET", "/portal/orders/{id}", "b_order", ("client",)),
    Route("POST", "/portal/decisions/{id}", "b_decision", ("client",)),
    Route("GET", "/portal/settings/webhooks/{id}", "b_endpoint", ("client",)),
    Route("GET", "/portal/settings/webhooks/{id}/log", "b_endpoint", ("client",)),
    Route("POST", "/portal/settings/webhooks/{id}", "b_endpoint", ("client",)),
    Route("POST", "/portal/settings/webhooks/{id}/rotate", "b_endpoint", ("client",)),
    Route("POST", "/portal/settings/webhooks/{id}/replay-failed", "b_endpoint", ("client",)),
    Route("POST", "/portal/settings/webhooks/{id}/delete", "b_endpoint", ("client",)),
    Route("POST", "/portal/settings/webhooks/{id}/test", "b_endpoint", ("client",)),
    Route("POST", "/portal/settings/webhooks/deliveries/{id}/replay", "b_delivery", ("client",)),
    Route("POST", "/portal/settings/api-keys/{id}/revoke", "b_key", ("client",)),
    Route("POST", "/portal/users/invitations/{id}/revoke", "b_invitation", ("client",)),
    Route("POST", "/portal/users/{id}/role", "b_client_user", ("client",)),
    Route("POST", "/portal/users/{id}/disable", "b_client_user", ("client",)),
    Route("POST", "/portal/users/{id}/enable", "b_client_user", ("client",)),
    Route("POST", "/console/work/{id}/ask-client", "b_work_item", ("staff",)),
]
ROUTES.extend(PORTAL_ROUTES)


async def b_portal_objects(db, world: World, work_item_id: str) -> dict[str, str]:
    """A question put to B's client and an open invitation of B, written as B."""
    from orderdesk.accounts.models import ClientRole
    from orderdesk.core.ids import new_id
    from orderdesk.core.tenancy import Scope
    from orderdesk.portal.models import ClientDecision, ClientInvitation

    decision_id, invitation_id = new_id(), new_id()
    async with db.transaction(Scope(tenant_ids=frozenset({world.b.id}))) as session:
        session.add(
            ClientDecision(
                tenant_id=world.b.id,
                id=decision_id,
                work_item_id=uuid.UUID(work_item_id),
                question="B's question",
                asked_by=world.agent_b.id,
            )
        )
        session.add(
            ClientInvitation(
                tenant_id=world.b.id,
                id=invitation_id,
                email="invitee@borealis.example.com",
                role=ClientRole.VIEWER,
                token_hash=uuid.uuid4().hex * 2,
                invited_by=world.client_admin_b.id,
                expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
            )
        )
    return {
        "b_decision": str(decision_id),
        "b_invitation": str(invitation_id),
        "b_client_user": str(world.client_admin_b.id),
    }


async def test_portal_lists_exports_and_reports_never_include_b(client, db, world: World, b_objects):
    """Every portal page, the CSV export and every report of A's admin leave B out."""
    b_headers = {"Authorization": f"Bearer {world.key_b}"}
    b_order = (await client.get(f"/api/v1/orders/{b_objects['b_order']}", headers=b_headers)).json()
    await as_caller(client, world, "client")
    pages = [
        "/portal",
        "/portal/orders",
        "/portal/orders.csv",
        "/portal/decisions",
        "/portal/reports?weeks=104",
        *[
            f"/portal/reports/{name}/data.csv?weeks=104"
            for name in ("sla", "handling", "status", "delivery", "returns")
        ],
        "/portal/users",
        "/portal/settings/integrations",
        "/portal/settings/branding",
    ]
    b_markers = [
        str(b_objects[k])
        for k in ("b_order", "b_decision", "b_endpoint", "b_key", "b_invitation", "b_client_user")
    ]
    b_markers += [
        world.b.name,
        b_order["customer_email"],
        b_order["external_ref"],
        "B's question",
        "invitee@borealis.example.com",
        world.client_admin_b.email,
        "hooks.example.com/b",
    ]
    for path in pages:
        page = await client.get(path)
        assert page.status_code == 200, f"{path}: {page.status_code}"
        for marker in b_markers:
            assert marker not in page.text, f"{path} shows {marker}"
    # Searching for B's order by its customer's email or its reference finds nothing.
    for needle in (b_order["customer_email"], b_order["external_ref"], f"#{b_order['number']}"):
        found = await client.get("/portal/orders", params={"q": needle})
        assert "No orders match." in found.text and b_objects["b_order"] not in found.text
        export = await client.get("/portal/orders.csv", params={"q": needle})
        assert export.text.lstrip("\ufeff").count("\r\n") == 1  # the header alone
    # The status report counts only A's orders (A has none here).
    status_csv = await client.get("/portal/reports/status/data.csv?weeks=104")
    assert status_csv.text.strip().lstrip("\ufeff") == "status,orders"
