"""The conversation model on real PostgreSQL: messages, timeline entries, customer-message items."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from orderdesk.accounts.models import StaffRole
from orderdesk.comms import services as comms
from orderdesk.comms.models import Attachment, Direction, Message, MessageChannel, Placement
from orderdesk.core.errors import NotFound, ValidationFailed
from orderdesk.core.tenancy import Scope
from orderdesk.orders.models import Order, OrderEvent
from orderdesk.tenants import services as tenants
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import WorkItem
from orderdesk.workqueue.states import WorkOutcome
from tests.conftest import configure_customer_email, make_staff, make_tenant
from tests.integration.test_workqueue import ROUND_THE_CLOCK, capture, staff


def inbound(**changes) -> comms.MessageDraft:
    values = dict(
        direction=Direction.INBOUND,
        channel=MessageChannel.EMAIL,
        created_by="inbound email",
        sender_address="kim@example.com",
        subject="Where is my order?",
        text_body="Hello, where is my order?",
        summary="Hello, where is my order?",
        provider_message_id=f"<{uuid.uuid4().hex}@mail.example.com>",
        placement=Placement.ORDER_NUMBER,
    )
    values.update(changes)
    return comms.MessageDraft(**values)


@pytest.fixture
async def shop(db):
    tenant = await make_tenant(db, "Comms Co")
    system = await tenants.system_actor(db)
    await work.set_sla_policy(db, system, tenant.id, ROUND_THE_CLOCK)
    order = await capture(db, tenant)
    return tenant, order, system


async def _conversation(db, system, tenant, order_id):
    async with db.transaction(system.scope) as session:
        order = await session.get(Order, (tenant.id, uuid.UUID(str(order_id))))
        return await comms.start_conversation_in(
            session, tenant.id, channel=MessageChannel.EMAIL, order=order, customer_email=order.customer_email
        )


async def test_an_inbound_message_lands_on_the_timeline_and_opens_one_item(db, shop):
    tenant, order, system = shop
    conversation = await _conversation(db, system, tenant, order["id"])
    first = await comms.append_message(db, system, conversation.id, inbound())
    second = await comms.append_message(db, system, conversation.id, inbound(subject="Any news?"))
    assert not first.duplicate and not second.duplicate
    async with db.transaction(Scope.for_tenants(tenant.id)) as session:
        kinds = (
            await session.scalars(
                select(OrderEvent.kind)
                .where(OrderEvent.order_id == uuid.UUID(order["id"]))
                .order_by(OrderEvent.seq)
            )
        ).all()
        items = (
            await session.scalars(select(WorkItem).where(WorkItem.conversation_id == conversation.id))
        ).all()
    assert kinds.count("message_received") == 2
    assert len(items) == 1 and items[0].kind == "customer_message"
    assert items[0].order_id == uuid.UUID(order["id"]) and items[0].title == "Customer message: Any news?"


async def test_the_same_provider_message_id_three_times_is_one_message(db, shop):
    tenant, order, system = shop
    conversation = await _conversation(db, system, tenant, order["id"])
    draft = inbound()
    results = [await comms.append_message(db, system, conversation.id, draft) for _ in range(3)]
    assert [r.duplicate for r in results] == [False, True, True]
    assert len({r.message.id for r in results}) == 1
    view = await comms.get_conversation(db, system, conversation.id)
    assert view.message_count == 1 and len(view.messages) == 1


async def test_a_note_goes_on_the_timeline_without_opening_work(db, shop):
    tenant, order, system = shop
    conversation = await _conversation(db, system, tenant, order["id"])
    await comms.append_message(
        db,
        system,
        conversation.id,
        comms.MessageDraft(
            direction=Direction.OUTBOUND,
            channel=MessageChannel.NOTE,
            created_by="Agent",
            text_body="Called her",
        ),
    )
    async with db.transaction(Scope.for_tenants(tenant.id)) as session:
        items = await session.scalar(
            select(func.count()).select_from(WorkItem).where(WorkItem.conversation_id == conversation.id)
        )
        kinds = (
            await session.scalars(select(OrderEvent.kind).where(OrderEvent.order_id == conversation.order_id))
        ).all()
    assert items == 0 and "note_added" in kinds


async def test_an_answer_from_the_customer_puts_a_waiting_item_back_in_the_queue(db, shop):
    tenant, order, system = shop
    agent = staff(await make_staff(db, StaffRole.AGENT, tenant), StaffRole.AGENT, tenant)
    conversation = await _conversation(db, system, tenant, order["id"])
    created = await comms.append_message(db, system, conversation.id, inbound())
    item_id = created.work_item.id
    # Other work of the tenant (the order's verification) may come first: finish it.
    for _ in range(5):
        claimed = await work.claim_next_work_item(db, agent)
        if claimed.id == item_id:
            break
        await work.complete_work_item(db, agent, claimed.id, WorkOutcome.NO_ACTION_NEEDED)
    await work.wait_on(db, agent, item_id, "customer")
    assert (await work.get_work_item(db, agent, item_id)).status == "waiting_customer"
    await comms.append_message(db, system, conversation.id, inbound(subject="Re: your question"))
    item = await work.get_work_item(db, agent, item_id)
    assert item.status == "open" and item.sla_running_since is not None


async def test_attachments_are_stored_with_their_size_and_limit(db, shop):
    tenant, order, system = shop
    conversation = await _conversation(db, system, tenant, order["id"])
    pdf = b"%PDF-1.4 invoice"
    result = await comms.append_message(
        db,
        system,
        conversation.id,
        inbound(attachments=[comms.AttachmentDraft("invoice.pdf", "application/pdf", pdf)]),
    )
    view = await comms.get_conversation(db, system, conversation.id)
    (attachment,) = view.messages[0].attachments
    assert attachment.size == len(pdf) and attachment.filename == "invoice.pdf"
    meta, data = await comms.get_attachment(db, system, attachment.id)
    assert data == pdf and meta.message_id == result.message.id
    with pytest.raises(ValidationFailed):
        await comms.append_message(
            db,
            system,
            conversation.id,
            inbound(
                attachments=[
                    comms.AttachmentDraft(
                        "big.bin", "application/octet-stream", b"x" * (10 * 1024 * 1024 + 1)
                    )
                ]
            ),
        )


async def test_another_tenants_conversation_and_attachment_are_not_found(db, shop):
    tenant, order, system = shop
    other = await make_tenant(db, "Other Co")
    conversation = await _conversation(db, system, tenant, order["id"])
    await comms.append_message(
        db,
        system,
        conversation.id,
        inbound(attachments=[comms.AttachmentDraft("a.txt", "text/plain", b"hi")]),
    )
    outsider = staff(await make_staff(db, StaffRole.AGENT, other), StaffRole.AGENT, other)
    with pytest.raises(NotFound):
        await comms.get_conversation(db, outsider, conversation.id)
    with pytest.raises(NotFound):
        await comms.append_message(db, outsider, conversation.id, inbound())
    with pytest.raises(NotFound):
        await comms.list_order_conversations(db, outsider, uuid.UUID(order["id"]))
    async with db.transaction(Scope.for_tenants(tenant.id)) as session:
        attachment_id = await session.scalar(
            select(Attachment.id).join(Message, Message.id == Attachment.message_id)
        )
    with pytest.raises(NotFound):
        await comms.get_attachment(db, outsider, attachment_id)


async def test_inbound_local_parts_are_unique_across_tenants(db):
    first = await make_tenant(db, "One")
    second = await make_tenant(db, "Two")
    system = await tenants.system_actor(db)
    first_email = await configure_customer_email(db, first.id, rotate_inbound_secret=True)
    local, secret = first_email.local_part, first_email.secret
    assert secret and secret.startswith("odin_")
    with pytest.raises(ValidationFailed):
        await comms.configure_comms(db, system, second.id, inbound_local_part=local.upper())
    with pytest.raises(ValidationFailed):
        await comms.configure_comms(db, system, second.id, order_number_pattern=r"ACME-\d+")


async def test_two_messages_arriving_at_once_are_both_counted(db, shop):
    tenant, order, system = shop
    conversation = await _conversation(db, system, tenant, order["id"])
    results = await asyncio.gather(
        *(comms.append_message(db, system, conversation.id, inbound()) for _ in range(2))
    )
    assert [r.duplicate for r in results] == [False, False]
    view = await comms.get_conversation(db, system, conversation.id)
    assert view.message_count == 2 and len(view.messages) == 2 and view.status == "open"


async def test_mail_bytes_are_stored_without_compression_attempts(owner_connection):
    """Migration 0018: raw messages and attachments are mostly base64 of photos and PDFs,
    which pglz reads in full before giving up."""
    rows = await owner_connection.fetch(
        """SELECT c.relname, a.attname, a.attstorage::text AS attstorage
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           WHERE (c.relname, a.attname) IN (('messages', 'raw_mime'), ('message_attachments', 'data'),
                                            ('messages', 'html_body'))"""
    )
    storage = {(r["relname"], r["attname"]): r["attstorage"] for r in rows}
    assert storage == {
        ("messages", "raw_mime"): "e",
        ("message_attachments", "data"): "e",
        ("messages", "html_body"): "x",  # text still compresses
    }
