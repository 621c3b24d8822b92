"""The console in a real browser: Get next, verify with an override, done; two agents at once;
manual entry with inline errors; a client user kept out. Screenshots of the main pages are kept."""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest

from orderdesk.orders import services as orders
from orderdesk.orders.models import Channel
from orderdesk.orders.schemas import OrderCreate
from orderdesk.tenants import services as tenants
from tests.browser.conftest import sign_in
from tests.conftest import World
from tests.integration.test_orders_api import order_body

pytestmark = [
    pytest.mark.browser,
    # Static files pass the authentication middleware through a path exclusion that Litestar
    # warns about; the suite turns such warnings into errors, which would fail every stylesheet.
    pytest.mark.filterwarnings("ignore:AuthenticationMiddleware.exclude_path_pattern:DeprecationWarning"),
]


async def pending_order(db, tenant) -> dict:
    system = await tenants.system_actor(db)
    body = order_body(tenant_id=str(tenant.id), payment_status="pending")
    return (
        await orders.capture_order(db, system, OrderCreate.model_validate(body), channel=Channel.API)
    ).body


async def test_agent_verifies_an_order_from_get_next(db, world: World, new_page, screenshot_dir):
    order = await pending_order(db, world.a)
    page = await new_page()
    await sign_in(page, world.agent_a)
    await page.goto("/console/queue")
    await page.screenshot(path=str(screenshot_dir / "01-queue.png"), full_page=True)

    await page.click("#get-next")
    await page.wait_for_url(re.compile(r"/console/work/[0-9a-f-]+$"))
    failed = page.locator('li.check-row.failed[data-check="payment_confirmed"]')
    await failed.wait_for()
    assert await page.locator("h1").inner_text() == f"Verify order #{order['number']}: payment confirmed"
    # The failed check is drawn in the alert colour.
    colour = await failed.evaluate("el => getComputedStyle(el).backgroundColor")
    assert colour == "rgb(253, 236, 234)"
    # The state machine's actions are buttons from the start; verifying waits for the decision.
    await page.locator('[data-testid="action-verify"]').wait_for()
    await page.locator('[data-testid="action-cancel"]').wait_for()
    await page.screenshot(path=str(screenshot_dir / "02-item-failed-check.png"), full_page=True)

    await page.click('[data-testid="override-payment_confirmed"]')
    await page.locator('li.check-row.overridden[data-check="payment_confirmed"]').wait_for()
    await page.click('[data-testid="action-verify"]')
    await page.locator('[data-testid="order-status"]', has_text="verified").wait_for()
    await page.locator('[data-testid="timeline"] li', has_text="Verified").first.wait_for()
    # The item box refreshed itself: the cause is settled, the agent records the outcome.
    await page.locator('[data-testid="cause-resolved"]').wait_for()
    await page.screenshot(path=str(screenshot_dir / "03-item-verified.png"), full_page=True)
    item_url = page.url

    await page.click("#done-button")
    await page.wait_for_url(re.compile(r"/console/queue"))
    assert "Nothing is waiting for you" in await page.content()
    await page.goto(item_url)
    assert (await page.locator('[data-testid="item-status"]').inner_text()).startswith("done")


async def test_two_agents_pressing_get_next_at_once_get_different_items(db, world: World, new_page):
    from orderdesk.accounts.models import StaffRole
    from tests.conftest import make_staff

    second_agent = await make_staff(db, StaffRole.AGENT, world.a)
    for _ in range(2):
        await pending_order(db, world.a)
    first, second = await new_page(), await new_page()
    await sign_in(first, world.agent_a)
    await sign_in(second, second_agent)
    await asyncio.gather(first.goto("/console/queue"), second.goto("/console/queue"))
    await asyncio.gather(first.click("#get-next"), second.click("#get-next"))
    pattern = re.compile(r"/console/work/([0-9a-f-]+)$")
    await asyncio.gather(first.wait_for_url(pattern), second.wait_for_url(pattern))
    ids = {pattern.search(first.url).group(1), pattern.search(second.url).group(1)}
    assert len(ids) == 2
    for item_id in ids:
        uuid.UUID(item_id)


async def test_manual_entry_shows_inline_errors_and_saves_nothing_until_fixed(
    db, world: World, new_page, screenshot_dir
):
    page = await new_page()
    await sign_in(page, world.agent_a)
    await page.goto("/console/orders/new")
    await page.fill('input[name="customer.name"]', "Hanna Weber")
    await page.fill('input[name="customer.email"]', "hanna@")
    await page.fill('input[name="shipping_address.line1"]', "Hauptstr. 5")
    await page.fill('input[name="shipping_address.city"]', "Köln")
    await page.fill('input[name="shipping_address.postal_code"]', "50667")
    await page.fill('input[name="shipping_address.country"]', "DE")
    await page.fill('input[name="lines[0].sku"]', "TENT-2P")
    await page.fill('input[name="lines[0].quantity"]', "two")
    await page.fill('input[name="lines[0].unit_price"]', "19.90")
    email_error = page.locator("#err-customer-email")
    await email_error.filter(has_text=re.compile(".+")).wait_for()
    await page.locator("#err-lines-0-quantity", has_text="whole number").wait_for()
    # The fields with an error say so to assistive technology, and point at their error text.
    email = page.locator('input[name="customer.email"]')
    assert await email.get_attribute("aria-describedby") == "err-customer-email"
    await page.locator('input[name="lines[0].quantity"][aria-invalid="true"]').wait_for()
    assert await email.get_attribute("aria-invalid") == "true"
    assert await page.locator('input[name="customer.name"]').get_attribute("aria-invalid") is None
    await page.screenshot(path=str(screenshot_dir / "04-entry-inline-errors.png"), full_page=True)

    await page.click("#create-order")
    await page.locator("#entry-error-summary").wait_for()
    assert "/console/orders/new" in page.url
    listed = await orders.list_orders(
        db, await tenants.system_actor(db), orders.OrderFilters(tenant_id=world.a.id)
    )
    assert not [o for o in listed.items if o.customer_name == "Hanna Weber"]

    await page.fill('input[name="customer.email"]', "hanna@example.com")
    await page.fill('input[name="lines[0].quantity"]', "2")
    await page.locator("#err-customer-email").filter(has_text=re.compile("^$")).wait_for(state="attached")
    await page.locator('input[name="customer.email"]:not([aria-invalid])').wait_for()
    await page.locator('input[name="lines[0].quantity"]:not([aria-invalid])').wait_for()
    await page.click("#create-order")
    await page.wait_for_url(re.compile(r"/console/orders/[0-9a-f-]+\?created=1"))
    assert "39.80 EUR" in await page.content()
    await page.screenshot(path=str(screenshot_dir / "05-order-created.png"), full_page=True)


async def test_keyboard_shortcuts_are_listed_on_question_mark(world: World, new_page):
    page = await new_page()
    await sign_in(page, world.agent_a)
    await page.goto("/console/queue")
    await page.keyboard.press("?")
    dialog = page.locator("dialog#shortcuts")
    await dialog.wait_for(state="visible")
    assert "Get next item" in await dialog.inner_text()
    await page.keyboard.press("Escape")
    await dialog.wait_for(state="hidden")


ACTIVE_ELEMENT = "() => { const a = document.activeElement; return a && (a.name || a.id || a.tagName); }"


async def test_frequent_shortcuts_work_by_keyboard_alone(db, world: World, new_page, screenshot_dir):
    first = await pending_order(db, world.a)
    await pending_order(db, world.a)
    page = await new_page()
    await sign_in(page, world.agent_a)
    await page.goto("/console/queue")
    await page.keyboard.press("?")
    listed = await page.locator("dialog#shortcuts").inner_text()
    for key, what in (("g", "Get next"), ("s", "Snooze"), ("d", "Done"), ("n", "Next field")):
        assert re.search(rf"^{key}\s*\n?\s*{what}", listed, re.MULTILINE), (key, listed)
    assert "Alt+N" in listed.replace("\n", "").replace(" ", "")
    await page.keyboard.press("Escape")

    # g opens the next item; s chooses the snooze time and Enter snoozes it.
    await page.keyboard.press("g")
    await page.wait_for_url(re.compile(r"/console/work/[0-9a-f-]+$"))
    await page.keyboard.press("s")
    assert await page.evaluate(ACTIVE_ELEMENT) == "minutes"
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/console/queue\?moved=snoozed"))

    # g again: the other order; d chooses the outcome and Enter records it.
    await page.keyboard.press("g")
    await page.wait_for_url(re.compile(r"/console/work/[0-9a-f-]+$"))
    await page.keyboard.press("d")
    assert await page.evaluate(ACTIVE_ELEMENT) == "outcome"
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/console/queue\?done=1"))

    # Next field: from inside a field with Alt+N, after Esc with n; it goes on from the current
    # field, not back to the first one, and wraps round at the end of the form.
    await page.goto("/console/orders/new")
    await page.focus('input[name="customer.name"]')
    await page.keyboard.type("Hanna Weber")
    await page.keyboard.press("Alt+KeyN")
    assert await page.evaluate(ACTIVE_ELEMENT) == "shipping_address.line1"
    await page.keyboard.type("Hauptstr. 5")
    await page.keyboard.press("Alt+KeyN")
    assert await page.evaluate(ACTIVE_ELEMENT) == "shipping_address.city"
    await page.keyboard.press("Escape")
    assert await page.evaluate(ACTIVE_ELEMENT) == "BODY"
    await page.keyboard.press("n")
    assert await page.evaluate(ACTIVE_ELEMENT) == "shipping_address.country"
    await page.keyboard.press("Alt+KeyN")
    assert await page.evaluate(ACTIVE_ELEMENT) == "shipping_address.city"

    await page.goto(f"/console/search?q={first['number']}")
    await page.locator("#search-results table").wait_for()
    await page.screenshot(path=str(screenshot_dir / "08-search.png"), full_page=True)


async def test_focus_stays_in_the_order_panel_after_an_action_by_keyboard(db, world: World, new_page):
    await pending_order(db, world.a)
    page = await new_page()
    await sign_in(page, world.agent_a)
    await page.goto("/console/queue")
    await page.keyboard.press("g")
    await page.wait_for_url(re.compile(r"/console/work/[0-9a-f-]+$"))
    in_panel = "() => !!document.activeElement.closest('#order-panel')"

    await page.focus('[data-testid="override-payment_confirmed"]')
    await page.keyboard.press("Enter")
    await page.locator('li.check-row.overridden[data-check="payment_confirmed"]').wait_for()
    await page.wait_for_function(in_panel)
    assert "overridden" in await page.evaluate("() => document.activeElement.textContent")

    # From the message, v reaches Verify; Enter verifies, and focus lands on the new message.
    await page.keyboard.press("v")
    assert await page.evaluate(ACTIVE_ELEMENT) == "verify-order"
    await page.keyboard.press("Enter")
    await page.locator('[data-testid="order-status"]', has_text="verified").wait_for()
    await page.wait_for_function(in_panel)
    notice = await page.evaluate("() => document.activeElement.textContent.trim()")
    assert "verified" in notice.lower()
    assert await page.locator("#announce").inner_text() == notice
    # The item box refreshing itself afterwards does not take the focus away.
    await page.locator('[data-testid="cause-resolved"]').wait_for()
    assert await page.evaluate(in_panel)


async def test_a_client_user_cannot_open_the_console(world: World, new_page):
    page = await new_page()
    await sign_in(page, world.client_admin_a)
    response = await page.goto("/console/queue")
    assert response.status == 403
    assert "operations staff" in await page.content()


async def test_lead_board_refreshes_itself(db, world: World, new_page, screenshot_dir):
    await pending_order(db, world.a)
    page = await new_page()
    await sign_in(page, world.lead_a)
    await page.goto("/console/lead")
    stamp = page.locator('[data-testid="board-time"]')
    first = await stamp.inner_text()
    await page.screenshot(path=str(screenshot_dir / "06-team-board.png"), full_page=True)
    await page.wait_for_function(
        "(before) => document.querySelector('[data-testid=board-time]').innerText !== before",
        arg=first,
        timeout=12_000,
    )
    await page.goto("/console/operations")
    await page.locator('[data-testid="operations-tenants"]').wait_for()
    await page.screenshot(path=str(screenshot_dir / "07-operations.png"), full_page=True)
    # Readable on a 13-inch laptop: every status column shows without scrolling sideways.
    statuses = page.locator('[data-testid="operations-tenants"]')
    assert await statuses.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth")
    assert await page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    await page.goto(f"/console/sla/{world.a.id}")
    await page.locator('input[name="hours.mon"]').wait_for()
    await page.screenshot(path=str(screenshot_dir / "09-sla-editor.png"), full_page=True)
