"""The reply box in a real browser: a macro's text lands in the text area (htmx), errors keep the text."""

from __future__ import annotations

import uuid

import pytest

from orderdesk.comms import outbound
from orderdesk.comms import services as comms
from orderdesk.comms.models import MessageChannel
from orderdesk.orders import services as orders
from orderdesk.orders.models import Channel, Order
from orderdesk.orders.schemas import OrderCreate
from orderdesk.tenants import services as tenants
from tests.browser.conftest import sign_in
from tests.conftest import World, configure_customer_email
from tests.integration.test_orders_api import order_body

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:AuthenticationMiddleware.exclude_path_pattern:DeprecationWarning"),
]


async def test_a_macro_fills_the_reply_box_and_a_refused_reply_keeps_the_text(
    db, world: World, new_page, screenshot_dir
):
    system = await tenants.system_actor(db)
    body = order_body(tenant_id=str(world.a.id))
    order = (
        await orders.capture_order(db, system, OrderCreate.model_validate(body), channel=Channel.API)
    ).body
    await configure_customer_email(db, world.a.id, from_address="support@a.example")
    await outbound.create_macro(
        db,
        system,
        world.a.id,
        outbound.MacroFields(
            name="Status", insert_text="Order {{ order.reference }} is {{ order.status_label }}."
        ),
    )
    async with db.transaction(system.scope) as session:
        row = await session.get(Order, (world.a.id, uuid.UUID(order["id"])))
        conversation = await comms.start_conversation_in(
            session,
            world.a.id,
            channel=MessageChannel.EMAIL,
            order=row,
            customer_email=row.customer_email,
            subject="Where is it?",
        )
    page = await new_page()
    await sign_in(page, world.agent_a)
    await page.goto(f"/console/conversations/{conversation.id}/reply")
    box = page.locator('[data-testid="reply-text"]')
    await box.fill("Hello Kim,")
    await page.select_option('select[name="macro_id"]', label="Status")
    expected = f"Hello Kim,\n\nOrder #{order['number']} is being checked."
    await page.wait_for_function(
        "expected => document.querySelector('[data-testid=reply-text]').value === expected", arg=expected
    )
    await page.screenshot(path=str(screenshot_dir / "reply-box-macro.png"), full_page=True)
    await page.get_by_role("button", name="Send reply").click()
    # The test server has no inbound domain: the reply is refused, saying why, and nothing typed is lost.
    await page.locator(".error", has_text="ORDERDESK_INBOUND_DOMAINS is not set").wait_for()
    assert await page.locator('[data-testid="reply-text"]').input_value() == expected
