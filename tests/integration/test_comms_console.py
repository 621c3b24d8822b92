"""What agents and client systems see of conversations: the console's messages panel and the API."""

from __future__ import annotations

from orderdesk.comms import inbound
from orderdesk.comms import services as comms
from orderdesk.comms.models import Direction, MessageChannel
from orderdesk.tenants import services as tenants
from tests.conftest import World, configure_customer_email, session_csrf, sign_in
from tests.integration.test_orders_api import bearer, order_body
from tests.support.email_fixtures import load


async def _customer_wrote(client, db, world: World) -> tuple[dict, inbound.InboundResult]:
    local = (await configure_customer_email(db, world.a.id)).local_part
    order = (await client.post("/api/v1/orders", json=order_body(), headers=bearer(world.key_a))).json()
    raw = load(
        "apple_mail_forward_with_attachments_es.eml",
        sender=order["customer_email"],
        to=f"{local}@in.test",
        order=order["number"],
    )
    result = await inbound.receive_email(db, raw, recipient=f"{local}@in.test")
    return order, result


async def test_the_order_page_shows_the_conversation_and_agents_add_notes(client, db, world: World):
    order, result = await _customer_wrote(client, db, world)
    await sign_in(client, world.agent_a)
    page = await client.get(f"/console/orders/{order['id']}")
    assert page.status_code == 200
    assert f'hx-get="/console/orders/{order["id"]}/messages"' in page.text
    assert "Email from Lucía Fernández" in page.text  # the timeline entry
    panel = await client.get(f"/console/orders/{order['id']}/messages")
    assert panel.status_code == 200
    assert "todavía no ha llegado mi pedido" in panel.text
    assert "where is my order" in panel.text  # the intent
    assert "factura nº 42.pdf" in panel.text
    assert 'sandbox=""' in panel.text  # the HTML version is framed without scripts or origin
    note = await client.post(
        f"/console/conversations/{result.conversation_id}/notes",
        data={"text": "Called the carrier, parcel is at the depot."},
        headers={"X-CSRF-Token": session_csrf(page.text), "HX-Request": "true"},
    )
    assert note.status_code == 200 and "Called the carrier" in note.text and "Note added." in note.text
    empty = await client.post(
        f"/console/conversations/{result.conversation_id}/notes",
        data={"text": "  "},
        headers={"X-CSRF-Token": session_csrf(page.text), "HX-Request": "true"},
    )
    assert empty.status_code == 422


async def test_the_work_item_page_loads_its_conversation(client, db, world: World):
    _order, result = await _customer_wrote(client, db, world)
    system = await tenants.system_actor(db)
    view = await comms.get_conversation(db, system, result.conversation_id)
    await sign_in(client, world.agent_a)
    from orderdesk.workqueue import services as work

    items = await work.list_order_work_items(db, system, view.order_id)
    item = next(i for i in items if i.kind == "customer_message")
    page = await client.get(f"/console/work/{item.id}")
    assert page.status_code == 200
    assert f'hx-get="/console/conversations/{result.conversation_id}"' in page.text
    assert "Suggested: answer with status of order" in page.text


async def test_api_shows_conversations_without_internal_notes_and_downloads_attachments(
    client, db, world: World
):
    order, result = await _customer_wrote(client, db, world)
    system = await tenants.system_actor(db)
    await comms.append_message(
        db,
        system,
        result.conversation_id,
        comms.MessageDraft(
            direction=Direction.OUTBOUND,
            channel=MessageChannel.NOTE,
            created_by="Agent",
            text_body="internal: customer is difficult",
        ),
    )
    listed = await client.get(f"/api/v1/orders/{order['id']}/conversations", headers=bearer(world.key_a))
    assert listed.status_code == 200
    [conversation] = listed.json()
    assert [m["channel"] for m in conversation["messages"]] == ["email"]
    assert "internal:" not in listed.text
    timeline = await client.get(f"/api/v1/orders/{order['id']}/events", headers=bearer(world.key_a))
    assert timeline.status_code == 200 and "message_received" in timeline.text
    assert "internal:" not in timeline.text and "note_added" not in timeline.text
    attachment = next(a for a in conversation["messages"][0]["attachments"] if a["filename"].endswith(".pdf"))
    download = await client.get(f"/api/v1/attachments/{attachment['id']}", headers=bearer(world.key_a))
    assert download.status_code == 200 and download.content.startswith(b"%PDF")
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment;")
    await sign_in(client, world.agent_a)
    staff_view = await client.get(f"/api/v1/conversations/{result.conversation_id}")
    assert "internal: customer is difficult" in staff_view.text
    staff_timeline = await client.get(f"/api/v1/orders/{order['id']}/events")
    assert "note_added" in staff_timeline.text
