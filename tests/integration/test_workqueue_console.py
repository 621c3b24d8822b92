"""The work queue console through HTTP: queue, Get next, the item page, entry form, search, team board."""

from __future__ import annotations

import re
import uuid

from orderdesk.workqueue.states import WorkItemStatus, WorkRole, work_actions_for
from tests.conftest import World, session_csrf, sign_in
from tests.integration.test_orders_api import bearer, order_body

HTMX = {"HX-Request": "true"}


async def signed_in(client, person) -> dict[str, str]:
    await sign_in(client, person)
    page = await client.get("/console/queue")
    assert page.status_code == 200, page.text
    return {"X-CSRF-Token": session_csrf(page.text)}


async def pending_order(client, world: World, key=None) -> dict:
    response = await client.post(
        "/api/v1/orders", json=order_body(payment_status="pending"), headers=bearer(key or world.key_a)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def claim(client, headers) -> str:
    response = await client.post("/console/queue/next", headers={**headers, **HTMX})
    assert response.status_code == 200, response.text
    target = response.headers.get("HX-Redirect")
    assert target and target.startswith("/console/work/"), response.text
    return target


async def test_agent_gets_next_verifies_and_finishes(client, world: World):
    order = await pending_order(client, world)
    headers = await signed_in(client, world.agent_a)
    item_url = await claim(client, headers)
    page = await client.get(item_url)
    assert page.status_code == 200
    assert f"#{order['number']}" in page.text
    assert 'class="check-row failed"' in page.text and 'data-check="payment_confirmed"' in page.text
    assert "Override" in page.text and 'id="lease"' in page.text

    # Verifying first is refused with a clear message: the failed check needs a decision.
    refused = await client.post(f"/console/orders/{order['id']}/actions/verify", headers={**headers, **HTMX})
    assert refused.status_code == 409 and "override" in refused.text.lower()

    overridden = await client.post(
        f"/console/orders/{order['id']}/checks/payment_confirmed",
        data={"resolution": "overridden"},
        headers={**headers, **HTMX},
    )
    assert overridden.status_code == 200 and 'class="check-row overridden"' in overridden.text
    verified = await client.post(f"/console/orders/{order['id']}/actions/verify", headers={**headers, **HTMX})
    assert verified.status_code == 200
    assert 'data-testid="order-status">verified' in verified.text
    assert verified.headers["HX-Trigger"] == "order-changed"

    status = await client.get(f"{item_url}/status", headers=HTMX)
    assert 'data-testid="cause-resolved"' in status.text

    lease = await client.post(f"{item_url}/lease", headers={**headers, **HTMX})
    assert lease.status_code == 200 and "Yours until" in lease.text

    done = await client.post(
        f"{item_url}/done",
        data={"outcome": "resolved", "note": "ok"},
        headers=headers,
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].startswith("/console/queue")
    assert "Item done" in (await client.get(done.headers["location"])).text
    finished = await client.get(item_url)
    assert 'data-testid="item-status">done' in finished.text
    events = (await client.get(f"/api/v1/orders/{order['id']}/events", headers=bearer(world.key_a))).json()
    assert [e["kind"] for e in events][-2:] == ["check_decided", "verify"]
    # Nothing left: Get next says so.
    nothing = await client.post("/console/queue/next", headers={**headers, **HTMX})
    assert "Nothing is waiting" in nothing.text


async def test_done_and_next_moves_on(client, world: World):
    await pending_order(client, world)
    await pending_order(client, world)
    headers = await signed_in(client, world.agent_a)
    first = await claim(client, headers)
    response = await client.post(
        f"{first}/done", data={"outcome": "no_action_needed", "then": "next"}, headers={**headers, **HTMX}
    )
    second = response.headers.get("HX-Redirect")
    assert second and second != first


async def test_snooze_and_hand_back_from_the_page(client, world: World):
    await pending_order(client, world)
    headers = await signed_in(client, world.agent_a)
    item_url = await claim(client, headers)
    snoozed = await client.post(
        f"{item_url}/snooze", data={"minutes": "60"}, headers=headers, follow_redirects=False
    )
    assert snoozed.status_code == 303
    assert "Item snoozed" in (await client.get(snoozed.headers["location"])).text
    assert 'data-testid="item-status">snoozed' in (await client.get(item_url)).text
    bad = await client.post(f"{item_url}/snooze", data={"minutes": "soon"}, headers={**headers, **HTMX})
    assert bad.status_code == 422 and "snooze" in bad.text


async def test_a_client_user_cannot_open_the_console(client, world: World):
    await sign_in(client, world.client_admin_a)
    for path in ("/console/queue", "/console/lead", "/console/orders/new", "/console/search?q=x"):
        response = await client.get(path)
        assert response.status_code == 403, path
        assert "operations staff" in response.text


async def test_agents_do_not_see_the_team_board(client, world: World):
    await signed_in(client, world.agent_a)
    assert (await client.get("/console/lead")).status_code == 403


async def test_lead_board_lists_queues_people_and_urgent_items(client, world: World):
    order = await pending_order(client, world)
    await pending_order(client, world, key=world.key_b)  # B's: never on A's lead's board
    await signed_in(client, world.lead_a)
    page = await client.get("/console/lead")
    assert page.status_code == 200
    assert world.a.name in page.text and world.b.name not in page.text
    assert 'hx-trigger="every 5s"' in page.text
    fragment = await client.get("/console/lead/board", headers=HTMX)
    assert f"Verify order #{order['number']}" in fragment.text
    assert "<html" not in fragment.text


async def test_lead_reassigns_from_the_item_page(client, world: World, app_client_factory):
    await pending_order(client, world)
    agent_headers = await signed_in(client, world.agent_a)
    item_url = await claim(client, agent_headers)
    async with app_client_factory() as lead_client:
        lead_headers = await signed_in(lead_client, world.lead_a)
        page = await lead_client.get(item_url)
        assert "Reassign to" in page.text
        moved = await lead_client.post(
            f"{item_url}/reassign", data={"agent_id": str(world.lead_a.id)}, headers={**lead_headers, **HTMX}
        )
        assert moved.status_code == 200 and "Now with" in moved.text
    # The agent's lease is gone: the page's poll says so.
    lost = await client.post(f"{item_url}/lease", headers={**agent_headers, **HTMX})
    assert lost.status_code == 409 and "Someone else" in lost.text


async def test_sla_editor_saves_and_recomputes(client, world: World):
    await pending_order(client, world)
    headers = await signed_in(client, world.lead_a)
    page = await client.get(f"/console/sla/{world.a.id}")
    assert page.status_code == 200 and 'name="hours.mon"' in page.text
    form = {
        "time_zone": "Europe/Berlin",
        "at_risk_percent": "25",
        "client_tier": "1",
        **{f"hours.{d}": "08:00-12:00, 13:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": "2026-12-25\n2026-12-26",
        "targets.verification.normal": "90",
    }
    saved = await client.post(f"/console/sla/{world.a.id}", data=form, headers=headers)
    assert saved.status_code == 200 and "recomputed" in saved.text
    assert "08:00-12:00, 13:00-17:00" in saved.text
    bad = await client.post(
        f"/console/sla/{world.a.id}", data={**form, "hours.mon": "9 to 5"}, headers=headers
    )
    assert bad.status_code == 422 and "is not a window" in bad.text
    # The refused field is marked invalid and described by its error; the others are not.
    monday = re.search(r'<input name="hours\.mon"[^>]*>', bad.text).group(0)
    assert 'aria-describedby="err-business-hours-mon"' in monday and 'aria-invalid="true"' in monday
    assert re.search(r'id="err-business-hours-mon">[^<]*is not a window', bad.text)
    tuesday = re.search(r'<input name="hours\.tue"[^>]*>', bad.text).group(0)
    assert "aria-invalid" not in tuesday


async def test_manual_entry_validates_inline_and_creates_through_the_agent_channel(client, world: World):
    headers = await signed_in(client, world.agent_a)
    page = await client.get("/console/orders/new")
    assert page.status_code == 200 and 'hx-post="/console/orders/new/validate"' in page.text
    form = {
        "tenant_id": str(world.a.id),
        "customer.name": "Hanna Weber",
        "customer.email": "not-an-email",
        "shipping_address.line1": "Hauptstr. 5",
        "shipping_address.city": "Köln",
        "shipping_address.postal_code": "50667",
        "shipping_address.country": "DE",
        "currency": "EUR",
        "lines[0].sku": "TENT-2P",
        "lines[0].quantity": "two",
        "lines[0].unit_price": "19.90",
        "payment_status": "paid",
        "priority": "normal",
    }
    # Only fields the agent touched get an error while typing.
    checked = await client.post(
        "/console/orders/new/validate",
        data={**form, "_touched": "customer.email"},
        headers={**headers, **HTMX},
    )
    assert checked.status_code == 200
    assert re.search(r'id="err-customer-email" hx-swap-oob="true">[^<]+', checked.text)
    assert re.search(r'id="err-lines-0-quantity" hx-swap-oob="true"></span>', checked.text)
    everything = await client.post(
        "/console/orders/new/validate", data={**form, "_all": "1"}, headers={**headers, **HTMX}
    )
    assert re.search(r'id="err-lines-0-quantity" hx-swap-oob="true">must be a whole number', everything.text)
    # Submitting with a bad field saves nothing and shows the form again with the errors.
    before = (await client.get("/api/v1/orders?limit=200", headers=bearer(world.key_a))).json()["items"]
    refused = await client.post("/console/orders/new", data=form, headers=headers)
    assert refused.status_code == 422 and "The order was not saved" in refused.text
    assert 'value="Hanna Weber"' in refused.text
    after = (await client.get("/api/v1/orders?limit=200", headers=bearer(world.key_a))).json()["items"]
    assert len(after) == len(before)
    # Intake's own rules (e-mail) also land on their field.
    fixed_quantity = {**form, "lines[0].quantity": "2"}
    refused = await client.post("/console/orders/new", data=fixed_quantity, headers=headers)
    assert refused.status_code == 422 and "err-customer-email" in refused.text
    fixed = {**fixed_quantity, "customer.email": "hanna@example.com"}
    created = await client.post("/console/orders/new", data=fixed, headers=headers, follow_redirects=False)
    assert created.status_code == 303, created.text
    order_page = await client.get(created.headers["location"])
    assert "Hanna Weber" in order_page.text and "39.80 EUR" in order_page.text
    order_id = created.headers["location"].split("/")[3].split("?")[0]
    order = (await client.get(f"/api/v1/orders/{order_id}", headers=bearer(world.key_a))).json()
    assert order["channel"] == "agent" and order["lines"][0]["unit_price_minor"] == 1990


async def test_a_new_line_row_comes_from_the_server(client, world: World):
    await signed_in(client, world.agent_a)
    row = await client.get("/console/orders/new/line?index=3", headers=HTMX)
    assert 'name="lines[3].sku"' in row.text


async def test_search_spans_the_agents_tenants_only(client, world: World):
    mine = await pending_order(client, world)
    theirs = await pending_order(client, world, key=world.key_b)
    await signed_in(client, world.agent_a)
    found = await client.get(f"/console/search?q={mine['number']}")
    assert f"/console/orders/{mine['id']}" in found.text
    by_email = await client.get(f"/console/search?q={theirs['customer_email']}")
    assert theirs["id"] not in by_email.text and "No order matches" in by_email.text
    assert (await client.get(f"/console/orders/{theirs['id']}")).status_code == 404


async def test_manual_work_item_from_the_queue_page(client, world: World):
    order = await pending_order(client, world)
    headers = await signed_in(client, world.agent_a)
    made = await client.post(
        "/console/queue/items",
        data={
            "tenant_id": str(world.a.id),
            "kind": "tracking_follow_up",
            "title": "Parcel stuck",
            "order_number": f"#{order['number']}",
        },
        headers=headers,
        follow_redirects=False,
    )
    assert made.status_code == 303
    page = await client.get(made.headers["location"])
    assert "Parcel stuck" in page.text and "Tracking follow-up" in page.text
    foreign = await client.post(
        "/console/queue/items",
        data={"tenant_id": str(world.b.id), "kind": "order_entry", "title": "x"},
        headers=headers,
    )
    assert foreign.status_code == 404
    assert uuid.UUID(made.headers["location"].rsplit("/", 1)[1])


async def test_agents_cannot_open_the_sla_editor(client, world: World):
    """The editor is refused like the team board, not only its Save."""
    await signed_in(client, world.agent_a)
    board = await client.get("/console/lead")
    editor = await client.get(f"/console/sla/{world.a.id}")
    assert editor.status_code == board.status_code == 403
    assert "Only team leads and administrators" in editor.text
    assert 'name="hours.mon"' not in editor.text


def shown_work_actions(html: str) -> set[str]:
    return set(re.findall(r'data-work-action="(\w+)"', html))


def table_work_actions(status: str, role: WorkRole) -> set[str]:
    return {a.value for a in work_actions_for(WorkItemStatus(status), role)}


async def test_item_buttons_are_the_state_tables_actions_for_the_viewer(
    client, world: World, app_client_factory
):
    await pending_order(client, world)
    agent_headers = await signed_in(client, world.agent_a)
    item_url = await claim(client, agent_headers)
    async with app_client_factory() as lead_client:
        lead_headers = await signed_in(lead_client, world.lead_a)

        async def check(status: str, role: WorkRole) -> set[str]:
            viewer = lead_client if role is WorkRole.LEAD else client
            page = await viewer.get(item_url)
            assert f'data-testid="item-status">{status.replace("_", " ")}' in page.text
            shown = shown_work_actions(page.text)
            assert shown == table_work_actions(status, role), (status, role)
            return shown

        assert "hand_back" in await check("claimed", WorkRole.HOLDER)
        assert "reassign" in await check("claimed", WorkRole.LEAD)
        parked = await client.post(
            f"{item_url}/wait", data={"party": "customer"}, headers=agent_headers, follow_redirects=False
        )
        assert parked.status_code == 303
        assert await check("waiting_customer", WorkRole.STAFF) == {"resume"}
        # A lead may withdraw a parked item straight from its page.
        assert {"resume", "complete", "cancel"} <= await check("waiting_customer", WorkRole.LEAD)
        withdrawn = await lead_client.post(
            f"{item_url}/done", data={"outcome": "withdrawn"}, headers=lead_headers, follow_redirects=False
        )
        assert withdrawn.status_code == 303
        assert await check("cancelled", WorkRole.LEAD) == set()
        assert await check("cancelled", WorkRole.STAFF) == set()


async def test_operations_view_for_leads_only(client, world: World, app_client_factory):
    await pending_order(client, world)
    await pending_order(client, world, key=world.key_b)
    await signed_in(client, world.lead_a)
    page = await client.get("/console/operations")
    assert page.status_code == 200 and 'hx-trigger="every 15s"' in page.text
    assert world.a.name in page.text and world.b.name not in page.text
    fragment = await client.get("/console/operations/board", headers=HTMX)
    assert 'data-testid="operations-stuck"' in fragment.text and "<html" not in fragment.text
    async with app_client_factory() as agent_client:
        await signed_in(agent_client, world.agent_a)
        assert (await agent_client.get("/console/operations")).status_code == 403


async def test_shipment_exceptions_become_work_and_show_on_the_order(client, world: World):
    from tests.integration.test_fulfillment import ship, track
    from tests.integration.test_inventory import make_warehouse, new_order, put_stock, verify

    key = world.key_a
    warehouse = await make_warehouse(client, key, "WQ1")
    await put_stock(client, key, warehouse, TENT=2)
    order = await verify(client, key, await new_order(client, key, TENT=2))
    shipment = await ship(client, key, order, warehouse, [(1, 2)])
    await track(client, key, shipment, "failed_attempt", 30, raw_status="Nobody home")
    headers = await signed_in(client, world.agent_a)
    item_url = await claim(client, headers)
    page = await client.get(item_url)
    assert "shipment needs attention (failed attempt)" in page.text
    assert 'data-testid="shipments"' in page.text and "needs attention: failed attempt" in page.text
    await track(client, key, shipment, "out_for_delivery", 40)
    status = await client.get(f"{item_url}/status", headers=HTMX)
    assert 'data-testid="cause-resolved"' in status.text
