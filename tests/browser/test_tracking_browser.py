"""The tracking page in a real browser: a customer opens the link from their email on a
phone-sized screen, sends a message, and the agent finds it in the console."""

from __future__ import annotations

import re
import uuid

import pytest

from orderdesk.accounts import services as accounts
from orderdesk.accounts.models import StaffRole
from orderdesk.orders import services as orders
from orderdesk.orders.models import Channel
from orderdesk.orders.schemas import OrderCreate
from orderdesk.tenants import branding
from orderdesk.tenants import services as tenants
from orderdesk.tracking import links
from tests.browser.conftest import sign_in
from tests.conftest import PASSWORD, Person, World
from tests.integration.test_orders_api import order_body

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:AuthenticationMiddleware.exclude_path_pattern:DeprecationWarning"),
]

PHONE = {"width": 390, "height": 844}


async def message_agent(db, tenant) -> Person:
    """An agent of the tenant who answers customer messages from every channel."""
    system = await tenants.system_actor(db)
    email = f"messages-{uuid.uuid4().hex[:6]}@ops.example.com"
    user = await accounts.create_staff_user(
        db,
        system,
        email=email,
        display_name="Mia Messages",
        password=PASSWORD,
        role=StaffRole.AGENT,
        tenant_slugs=[tenant.slug],
        languages=["en"],
        channels=["email", "chat", "tracking"],
        task_kinds=["customer_message"],
    )
    return Person(email, PASSWORD, user.id)


async def test_customer_sends_a_message_from_the_tracking_link_and_the_agent_sees_it(
    db, settings, world: World, browser, live_server, new_page, screenshot_dir
):
    system = await tenants.system_actor(db)
    await branding.set_accent_colour(db, system, world.a.id, "#0b6e4f")
    order = (
        await orders.capture_order(
            db, system, OrderCreate.model_validate(order_body(tenant_id=str(world.a.id))), channel=Channel.API
        )
    ).body
    agent = await message_agent(db, world.a)
    link = links.tracking_path(settings.secret_key, world.a.id, uuid.UUID(order["id"]))

    context = await browser.new_context(base_url=live_server, viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    try:
        customer = await context.new_page()
        await customer.goto(link)
        await customer.get_by_role("heading", level=1).wait_for()
        assert await customer.get_by_test_id("order-number").inner_text() == f"#{order['number']}"
        assert await customer.get_by_test_id("headline").inner_text() == "Order received"
        # The tenant's brand: its name in the header, its accent behind it.
        header = customer.locator(".track-header")
        assert world.a.name in await header.inner_text()
        assert await header.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(11, 110, 79)"
        # Nothing wider than the phone: no sideways scrolling.
        assert await customer.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        # Every form control has a label a screen reader announces.
        unlabelled = await customer.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
                 .filter(el => !el.labels || el.labels.length === 0).map(el => el.name)"""
        )
        assert unlabelled == []
        await customer.screenshot(path=str(screenshot_dir / "tracking-01-order.png"), full_page=True)

        text = f"Could you leave the parcel with my neighbour? ({uuid.uuid4().hex[:6]})"
        await customer.get_by_label(f"Your message about order #{order['number']}").fill(text)
        await customer.get_by_role("button", name="Send message").click()
        await customer.get_by_test_id("notice").wait_for()
        assert "your message has been sent" in await customer.get_by_test_id("notice").inner_text()
        await customer.get_by_test_id("thread").get_by_text(text).wait_for()
        await customer.screenshot(path=str(screenshot_dir / "tracking-02-message-sent.png"), full_page=True)
    finally:
        await context.close()

    console = await new_page()
    await sign_in(console, agent)
    await console.goto("/console/queue")
    await console.click("#get-next")
    await console.wait_for_url(re.compile(r"/console/work/[0-9a-f-]+$"))
    heading = await console.locator("h1").inner_text()
    assert f"order #{order['number']}" in heading
    # The message itself, in the conversation panel next to the item, marked as from the tracking page.
    message = console.get_by_test_id("messages-panel").get_by_test_id("message").filter(has_text=text)
    await message.wait_for()
    assert "tracking" in await message.inner_text()
    assert text in await console.locator("section.card", has_text="Details").first.inner_text()
    await console.screenshot(path=str(screenshot_dir / "tracking-03-agent-item.png"), full_page=True)
    # And on the order's timeline, from the customer, through the tracking page.
    await console.goto(f"/console/orders/{order['id']}")
    entry = console.get_by_test_id("timeline").locator("li", has_text="Tracking from")
    await entry.first.wait_for()
    assert "tracking" in await entry.first.inner_text()


async def test_a_customer_looks_the_order_up_on_a_phone(
    db, world: World, browser, live_server, screenshot_dir
):
    system = await tenants.system_actor(db)
    order = (
        await orders.capture_order(
            db, system, OrderCreate.model_validate(order_body(tenant_id=str(world.a.id))), channel=Channel.API
        )
    ).body
    context = await browser.new_context(base_url=live_server, viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(10_000)
    try:
        page = await context.new_page()
        await page.goto(f"/track/{world.a.slug}")
        # A typo first: the answer does not say which of the two was wrong.
        await page.get_by_label("Order number").fill(str(order["number"]))
        await page.get_by_label("Email address or postal code").fill("10118")
        await page.get_by_role("button", name="Find my order").click()
        problem = page.get_by_test_id("lookup-problem")
        await problem.wait_for()
        assert "We could not find an order with these details" in await problem.inner_text()
        assert await page.get_by_label("Order number").input_value() == ""
        await page.screenshot(path=str(screenshot_dir / "tracking-06-lookup-miss.png"), full_page=True)
        await page.get_by_label("Order number").fill(str(order["number"]))
        await page.get_by_label("Email address or postal code").fill("10117")
        await page.get_by_role("button", name="Find my order").click()
        await page.wait_for_url(re.compile(r"/track/o/"))
        assert await page.get_by_test_id("order-number").inner_text() == f"#{order['number']}"
    finally:
        await context.close()


async def test_a_customer_asks_for_a_return_of_a_delivered_order(
    settings, world: World, live_server, new_page, screenshot_dir
):
    import httpx

    from tests.integration.test_tracking import delivered_order

    async with httpx.AsyncClient(base_url=live_server) as api:
        order = await delivered_order(api, world.key_a)
    page = await new_page()
    await page.goto(links.tracking_path(settings.secret_key, world.a.id, uuid.UUID(order["id"])))
    assert await page.get_by_test_id("headline").inner_text() == "Delivered"
    carrier = page.get_by_test_id("carrier-link")
    assert (await carrier.get_attribute("href")).startswith("https://www.dhl.com/")
    assert await carrier.get_attribute("rel") == "noopener noreferrer"
    await page.screenshot(path=str(screenshot_dir / "tracking-04-delivered.png"), full_page=True)

    await page.get_by_label("Tent").select_option("1")
    await page.get_by_label("Why are you returning them?").select_option("damaged")
    await page.get_by_label("Anything we should know?").fill("The pole snapped")
    await page.get_by_role("button", name="Request a return").click()
    await page.get_by_test_id("notice").wait_for()
    returned = page.get_by_test_id("return")
    assert f"RMA-{order['number']}-1" in await returned.inner_text()
    assert "Waiting for our answer" in await returned.inner_text()
    assert await page.get_by_test_id("headline").inner_text() == "Return requested"
    await page.screenshot(path=str(screenshot_dir / "tracking-05-return-requested.png"), full_page=True)
