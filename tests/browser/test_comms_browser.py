"""The messages panel in a real browser: a hostile customer email is shown without running
anything or loading remote images; an agent adds an internal note."""

from __future__ import annotations

import pytest

from orderdesk.comms import inbound
from tests.browser.conftest import sign_in
from tests.browser.test_console_browser import pending_order
from tests.conftest import World, configure_customer_email
from tests.support.email_fixtures import load

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:AuthenticationMiddleware.exclude_path_pattern:DeprecationWarning"),
]


async def test_a_hostile_email_is_shown_safely_and_notes_can_be_added(
    db, world: World, new_page, screenshot_dir
):
    order = await pending_order(db, world.a)
    local = (await configure_customer_email(db, world.a.id)).local_part
    raw = load(
        "scripts_and_remote_images.eml",
        sender=order["customer_email"],
        to=f"{local}@in.test",
        order=order["number"],
    )
    await inbound.receive_email(db, raw, recipient=f"{local}@in.test")

    page = await new_page()
    dialogs, remote = [], []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    page.on("request", lambda request: remote.append(request.url) if "127.0.0.1" not in request.url else None)
    await sign_in(page, world.agent_a)
    await page.goto(f"/console/orders/{order['id']}")
    panel = page.locator('[data-testid="messages-panel"]')
    await panel.locator('[data-testid="message"]').first.wait_for()
    assert "Where is my order?" in await panel.inner_text()
    await panel.locator("summary", has_text="Whole message").click()
    frame = page.frame_locator("iframe.message-html")
    await frame.locator("p", has_text="Where is my order?").wait_for()

    await panel.get_by_label("Internal note").fill("Asked the carrier; parcel is at the depot.")
    async with page.expect_response(lambda r: r.url.endswith("/notes")) as posted:
        await panel.get_by_role("button", name="Add note").click()
    assert (await posted.value).status == 200
    await page.locator(
        '[data-testid="messages-panel"] .message.channel-note', has_text="at the depot"
    ).wait_for()
    await page.screenshot(path=str(screenshot_dir / "20-messages-panel.png"), full_page=True)
    assert dialogs == []  # the message's script never ran
    assert [url for url in remote if "tracker.example" in url or "93.184.216.34" in url] == []
