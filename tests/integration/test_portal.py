"""The client portal through HTTP: orders, export, timeline, decisions, reports, integrations,
users and branding, as client admins and viewers see them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid

import pytest

from orderdesk.core.tenancy import Scope
from orderdesk.workqueue.models import WorkItem
from tests.conftest import World, configure_customer_email, session_csrf, sign_in
from tests.integration.test_branding import tiny_png
from tests.integration.test_orders_api import bearer, order_body

HTMX = {"HX-Request": "true"}


async def portal_session(client, person) -> dict[str, str]:
    """Sign `person` in (whoever was signed in before); return the headers for unsafe requests."""
    client.cookies.clear()
    response = await sign_in(client, person)
    assert response.status_code in (302, 303), response.text
    home = await client.get("/portal")
    assert home.status_code == 200, home.text
    return {"X-CSRF-Token": session_csrf(home.text)}


async def new_order(client, key: str, **changes) -> dict:
    response = await client.post("/api/v1/orders", json=order_body(**changes), headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()


def csrf_form(headers: dict[str, str], **fields) -> dict[str, str]:
    return {"_csrf": headers["X-CSRF-Token"], **fields}


# ---------------------------------------------------------------- access


async def test_client_users_get_403_on_console_and_staff_on_portal(client, app_client_factory, world: World):
    await portal_session(client, world.client_admin_a)
    for path in ("/console", "/console/queue", "/console/search?q=x", f"/console/tenants/{world.a.id}"):
        assert (await client.get(path)).status_code == 403, path
    async with app_client_factory() as staff:
        await sign_in(staff, world.agent_a)
        for path in ("/portal", "/portal/orders", "/portal/reports", "/portal/decisions", "/portal/users"):
            assert (await staff.get(path)).status_code == 403, path
        assert (await staff.get("/portal/settings/integrations")).status_code == 403


async def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = await client.get("/portal/orders", follow_redirects=False)
    assert response.status_code in (302, 303)
    assert response.headers["location"].startswith("/sign-in")


async def test_viewers_cannot_reach_admin_screens_or_actions(client, world: World):
    headers = await portal_session(client, world.client_viewer_a)
    for path in ("/portal/settings/integrations", "/portal/settings/branding"):
        assert (await client.get(path)).status_code == 403, path
    refused = await client.post(
        "/portal/users/invitations", data=csrf_form(headers, email="x@example.com", role="viewer")
    )
    assert refused.status_code == 403
    refused = await client.post("/portal/settings/api-keys", data=csrf_form(headers, name="sneaky"))
    assert refused.status_code == 403
    page = await client.get("/portal/users")
    assert page.status_code == 200 and "Invite a colleague" not in page.text


# ---------------------------------------------------------------- orders


async def test_order_list_filters_searches_and_pages(client, world: World):
    first = await new_order(client, world.key_a, tags=["gift"])
    second = await new_order(
        client, world.key_a, customer={"name": "Zora Quinten", "email": "zora@example.org"}
    )
    b_order = await new_order(client, world.key_b)
    await portal_session(client, world.client_viewer_a)

    page = await client.get("/portal/orders")
    assert page.status_code == 200
    assert f"#{first['number']}" in page.text and f"#{second['number']}" in page.text
    assert b_order["id"] not in page.text

    by_name = await client.get("/portal/orders?q=zora quint")
    assert (
        f"/portal/orders/{second['id']}" in by_name.text
        and f"/portal/orders/{first['id']}" not in by_name.text
    )
    by_email = await client.get("/portal/orders?q=ZORA@EXAMPLE.ORG")
    assert f"/portal/orders/{second['id']}" in by_email.text
    by_ref = await client.get(f"/portal/orders?q={first['external_ref']}")
    assert (
        f"/portal/orders/{first['id']}" in by_ref.text and f"/portal/orders/{second['id']}" not in by_ref.text
    )
    by_number = await client.get(f"/portal/orders?q=%23{second['number']}")
    assert f"/portal/orders/{second['id']}" in by_number.text

    tagged = await client.get("/portal/orders?tag=gift")
    assert (
        f"/portal/orders/{first['id']}" in tagged.text and f"/portal/orders/{second['id']}" not in tagged.text
    )
    by_channel = await client.get("/portal/orders?channel=agent")
    assert "No orders match." in by_channel.text
    by_status = await client.get("/portal/orders?status=awaiting_verification&channel=api")
    assert f"/portal/orders/{first['id']}" in by_status.text
    today = dt.datetime.now(dt.UTC).date()
    dated = await client.get(f"/portal/orders?from={today}&to={today}")
    assert f"/portal/orders/{first['id']}" in dated.text
    earlier = await client.get(f"/portal/orders?to={today - dt.timedelta(days=3)}")
    assert "No orders match." in earlier.text

    # The htmx filter bar gets the results alone.
    partial = await client.get("/portal/orders?q=zora", headers={**HTMX, "HX-Target": "order-results"})
    assert "<html" not in partial.text and f"/portal/orders/{second['id']}" in partial.text


async def test_order_list_pages_by_cursor_without_repeats(client, world: World):
    made = [await new_order(client, world.key_a) for _ in range(3)]
    await portal_session(client, world.client_viewer_a)
    from orderdesk.portal import orders as portal_orders

    original = portal_orders.to_filters

    def two_per_page(actor, query, *, limit=50):
        return original(actor, query, limit=2)

    portal_orders.to_filters = two_per_page
    try:
        first = await client.get("/portal/orders")
        next_href = re.search(
            r'data-testid="next-page"[^>]*|href="(/portal/orders\?cursor=[^"]+)"', first.text
        )
        link = re.search(r'href="(/portal/orders\?[^"]*cursor=[^"]+)" data-testid="next-page"', first.text)
        assert link, first.text
        second = await client.get(link.group(1).replace("&amp;", "&"))
    finally:
        portal_orders.to_filters = original
    ids_first = {o["id"] for o in made if f"/portal/orders/{o['id']}" in first.text}
    ids_second = {o["id"] for o in made if f"/portal/orders/{o['id']}" in second.text}
    assert len(ids_first) == 2 and len(ids_second) == 1 and not ids_first & ids_second
    assert next_href is not None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("status=lost", "is not an order status"),
        ("channel=pigeon", "is not a channel"),
        ("from=yesterday", "must be a date as YYYY-MM-DD"),
        ("from=2026-02-02&to=2026-01-01", "is before the start date"),
        ("cursor=garbage!", "is not a cursor from a previous page"),
    ],
)
async def test_bad_filters_say_what_is_wrong(client, world: World, query, message):
    await portal_session(client, world.client_viewer_a)
    response = await client.get(f"/portal/orders?{query}")
    assert response.status_code == 422
    assert message in response.text


async def test_csv_export_is_filtered_tenant_only_and_formula_safe(client, world: World):
    risky = await new_order(
        client, world.key_a, customer={"name": '=HYPERLINK("http://evil")', "email": "risky@example.com"}
    )
    plain = await new_order(client, world.key_a, tags=["export-me"])
    await new_order(client, world.key_b)
    await portal_session(client, world.client_viewer_a)

    response = await client.get("/portal/orders.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    numbers = {int(r["number"]) for r in rows}
    assert numbers == {risky["number"], plain["number"]}
    risky_row = next(r for r in rows if int(r["number"]) == risky["number"])
    assert risky_row["customer_name"] == '\'=HYPERLINK("http://evil")'
    assert risky_row["total"] and risky_row["currency"] == "EUR"

    filtered = await client.get("/portal/orders.csv?tag=export-me")
    rows = list(csv.DictReader(io.StringIO(filtered.text.lstrip("\ufeff"))))
    assert [int(r["number"]) for r in rows] == [plain["number"]]
    assert (await client.get("/portal/orders.csv?status=nope")).status_code == 422


async def test_order_page_tells_the_whole_story(client, db, world: World):
    headers_b = bearer(world.key_a)
    warehouse = await client.post(
        "/api/v1/warehouses", json={"code": "A-WH", "name": "Main", "country": "DE"}, headers=headers_b
    )
    stocked = await client.post(
        f"/api/v1/warehouses/{warehouse.json()['id']}/stock",
        json={"updates": [{"sku": "TENT-2P", "on_hand": 5}, {"sku": "MAT-1", "on_hand": 5}]},
        headers=headers_b,
    )
    assert stocked.status_code == 200, stocked.text
    order = await new_order(client, world.key_a)
    # An agent verifies it in the console: their action is on the timeline.
    from tests.integration.test_workqueue_console import claim, signed_in

    agent_headers = await signed_in(client, world.agent_a)
    await claim(client, agent_headers)
    verified = await client.post(
        f"/console/orders/{order['id']}/actions/verify", headers={**agent_headers, **HTMX}
    )
    assert verified.status_code == 200, verified.text
    client.cookies.clear()
    shipment = await client.post(
        f"/api/v1/orders/{order['id']}/shipments",
        json={
            "warehouse_id": warehouse.json()["id"],
            "carrier": "DHL",
            "tracking_number": "JJD000123",
            "tracking_url": "https://track.example.com/JJD000123",
            "lines": [{"line_no": 1, "quantity": 2}, {"line_no": 2, "quantity": 1}],
        },
        headers=headers_b,
    )
    assert shipment.status_code == 201, shipment.text
    scanned = await client.post(
        f"/api/v1/shipments/{shipment.json()['id']}/tracking-events",
        json={
            "event_id": "s-1",
            "status": "in_transit",
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "location": "Leipzig hub",
        },
        headers=headers_b,
    )
    assert scanned.status_code == 201, scanned.text
    endpoint = await client.post(
        "/api/v1/webhook-endpoints", json={"url": "https://93.184.216.34/hooks"}, headers=headers_b
    )
    assert endpoint.status_code == 201, endpoint.text
    await client.post(f"/api/v1/orders/{order['id']}/holds", json={"reason": "other"}, headers=headers_b)
    # What a worker's dispatch does first: one delivery per endpoint for each new event.
    from orderdesk.integrations.delivery import fan_out

    assert await fan_out(db, Scope(tenant_ids=frozenset({world.a.id}))) >= 1

    await portal_session(client, world.client_viewer_a)
    page = await client.get(f"/portal/orders/{order['id']}")
    assert page.status_code == 200
    text = page.text
    assert f"Order #{order['number']}" in text
    assert "Shipment 1 left A-WH with DHL" in text
    assert "https://track.example.com/JJD000123" in text
    assert "Shipment 1: in transit" in text and "Leipzig hub" in text
    # The hold placed after the endpoint existed was sent as a webhook for this order.
    assert "Webhook order." in text
    agent_name = re.search(r'data-testid="who">([^<]+)<', text)
    whos = re.findall(r'data-testid="who">([^<]+)<', text)
    assert any("(agent)" in w for w in whos), whos
    assert agent_name is not None

    # The tenant prefers roles: the agent's name disappears from the timeline.
    admin_headers = await portal_session(client, world.client_admin_a)
    saved = await client.post(
        "/portal/settings/branding", data=csrf_form(admin_headers, accent_colour="", agent_display="role")
    )
    assert saved.status_code == 200, saved.text
    page = await client.get(f"/portal/orders/{order['id']}")
    whos = re.findall(r'data-testid="who">([^<]+)<', page.text)
    assert "Agent" in whos and not any("(agent)" in w for w in whos), whos


async def test_a_foreign_or_missing_order_is_the_same_404(client, world: World):
    b_order = await new_order(client, world.key_b)
    await portal_session(client, world.client_admin_a)
    foreign = await client.get(f"/portal/orders/{b_order['id']}")
    missing = await client.get(f"/portal/orders/{uuid.uuid4()}")
    assert foreign.status_code == missing.status_code == 404


# ---------------------------------------------------------------- decisions


async def ask_client_about_new_order(client, world: World, question: str) -> tuple[dict, str]:
    """An agent claims the order's item and asks A's client; returns (order, work item id)."""
    from tests.integration.test_workqueue_console import claim, signed_in

    order = await new_order(client, world.key_a, payment_status="pending")
    headers = await signed_in(client, world.agent_a)
    item_url = await claim(client, headers)
    item_page = await client.get(item_url)
    assert 'data-testid="ask-client"' in item_page.text
    asked = await client.post(
        f"{item_url}/ask-client",
        data={"_csrf": headers["X-CSRF-Token"], "question": question},
        follow_redirects=False,
    )
    assert asked.status_code in (302, 303), asked.text
    client.cookies.clear()
    return order, item_url.rsplit("/", 1)[1]


async def item_row(db, world: World, item_id: str) -> WorkItem:
    from sqlalchemy import select

    async with db.transaction(Scope(tenant_ids=frozenset({world.a.id}))) as session:
        return await session.scalar(select(WorkItem).where(WorkItem.id == uuid.UUID(item_id)))


async def test_client_approves_and_the_item_comes_back_to_the_agents(client, db, world: World):
    order, item_id = await ask_client_about_new_order(
        client, world, "Ship to the new address the customer gave?"
    )
    parked = await item_row(db, world, item_id)
    assert parked.status.value == "waiting_client" and parked.sla_running_since is None

    headers = await portal_session(client, world.client_admin_a)
    home = await client.get("/portal")
    assert 'data-testid="waiting-count">1<' in home.text
    page = await client.get("/portal/decisions")
    assert "Ship to the new address the customer gave?" in page.text
    decision_id = re.search(r'id="decision-([0-9a-f-]+)"', page.text).group(1)

    answer = await client.post(
        f"/portal/decisions/{decision_id}",
        data=csrf_form(headers, verdict="approved", comment="Yes, use the new one"),
        headers=HTMX,
    )
    assert answer.status_code == 200, answer.text
    assert 'data-testid="decided"' in answer.text and "approved" in answer.text

    item = await item_row(db, world, item_id)
    assert item.status.value == "open"
    assert item.sla_running_since is not None  # the clock runs again
    assert "Client approved" in item.detail and "Yes, use the new one" in item.detail
    story = await client.get(f"/portal/orders/{order['id']}")
    assert "Client approved: Ship to the new address the customer gave?" in story.text
    assert "Client asked to decide" in story.text
    events = (await client.get(f"/api/v1/orders/{order['id']}/events", headers=bearer(world.key_a))).json()
    assert [e["kind"] for e in events][-2:] == ["client_decision_requested", "client_decision"]

    # Answered once: a second answer is refused and changes nothing.
    again = await client.post(
        f"/portal/decisions/{decision_id}",
        data=csrf_form(headers, verdict="denied", comment="no"),
        headers=HTMX,
    )
    assert again.status_code == 422 and "already decided" in again.text
    assert "Nothing is waiting for your decision." in (await client.get("/portal/decisions")).text

    # The agent sees the answer on the item page.
    from tests.integration.test_workqueue_console import signed_in

    client.cookies.clear()
    await signed_in(client, world.agent_a)
    item_page = await client.get(f"/console/work/{item_id}")
    assert 'data-testid="client-decisions"' in item_page.text and "Yes, use the new one" in item_page.text


async def test_denying_needs_a_comment_and_viewers_cannot_decide(
    client, app_client_factory, db, world: World
):
    _, item_id = await ask_client_about_new_order(client, world, "Refund the shipping?")
    async with app_client_factory() as viewer:
        viewer_headers = await portal_session(viewer, world.client_viewer_a)
        page = await viewer.get("/portal/decisions")
        assert "Refund the shipping?" in page.text and "Your administrators decide this." in page.text
        decision_id = re.search(r'id="decision-([0-9a-f-]+)"', page.text).group(1)
        refused = await viewer.post(
            f"/portal/decisions/{decision_id}", data=csrf_form(viewer_headers, verdict="approved")
        )
        assert refused.status_code == 403

    headers = await portal_session(client, world.client_admin_a)
    bare = await client.post(
        f"/portal/decisions/{decision_id}", data=csrf_form(headers, verdict="denied"), headers=HTMX
    )
    assert bare.status_code == 422 and "is required when denying" in bare.text
    odd = await client.post(
        f"/portal/decisions/{decision_id}", data=csrf_form(headers, verdict="maybe"), headers=HTMX
    )
    assert odd.status_code == 422 and "must be approved or denied" in odd.text
    assert (await item_row(db, world, item_id)).status.value == "waiting_client"
    denied = await client.post(
        f"/portal/decisions/{decision_id}",
        data=csrf_form(headers, verdict="denied", comment="Customer pays shipping"),
        headers=HTMX,
    )
    assert denied.status_code == 200
    item = await item_row(db, world, item_id)
    assert item.status.value == "open" and "Client denied" in item.detail


async def test_deciding_without_script_answers_with_the_whole_page(client, world: World):
    await ask_client_about_new_order(client, world, "Upgrade to express at our cost?")
    headers = await portal_session(client, world.client_admin_a)
    page = await client.get("/portal/decisions")
    decision_id = re.search(r'id="decision-([0-9a-f-]+)"', page.text).group(1)
    answered = await client.post(
        f"/portal/decisions/{decision_id}", data=csrf_form(headers, verdict="approved", comment="")
    )
    assert answered.status_code == 200 and "<html" in answered.text
    assert "You approved it" in answered.text and "Nothing is waiting for your decision." in answered.text


async def test_asking_needs_a_question_and_the_held_item(client, db, world: World):
    from tests.integration.test_workqueue_console import claim, signed_in

    await new_order(client, world.key_a, payment_status="pending")
    headers = await signed_in(client, world.agent_a)
    item_url = await claim(client, headers)
    empty = await client.post(
        f"{item_url}/ask-client", data={"_csrf": headers["X-CSRF-Token"], "question": " "}
    )
    assert empty.status_code == 422 and "is required" in empty.text
    # Someone else's held item: only its holder (or a lead) parks it.
    await new_order(client, world.key_a, payment_status="pending")
    from orderdesk.accounts.models import StaffRole
    from tests.conftest import make_staff

    other = await make_staff(db, StaffRole.AGENT, world.a)
    client.cookies.clear()
    other_headers = await signed_in(client, other)
    refused = await client.post(
        f"{item_url}/ask-client", data={"_csrf": other_headers["X-CSRF-Token"], "question": "May we?"}
    )
    assert refused.status_code == 409


# ---------------------------------------------------------------- reports


async def test_reports_draw_charts_and_give_csv(client, db, world: World):
    for _ in range(2):
        await new_order(client, world.key_a)
    await new_order(client, world.key_a, payment_status="pending")
    await new_order(client, world.key_b)
    await portal_session(client, world.client_viewer_a)
    page = await client.get("/portal/reports?weeks=4")
    assert page.status_code == 200
    assert page.text.count('<svg class="chart"') == 5
    assert 'role="img"' in page.text and "<desc" in page.text

    status = await client.get("/portal/reports/status/data.csv?weeks=4")
    assert status.status_code == 200 and status.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(status.text.lstrip("\ufeff"))))
    assert rows[0] == ["status", "orders"]
    assert dict((r[0], int(r[1])) for r in rows[1:]) == {"awaiting_verification": 3}
    for name in ("sla", "handling", "delivery", "returns"):
        response = await client.get(f"/portal/reports/{name}/data.csv")
        assert response.status_code == 200, name
    assert (await client.get("/portal/reports/secrets/data.csv")).status_code == 404
    bad = await client.get("/portal/reports?weeks=0")
    assert bad.status_code == 422 and "between 1 and 104" in bad.text


async def test_sla_and_handling_report_count_finished_items(client, db, world: World, owner_connection):
    from tests.integration.test_workqueue_console import claim, signed_in

    for _ in range(3):
        await new_order(client, world.key_a, payment_status="pending")
    headers = await signed_in(client, world.agent_a)
    finished = []
    for _ in range(3):
        item_url = await claim(client, headers)
        done = await client.post(
            f"{item_url}/done",
            data={"_csrf": headers["X-CSRF-Token"], "outcome": "no_action_needed"},
            follow_redirects=False,
        )
        assert done.status_code in (302, 303), done.text
        finished.append(uuid.UUID(item_url.rsplit("/", 1)[1]))
    # Arrange known handling times (10, 20 and 60 minutes) and one finish after its due time.
    for item_id, minutes in zip(finished, (10, 20, 60), strict=True):
        await owner_connection.execute(
            "UPDATE work_items SET created_at = finished_at - make_interval(mins => $2) WHERE id = $1",
            item_id,
            minutes,
        )
    await owner_connection.execute(
        "UPDATE work_items SET due_at = finished_at - interval '1 minute' WHERE id = $1", finished[2]
    )
    client.cookies.clear()
    await portal_session(client, world.client_viewer_a)

    def rows(response):
        return list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))

    sla = rows(await client.get("/portal/reports/sla/data.csv"))
    assert sla[0] == ["week", "kind", "finished", "within_sla", "attainment_percent"]
    assert sla[1][1:] == ["verification", "3", "2", "66.7"]
    handling = rows(await client.get("/portal/reports/handling/data.csv"))
    assert handling[0] == ["kind", "finished", "median_minutes", "p90_minutes"]
    # Median of 10, 20, 60 is 20; the 90th percentile interpolates 20 + 0.8 * 40 = 52.
    assert handling[1] == ["verification", "3", "20.0", "52.0"]


# ---------------------------------------------------------------- integrations


async def test_admin_manages_webhook_endpoints(client, world: World):
    headers = await portal_session(client, world.client_admin_a)
    bad = await client.post("/portal/settings/webhooks", data=csrf_form(headers, url="http://10.0.0.1/x"))
    assert bad.status_code == 422 and "url" in bad.text
    created = await client.post(
        "/portal/settings/webhooks",
        data=csrf_form(headers, url="https://93.184.216.34/hooks", description="ERP", ordered="on"),
    )
    assert created.status_code == 200, created.text
    first_secret = re.search(r'data-testid="secret">([^<]+)<', created.text).group(1)
    endpoint_id = re.search(r'href="/portal/settings/webhooks/([0-9a-f-]+)"', created.text).group(1)

    edited = await client.post(
        f"/portal/settings/webhooks/{endpoint_id}",
        data=csrf_form(
            headers, url="https://93.184.216.34/v2", description="ERP v2", event_types="order.cancelled"
        ),
    )
    assert edited.status_code == 200 and "Endpoint saved." in edited.text
    assert "https://93.184.216.34/v2" in edited.text and 'value="order.cancelled" checked' in edited.text
    assert 'name="enabled" >' in edited.text or 'name="enabled" ' in edited.text

    rotated = await client.post(f"/portal/settings/webhooks/{endpoint_id}/rotate", data=csrf_form(headers))
    new_secret = re.search(r'data-testid="secret">([^<]+)<', rotated.text).group(1)
    assert new_secret != first_secret and "keeps signing for 24 hours" in rotated.text
    api = await client.get(f"/api/v1/webhook-endpoints/{endpoint_id}/secret", headers=bearer(world.key_a))
    assert new_secret in api.text

    tested = await client.post(f"/portal/settings/webhooks/{endpoint_id}/test", data=csrf_form(headers))
    assert "endpoint.test" in tested.text
    delivery_id = re.search(r"/portal/settings/webhooks/deliveries/([0-9a-f-]+)/replay", tested.text)
    log = await client.get(f"/portal/settings/webhooks/{endpoint_id}/log", headers=HTMX)
    assert "endpoint.test" in log.text and "<html" not in log.text
    assert delivery_id is None  # still pending: nothing to replay yet


async def test_replay_of_a_dead_delivery(client, db, world: World, owner_connection):
    headers = await portal_session(client, world.client_admin_a)
    created = await client.post(
        "/portal/settings/webhooks", data=csrf_form(headers, url="https://93.184.216.34/hooks")
    )
    endpoint_id = re.search(r'href="/portal/settings/webhooks/([0-9a-f-]+)"', created.text).group(1)
    await client.post(f"/portal/settings/webhooks/{endpoint_id}/test", data=csrf_form(headers))
    await owner_connection.execute(
        "UPDATE webhook_deliveries SET status = 'dead', attempts = 8 WHERE endpoint_id = $1",
        uuid.UUID(endpoint_id),
    )
    page = await client.get(f"/portal/settings/webhooks/{endpoint_id}")
    delivery_id = re.search(r"/portal/settings/webhooks/deliveries/([0-9a-f-]+)/replay", page.text).group(1)
    replayed = await client.post(
        f"/portal/settings/webhooks/deliveries/{delivery_id}/replay", data=csrf_form(headers)
    )
    assert replayed.status_code == 200 and "same webhook-id" in replayed.text
    status = await owner_connection.fetchval(
        "SELECT status FROM webhook_deliveries WHERE id = $1", uuid.UUID(delivery_id)
    )
    assert status == "pending"

    # Everything that died since a moment in the tenant's time zone goes out again.
    await owner_connection.execute(
        "UPDATE webhook_deliveries SET status = 'dead', attempts = 8 WHERE endpoint_id = $1",
        uuid.UUID(endpoint_id),
    )
    bad = await client.post(
        f"/portal/settings/webhooks/{endpoint_id}/replay-failed", data=csrf_form(headers, since="yesterday")
    )
    assert bad.status_code == 422 and "since" in bad.text and "2026-11-26T09:00" in bad.text
    # The form's moment is read in the tenant's zone (Europe/Berlin here, at most UTC+2).
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M")
    none = await client.post(
        f"/portal/settings/webhooks/{endpoint_id}/replay-failed", data=csrf_form(headers, since=later)
    )
    assert none.status_code == 200 and "0 failed deliveries since" in none.text
    earlier = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    again = await client.post(
        f"/portal/settings/webhooks/{endpoint_id}/replay-failed", data=csrf_form(headers, since=earlier)
    )
    assert again.status_code == 200 and "1 failed deliveries since" in again.text
    assert (
        await owner_connection.fetchval(
            "SELECT status FROM webhook_deliveries WHERE id = $1", uuid.UUID(delivery_id)
        )
        == "pending"
    )

    removed = await client.post(
        f"/portal/settings/webhooks/{endpoint_id}/delete", data=csrf_form(headers), follow_redirects=False
    )
    assert removed.status_code == 303 and removed.headers["location"] == "/portal/settings/integrations"
    assert (await client.get(f"/portal/settings/webhooks/{endpoint_id}")).status_code == 404


async def test_api_keys_are_shown_once_and_revocable(client, world: World):
    headers = await portal_session(client, world.client_admin_a)
    created = await client.post("/portal/settings/api-keys", data=csrf_form(headers, name="ERP sync"))
    secret = re.search(r'data-testid="new-key">([^<]+)<', created.text).group(1)
    assert (await client.get("/api/v1/me", headers=bearer(secret))).status_code == 200
    page = await client.get("/portal/settings/integrations")
    assert secret not in page.text and secret[:12] in page.text and "ERP sync" in page.text
    assert "Last used" in page.text
    key_id = re.search(r"/portal/settings/api-keys/([0-9a-f-]+)/revoke", page.text)
    # The newest key is listed first.
    revoked = await client.post(
        f"/portal/settings/api-keys/{key_id.group(1)}/revoke", data=csrf_form(headers)
    )
    assert "revoked" in revoked.text
    assert (await client.get("/api/v1/me", headers=bearer(secret))).status_code == 401
    empty = await client.post("/portal/settings/api-keys", data=csrf_form(headers, name=" "))
    assert empty.status_code == 422 and "is required" in empty.text


# ---------------------------------------------------------------- users


async def test_invitation_link_creates_a_viewer_once(client, app_client_factory, world: World):
    headers = await portal_session(client, world.client_admin_a)
    email = f"new-{uuid.uuid4().hex[:6]}@acme.example.com"
    invited = await client.post(
        "/portal/users/invitations", data=csrf_form(headers, email=email, role="viewer")
    )
    assert invited.status_code == 200, invited.text
    link = re.search(r'data-testid="invitation-link">([^<]+)<', invited.text).group(1)
    path = link.replace("http://testserver.local", "")
    assert email in (await client.get("/portal/users")).text  # listed as open

    async with app_client_factory() as invitee:
        offer = await invitee.get(path)
        assert offer.status_code == 200 and "Join Acme Outdoor" in offer.text and email in offer.text
        weak = await invitee.post(path, data={"display_name": "Nia", "password": "short"})
        assert weak.status_code == 422 and "at least 12 characters" in weak.text
        accepted = await invitee.post(
            path,
            data={"display_name": "Nia Newcomer", "password": "a long enough secret"},
            follow_redirects=False,
        )
        assert accepted.status_code in (302, 303)
        again = await invitee.get(path)
        assert again.status_code == 410 and "already been used" in again.text
        reused = await invitee.post(path, data={"display_name": "Eve", "password": "a long enough secret"})
        assert reused.status_code == 410

        from tests.conftest import Person

        person = Person(email, "a long enough secret", uuid.uuid4())
        await portal_session(invitee, person)
        assert (await invitee.get("/portal/settings/integrations")).status_code == 403  # a viewer
    users = await client.get("/portal/users")
    assert "Nia Newcomer" in users.text


async def test_expired_revoked_and_unknown_invitations(client, world: World, owner_connection):
    headers = await portal_session(client, world.client_admin_a)
    invited = await client.post(
        "/portal/users/invitations", data=csrf_form(headers, email="late@acme.example.com", role="admin")
    )
    path = (
        re.search(r'data-testid="invitation-link">([^<]+)<', invited.text)
        .group(1)
        .replace("http://testserver.local", "")
    )
    await owner_connection.execute(
        "UPDATE client_invitations SET expires_at = now() - interval '1 minute'"
        " WHERE email = 'late@acme.example.com'"
    )
    expired = await client.get(path)
    assert expired.status_code == 410 and "expired" in expired.text
    assert (await client.get("/portal/invitations/not-a-token")).status_code == 404

    invited = await client.post(
        "/portal/users/invitations", data=csrf_form(headers, email="gone@acme.example.com", role="viewer")
    )
    path = (
        re.search(r'data-testid="invitation-link">([^<]+)<', invited.text)
        .group(1)
        .replace("http://testserver.local", "")
    )
    page = await client.get("/portal/users")
    invitation_id = re.search(r"/portal/users/invitations/([0-9a-f-]+)/revoke", page.text).group(1)
    await client.post(f"/portal/users/invitations/{invitation_id}/revoke", data=csrf_form(headers))
    assert (await client.get(path)).status_code == 404

    taken = await client.post(
        "/portal/users/invitations", data=csrf_form(headers, email=world.client_viewer_a.email, role="viewer")
    )
    assert taken.status_code == 422 and "already exists" in taken.text
    bad = await client.post(
        "/portal/users/invitations", data=csrf_form(headers, email="not an email", role="viewer")
    )
    assert bad.status_code == 422


async def test_admin_changes_roles_and_disables_users(client, app_client_factory, world: World):
    async with app_client_factory() as viewer:
        await portal_session(viewer, world.client_viewer_a)
        headers = await portal_session(client, world.client_admin_a)
        promoted = await client.post(
            f"/portal/users/{world.client_viewer_a.id}/role", data=csrf_form(headers, role="admin")
        )
        assert promoted.status_code == 200 and "is now admin" in promoted.text
        assert (await viewer.get("/portal/settings/integrations")).status_code == 200  # at once

        disabled = await client.post(
            f"/portal/users/{world.client_viewer_a.id}/disable", data=csrf_form(headers)
        )
        assert "disabled and signed out" in disabled.text
        kicked = await viewer.get("/portal/orders", follow_redirects=False)
        assert kicked.status_code in (302, 303)
        assert (await sign_in(viewer, world.client_viewer_a)).status_code not in (302, 303)

        enabled = await client.post(
            f"/portal/users/{world.client_viewer_a.id}/enable", data=csrf_form(headers)
        )
        assert "can sign in again" in enabled.text
        own = await client.post(f"/portal/users/{world.client_admin_a.id}/disable", data=csrf_form(headers))
        assert own.status_code == 409
        foreign = await client.post(
            f"/portal/users/{world.client_admin_b.id}/disable", data=csrf_form(headers)
        )
        assert foreign.status_code == 404
        odd = await client.post(
            f"/portal/users/{world.client_viewer_a.id}/role", data=csrf_form(headers, role="owner")
        )
        assert odd.status_code == 422


# ---------------------------------------------------------------- branding


async def test_admin_brands_the_portal(client, world: World):
    headers = await portal_session(client, world.client_admin_a)
    bad = await client.post(
        "/portal/settings/branding", data=csrf_form(headers, accent_colour="blue", agent_display="name")
    )
    assert bad.status_code == 422 and "hex colour" in bad.text
    saved = await client.post(
        "/portal/settings/branding", data=csrf_form(headers, accent_colour="#0a7", agent_display="name")
    )
    assert saved.status_code == 200
    png = tiny_png()
    uploaded = await client.post(
        "/portal/settings/branding/logo",
        data={"_csrf": headers["X-CSRF-Token"]},
        files={"logo": ("logo.png", png, "image/png")},
    )
    assert uploaded.status_code == 200, uploaded.text
    refused = await client.post(
        "/portal/settings/branding/logo",
        data={"_csrf": headers["X-CSRF-Token"]},
        files={"logo": ("logo.svg", b"<svg/>", "image/svg+xml")},
    )
    assert refused.status_code == 422 and "PNG, JPEG, GIF or WebP" in refused.text

    page = await client.get("/portal/orders")
    assert "--accent: #00aa77" in page.text
    logo = re.search(r'<img src="(/portal/branding/[^"]+)"', page.text).group(1)
    client.cookies.clear()
    assert (await client.get(logo)).content == png


# ---------------------------------------------------------------- customer messages (comms)


async def test_customer_messages_are_on_the_timeline_and_internal_notes_are_not(client, db, world: World):
    from orderdesk.comms import services as comms
    from orderdesk.comms.models import Direction, MessageChannel, Placement
    from orderdesk.orders.models import Order
    from orderdesk.tenants import services as tenants

    order = await new_order(client, world.key_a)
    system = await tenants.system_actor(db)
    async with db.transaction(system.scope) as session:
        row = await session.get(Order, (world.a.id, uuid.UUID(order["id"])))
        conversation = await comms.start_conversation_in(
            session, world.a.id, channel=MessageChannel.EMAIL, order=row, customer_email=row.customer_email
        )
    await comms.append_message(
        db,
        system,
        conversation.id,
        comms.MessageDraft(
            direction=Direction.INBOUND,
            channel=MessageChannel.EMAIL,
            created_by="inbound email",
            sender_name="Erika Mustermann",
            sender_address="erika@example.com",
            subject="Where is my tent?",
            text_body="Hello, where is my tent?",
            summary="Hello, where is my tent?",
            provider_message_id=f"<{uuid.uuid4().hex}@mail.example.com>",
            placement=Placement.ORDER_NUMBER,
        ),
    )
    await comms.append_message(
        db,
        system,
        conversation.id,
        comms.MessageDraft(
            direction=Direction.OUTBOUND,
            channel=MessageChannel.NOTE,
            created_by="Agent Smith",
            text_body="Customer sounds angry, internal only",
        ),
    )
    await portal_session(client, world.client_viewer_a)
    page = await client.get(f"/portal/orders/{order['id']}")
    assert "Email from Erika Mustermann: Where is my tent?" in page.text
    assert "Hello, where is my tent?" in page.text
    assert "internal only" not in page.text and "Note:" not in page.text


async def test_integration_settings_show_the_inbound_address(client, db, world: World):
    from orderdesk.tenants import services as tenants

    headers = await portal_session(client, world.client_admin_a)
    page = await client.get("/portal/settings/integrations")
    assert "Customer email is not set up for you yet" in page.text
    system = await tenants.system_actor(db)
    local = (
        await configure_customer_email(
            db, world.a.id, prefix="acme", from_name="Acme Support", rotate_inbound_secret=True
        )
    ).local_part
    page = await client.get("/portal/settings/integrations")
    assert f"{local}@" in page.text and "/hooks/inbound-email?recipient=" in page.text
    assert "Acme Support" in page.text and "Secret: set" in page.text
    assert "Chat webhook" in page.text and "Not connected" in page.text
    from orderdesk.comms import outbound

    await outbound.configure_outbound(
        db,
        system,
        world.a.id,
        outbound.OutboundSettingsFields(
            chat_reply_url="https://93.184.216.34/chat/replies", rotate_chat_secret=True
        ),
    )
    page = await client.get("/portal/settings/integrations")
    assert f"POST /hooks/chat/{world.a.id}" in page.text
    assert "https://93.184.216.34/chat/replies" in page.text
    assert "odchat_" not in page.text  # the secret itself is never on the page
    del headers


async def test_operations_admins_choose_roles_for_a_client_in_the_console(client, world: World):
    from tests.integration.test_workqueue_console import signed_in

    headers = await signed_in(client, world.admin)
    page = await client.get(f"/console/tenants/{world.a.id}")
    assert 'data-testid="portal-preferences"' in page.text
    saved = await client.post(
        f"/console/tenants/{world.a.id}/portal-agent-display", data=csrf_form(headers, agent_display="role")
    )
    assert saved.status_code == 200 and "agents appear by role" in saved.text
    odd = await client.post(
        f"/console/tenants/{world.a.id}/portal-agent-display", data=csrf_form(headers, agent_display="both")
    )
    assert odd.status_code == 422
    client.cookies.clear()
    lead_headers = await signed_in(client, world.lead_a)
    refused = await client.post(
        f"/console/tenants/{world.a.id}/portal-agent-display",
        data=csrf_form(lead_headers, agent_display="name"),
    )
    assert refused.status_code == 403
    await portal_session(client, world.client_admin_a)
    branding = await client.get("/portal/settings/branding")
    assert 'value="role" checked' in branding.text


async def test_delivery_and_returns_reports_follow_promises_and_returns(client, world: World):
    headers = bearer(world.key_a)
    warehouse = (
        await client.post(
            "/api/v1/warehouses", json={"code": "R-WH", "name": "Main", "country": "DE"}, headers=headers
        )
    ).json()
    await client.post(
        f"/api/v1/warehouses/{warehouse['id']}/stock",
        json={"updates": [{"sku": "TENT-2P", "on_hand": 10}, {"sku": "MAT-1", "on_hand": 10}]},
        headers=headers,
    )
    now = dt.datetime.now(dt.UTC)
    promises = [now + dt.timedelta(days=2), now - dt.timedelta(hours=30)]  # one kept, one broken
    for index, deliver_by in enumerate(promises):
        order = await new_order(client, world.key_a, deliver_by=deliver_by.isoformat())
        assert (await client.post(f"/api/v1/orders/{order['id']}/verify", headers=headers)).status_code == 200
        shipment = await client.post(
            f"/api/v1/orders/{order['id']}/shipments",
            json={
                "warehouse_id": warehouse["id"],
                "carrier": "DHL",
                "lines": [{"line_no": 1, "quantity": 2}, {"line_no": 2, "quantity": 1}],
            },
            headers=headers,
        )
        assert shipment.status_code == 201, shipment.text
        delivered = await client.post(
            f"/api/v1/shipments/{shipment.json()['id']}/tracking-events",
            json={"event_id": f"d-{index}", "status": "delivered", "occurred_at": now.isoformat()},
            headers=headers,
        )
        assert delivered.status_code == 201, delivered.text
    returned = await client.post(
        f"/api/v1/orders/{order['id']}/returns",
        json={"reason": "damaged", "lines": [{"line_no": 1, "quantity": 1}]},
        headers=headers,
    )
    assert returned.status_code == 201, returned.text

    await portal_session(client, world.client_viewer_a)

    def rows(response):
        return list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))

    delivery = rows(await client.get("/portal/reports/delivery/data.csv"))
    on_time = sum(int(r[1]) for r in delivery[1:])
    late = sum(int(r[2]) for r in delivery[1:])
    assert (on_time, late) == (1, 1)
    late_row = next(r for r in delivery[1:] if int(r[2]) == 1)
    assert float(late_row[3]) == pytest.approx(1.25, abs=0.06)  # 30 hours late
    returns = rows(await client.get("/portal/reports/returns/data.csv"))
    assert [r[1:] for r in returns[1:]] == [["2", "1", "50.0"]]
