"""Templates and macros through the API and the console: errors at save time, a preview with a real order."""

from __future__ import annotations

import uuid

from orderdesk.accounts.models import ClientRole
from tests.conftest import World, configure_customer_email, make_client_user, session_csrf, sign_in
from tests.integration.test_orders_api import bearer, order_body

WISMO = {
    "name": "Where is my order",
    "subject": "Your order {{ order.reference }}",
    "body": "Hi {{ customer.first_name }}, order {{ order.reference }} is {{ tracking.status_label }}.",
}


async def test_a_template_is_checked_when_saved_and_previewed_with_a_real_order(client, world: World):
    headers = bearer(world.key_a)
    order = (await client.post("/api/v1/orders", json=order_body(), headers=headers)).json()
    broken = await client.post(
        "/api/v1/email-templates",
        json={**WISMO, "body": "Hi {{ customer.name }\n{% if x %}"},
        headers=headers,
    )
    assert broken.status_code == 422 and broken.headers["content-type"].startswith("application/problem+json")
    assert broken.json()["errors"][0]["field"] == "body"
    assert broken.json()["errors"][0]["message"].startswith("syntax error on line 1")
    unknown = await client.post(
        "/api/v1/email-templates", json={**WISMO, "subject": "{{ order.secret }}"}, headers=headers
    )
    assert unknown.status_code == 422
    assert {e["field"]: e["message"] for e in unknown.json()["errors"]}["subject"].startswith(
        "undefined variable"
    )
    created = await client.post("/api/v1/email-templates", json=WISMO, headers=headers)
    assert created.status_code == 201, created.text
    template_id = created.json()["id"]
    duplicate = await client.post("/api/v1/email-templates", json=WISMO, headers=headers)
    assert duplicate.status_code == 422 and "already has this name" in duplicate.text
    preview = await client.get(
        f"/api/v1/email-templates/{template_id}/preview?order_id={order['id']}", headers=headers
    )
    assert preview.status_code == 200, preview.text
    first_name = order["customer_name"].split(" ")[0]
    assert preview.json() == {
        "subject": f"Your order #{order['number']}",
        "body": f"Hi {first_name}, order #{order['number']} is being checked.",
        "order_id": order["id"],
        "order_number": order["number"],
    }
    changed = await client.patch(
        f"/api/v1/email-templates/{template_id}", json={"body": "{{ shipments[0].carrier }}"}, headers=headers
    )
    # The tenant's newest order has no shipment yet: saving it would mail customers an error.
    assert changed.status_code == 422 and "undefined" in changed.text
    listed = await client.get("/api/v1/email-templates", headers=headers)
    assert [t["name"] for t in listed.json()] == ["Where is my order"]
    assert (await client.delete(f"/api/v1/email-templates/{template_id}", headers=headers)).status_code == 204
    assert (await client.get(f"/api/v1/email-templates/{template_id}", headers=headers)).status_code == 404


async def test_a_preview_with_another_tenants_order_is_not_found(client, world: World):
    b_order = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_b))).json()
    created = await client.post("/api/v1/email-templates", json=WISMO, headers=bearer(world.key_a))
    missing = await client.get(
        f"/api/v1/email-templates/{created.json()['id']}/preview?order_id={uuid.uuid4()}",
        headers=bearer(world.key_a),
    )
    foreign = await client.get(
        f"/api/v1/email-templates/{created.json()['id']}/preview?order_id={b_order['id']}",
        headers=bearer(world.key_a),
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]


async def test_macros_refuse_bad_outcomes_and_tags(client, world: World):
    headers = bearer(world.key_a)
    bad = await client.post(
        "/api/v1/macros",
        json={
            "name": "Bad",
            "set_outcome": "order_cancelled",
            "add_tag": "Not A Tag!",
            "insert_text": "{{ nope }}",
        },
        headers=headers,
    )
    assert bad.status_code == 422
    errors = {e["field"]: e["message"] for e in bad.json()["errors"]}
    assert errors["set_outcome"].startswith("must be one of: resolved")
    assert "lower-case" in errors["add_tag"]
    assert errors["insert_text"].startswith("undefined variable: nope")
    empty = await client.post("/api/v1/macros", json={"name": "Nothing"}, headers=headers)
    assert empty.status_code == 422 and "needs text, an outcome or a tag" in empty.text
    good = await client.post(
        "/api/v1/macros",
        json={"name": "Close", "set_outcome": "resolved", "add_tag": "WISMO"},
        headers=headers,
    )
    assert good.status_code == 201 and good.json()["add_tag"] == "wismo"


async def test_client_viewers_cannot_change_templates(client, db, world: World):
    viewer = await make_client_user(db, world.a, ClientRole.VIEWER)
    await sign_in(client, viewer)
    home = await client.get("/portal")
    answer = await client.post(
        "/api/v1/email-templates", json=WISMO, headers={"X-CSRF-Token": session_csrf(home.text)}
    )
    assert answer.status_code == 403


async def test_staff_manage_templates_in_the_console_and_see_errors_and_a_preview(client, world: World):
    order = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))).json()
    await sign_in(client, world.lead_a)
    page = await client.get(f"/console/tenants/{world.a.id}/templates")
    assert page.status_code == 200
    csrf = {"X-CSRF-Token": session_csrf(page.text)}
    refused = await client.post(
        f"/console/tenants/{world.a.id}/templates",
        data={"name": "Broken", "subject": "Hi", "body": "{{ order.number"},
        headers=csrf,
    )
    assert refused.status_code == 422 and "syntax error on line 1" in refused.text
    assert "{{ order.number" in refused.text  # what was typed is kept
    saved = await client.post(f"/console/tenants/{world.a.id}/templates", data=WISMO, headers=csrf)
    assert saved.status_code == 200 and "Template “Where is my order” saved." in saved.text
    listed = await client.get("/api/v1/email-templates", headers=bearer(world.key_a))
    template_id = listed.json()[0]["id"]
    preview = await client.get(f"/console/templates/{template_id}?order_id={order['id']}")
    assert (
        f"with order #{order['number']}" in preview.text and f"Your order #{order['number']}" in preview.text
    )
    macro = await client.post(
        f"/console/tenants/{world.a.id}/macros",
        data={"name": "Close", "insert_text": "Done.", "set_outcome": "resolved", "add_tag": "done"},
        headers=csrf,
    )
    assert macro.status_code == 200 and "Macro “Close” saved." in macro.text


async def _a_conversation(db, world: World, client) -> str:
    from orderdesk.comms import services as comms
    from orderdesk.comms.models import MessageChannel
    from orderdesk.orders.models import Order
    from orderdesk.tenants import services as tenants

    order = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))).json()
    system = await tenants.system_actor(db)
    await configure_customer_email(db, world.a.id, from_name="A Support", from_address="support@a.example")
    async with db.transaction(system.scope) as session:
        row = await session.get(Order, (world.a.id, uuid.UUID(order["id"])))
        conversation = await comms.start_conversation_in(
            session,
            world.a.id,
            channel=MessageChannel.EMAIL,
            order=row,
            customer_email=row.customer_email,
            subject="Question",
        )
    return str(conversation.id)


async def test_staff_reply_through_the_api(client, db, world: World, settings):
    from litestar.testing import AsyncTestClient

    from orderdesk.app import create_app

    conversation_id = await _a_conversation(db, world, client)
    # API keys and client users do not answer customers: operations staff do.
    refused = await client.post(
        f"/api/v1/conversations/{conversation_id}/replies", json={"text": "Hi"}, headers=bearer(world.key_a)
    )
    assert refused.status_code == 403
    # Without an inbound domain there is no address for the customer's answer: said plainly.
    await sign_in(client, world.lead_a)
    csrf = {"X-CSRF-Token": session_csrf((await client.get("/console")).text)}
    unset = await client.post(
        f"/api/v1/conversations/{conversation_id}/replies", json={"text": "Hi"}, headers=csrf
    )
    assert unset.status_code == 422
    assert {e["field"]: e["message"] for e in unset.json()["errors"]}["inbound_domain"] == (
        "ORDERDESK_INBOUND_DOMAINS is not set"
    )
    configured = settings.model_copy(update={"inbound_email_domains": ("inbound.a.example",)})
    async with AsyncTestClient(app=create_app(configured), base_url="http://testserver.local") as web:
        await sign_in(web, world.lead_a)
        csrf = {"X-CSRF-Token": session_csrf((await web.get("/console")).text)}
        sent = await web.post(
            f"/api/v1/conversations/{conversation_id}/replies", json={"text": "It ships today."}, headers=csrf
        )
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert body["delivery_status"] == "queued" and body["subject"] == "Re: Question"
    assert body["provider_message_id"].endswith("@a.example>")


async def test_the_reply_box_inserts_a_macros_text_after_what_was_typed(client, db, world: World):
    conversation_id = await _a_conversation(db, world, client)
    macro = await client.post(
        "/api/v1/macros",
        json={"name": "Thanks", "insert_text": "Kind regards, {{ agent.name }}", "add_tag": "thanked"},
        headers=bearer(world.key_a),
    )
    await sign_in(client, world.lead_a)
    page = await client.get(f"/console/conversations/{conversation_id}/reply")
    assert 'hx-get="/console/conversations/' in page.text and "Thanks · tags thanked" in page.text
    inserted = await client.get(
        f"/console/conversations/{conversation_id}/macro-text",
        params={"macro_id": macro.json()["id"], "text": "Your parcel left today."},
        headers={"HX-Request": "true"},
    )
    assert inserted.status_code == 200
    assert "Your parcel left today.\n\nKind regards, Lead" in inserted.text
    assert 'id="reply-text"' in inserted.text
    cleared = await client.get(
        f"/console/conversations/{conversation_id}/macro-text",
        params={"macro_id": "", "text": "Kept as typed"},
        headers={"HX-Request": "true"},
    )
    assert ">Kept as typed</textarea>" in cleared.text


async def test_a_template_links_the_customer_to_the_orders_tracking_page(settings, world: World):
    from litestar.testing import AsyncTestClient

    from orderdesk.app import create_app

    public = settings.model_copy(update={"public_url": "https://desk.example.com"})
    async with AsyncTestClient(app=create_app(public), base_url="https://desk.example.com") as client:
        headers = bearer(world.key_a)
        order = (await client.post("/api/v1/orders", json=order_body(), headers=headers)).json()
        created = await client.post(
            "/api/v1/email-templates",
            json={
                "name": "With the page",
                "subject": "Order {{ order.reference }}",
                "body": "{{ tracking_page }}",
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        preview = await client.get(
            f"/api/v1/email-templates/{created.json()['id']}/preview?order_id={order['id']}", headers=headers
        )
        link = preview.json()["body"].strip()
        assert link.startswith("https://desk.example.com/track/o/")
        page = await client.get(link.removeprefix("https://desk.example.com"))
        assert page.status_code == 200
        assert f"#{order['number']}" in page.text or str(order["number"]) in page.text


def test_without_a_public_url_templates_get_no_tracking_page(world: World):
    from orderdesk.tracking import links

    links.configure_public_links(None, "k" * 40)
    assert links.customer_link(world.a.id, world.b.id) is None
