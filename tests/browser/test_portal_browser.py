"""The client portal in a real browser: a client admin signs in, finds an order, approves an
exception the agents put to them, and rotates a webhook secret. Screenshots are kept."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from orderdesk.core.tenancy import Scope
from orderdesk.portal import decisions
from orderdesk.workqueue import services as workqueue
from orderdesk.workqueue.models import WorkItem
from orderdesk.workqueue.states import WorkItemKind
from tests.browser.conftest import sign_in
from tests.conftest import World
from tests.integration.test_orders_api import bearer, order_body

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:AuthenticationMiddleware.exclude_path_pattern:DeprecationWarning"),
]


async def test_client_finds_an_order_and_approves_an_exception(
    client, db, world: World, new_page, screenshot_dir
):
    order = (
        await client.post(
            "/api/v1/orders",
            json=order_body(customer={"name": "Hilde Brandt", "email": "hilde@example.com"}),
            headers=bearer(world.key_a),
        )
    ).json()
    for _ in range(3):
        await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))
    held = await client.post(
        f"/api/v1/orders/{order['id']}/holds",
        json={"reason": "address_problem", "note": "Street not found"},
        headers=bearer(world.key_a),
    )
    assert held.status_code == 200, held.text
    async with db.transaction(Scope(tenant_ids=frozenset({world.a.id}))) as session:
        item_id = await session.scalar(
            select(WorkItem.id).where(
                WorkItem.order_id == order["id"], WorkItem.kind == WorkItemKind.EXCEPTION
            )
        )
    lead = world.lead_a_actor()
    await workqueue.reassign_work_item(db, lead, item_id, lead.id)
    await decisions.ask_client(db, lead, item_id, "Ship to the customer's old address instead?")

    page = await new_page()
    await sign_in(page, world.client_admin_a)
    await page.wait_for_url(re.compile(r"/portal$"))
    assert await page.get_by_test_id("waiting-count").inner_text() == "1"

    # Finding the order: typing in the search box narrows the list as one types (htmx).
    await page.get_by_role("link", name="Orders", exact=True).click()
    await page.get_by_label("Search").fill("hilde")
    await page.wait_for_function("document.querySelectorAll('#order-results tbody tr').length === 1")
    await page.locator(f'#order-results a[href="/portal/orders/{order["id"]}"]').wait_for()
    await page.wait_for_url(re.compile(r"/portal/orders\?.*q=hilde"))  # the filter is in the address
    await page.screenshot(path=str(screenshot_dir / "portal-01-orders.png"), full_page=True)
    await page.locator(f'#order-results a[href="/portal/orders/{order["id"]}"]').click()
    await page.get_by_role("heading", name=f"Order #{order['number']}").wait_for()
    await page.locator('[data-testid="timeline"] li', has_text="Client asked to decide").wait_for()
    await page.screenshot(path=str(screenshot_dir / "portal-02-order.png"), full_page=True)

    # Approving: the card answers in place, the agents' item is back in the queue.
    await page.get_by_role("link", name="Decide →").click()
    card = page.get_by_test_id("decision").filter(has_text="old address")
    await card.get_by_label("Comment").fill("Yes, the old address is right")
    await page.screenshot(path=str(screenshot_dir / "portal-03-decision.png"), full_page=True)
    await card.get_by_test_id("approve").click()
    await page.get_by_test_id("decided").wait_for()
    assert "approved" in await page.get_by_test_id("decided").inner_text()
    item = await workqueue.get_work_item(db, lead, item_id)
    assert item.status == "open" and "Yes, the old address is right" in (item.detail or "")

    await page.goto(f"/portal/orders/{order['id']}")
    await page.locator('[data-testid="timeline"] li', has_text="Client approved").wait_for()


async def test_client_admin_rotates_a_webhook_secret(client, world: World, new_page, screenshot_dir):
    created = await client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "https://93.184.216.34/hooks", "description": "ERP"},
        headers=bearer(world.key_a),
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    first = (
        await client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/secret", headers=bearer(world.key_a))
    ).json()

    page = await new_page()
    await sign_in(page, world.client_admin_a)
    await page.get_by_role("link", name="Integrations").click()
    await page.get_by_role("link", name="Manage").click()
    await page.wait_for_url(re.compile(rf"/portal/settings/webhooks/{endpoint['id']}$"))
    await page.get_by_test_id("rotate").click()
    shown = await page.get_by_test_id("secret").inner_text()
    await page.screenshot(path=str(screenshot_dir / "portal-04-rotated.png"), full_page=True)
    now = (
        await client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}/secret", headers=bearer(world.key_a))
    ).json()
    assert shown.startswith("whsec_") and shown not in str(first) and shown in str(now)
    assert "keeps signing for 24 hours" in await page.get_by_test_id("notice").inner_text()


async def test_a_viewer_sees_no_admin_menu_and_staff_are_kept_out(world: World, new_page):
    page = await new_page()
    await sign_in(page, world.client_viewer_a)
    await page.goto("/portal")
    assert await page.get_by_role("link", name="Integrations").count() == 0
    response = await page.goto("/console/queue")
    assert response.status == 403
    staff = await new_page()
    await sign_in(staff, world.agent_a)
    response = await staff.goto("/portal")
    assert response.status == 403


async def test_reports_are_drawn_as_charts(client, world: World, new_page, screenshot_dir):
    from tests.integration.test_workqueue_console import claim, signed_in

    for _ in range(3):
        await client.post(
            "/api/v1/orders", json=order_body(payment_status="pending"), headers=bearer(world.key_a)
        )
    headers = await signed_in(client, world.agent_a)
    for _ in range(2):
        item_url = await claim(client, headers)
        await client.post(f"{item_url}/done", data={"_csrf": headers["X-CSRF-Token"], "outcome": "resolved"})

    page = await new_page()
    await sign_in(page, world.client_viewer_a)
    await page.goto("/portal/reports")
    charts = page.locator("svg.chart")
    assert await charts.count() == 5
    sla_bar = page.locator("#report-sla svg.chart rect").first
    await sla_bar.wait_for()
    box = await sla_bar.bounding_box()
    assert box is not None and box["height"] > 50  # 100 % attainment: a tall bar, not a sliver
    assert "verification" in await page.locator("#report-sla .legend").inner_text()
    status_bar = page.locator("#report-status svg.chart rect")
    assert await status_bar.count() == 1
    await page.screenshot(path=str(screenshot_dir / "portal-05-reports.png"), full_page=True)
