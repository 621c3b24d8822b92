"""Replies and their sending: stored with the timeline entry, sent by the worker to a real SMTP server."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import select

from orderdesk.accounts.models import StaffRole
from orderdesk.comms import outbound, sending
from orderdesk.comms import services as comms
from orderdesk.comms.models import Direction, Message, MessageChannel, Placement
from orderdesk.core.errors import Conflict, NotFound, ValidationFailed
from orderdesk.core.tenancy import Scope
from orderdesk.orders.models import Order, OrderEvent
from orderdesk.tenants import services as tenants
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import WorkItem
from tests.conftest import configure_customer_email, make_staff, make_tenant
from tests.integration.test_workqueue import ROUND_THE_CLOCK, capture, staff
from tests.support.smtp_receiver import SmtpReceiver, free_port

DOMAIN = "inbound.desk.example"


# A one-pixel PNG: the smallest real logo.
PNG_PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def policy_for(port: int, *, retries: tuple[float, ...] = (0, 0)) -> sending.MailPolicy:
    return sending.MailPolicy(
        host="127.0.0.1",
        port=port,
        tls="none",
        user=None,
        password=None,
        timeout=5,
        retry_schedule=retries,
        inbound_domain=DOMAIN,
        mail_from="OrderDesk <ops@desk.example>",
        allow_private_chat_urls=True,
    )


class Desk:
    """A tenant set up to mail, one order, its customer's first email, and an agent."""

    def __init__(self, tenant, order, agent, conversation, first_message, local_part) -> None:
        self.tenant = tenant
        self.order = order
        self.agent = agent
        self.conversation = conversation
        self.first_message = first_message
        self.local_part = local_part

    @property
    def scope(self) -> Scope:
        return Scope.for_tenants(self.tenant.id)


async def make_desk(db, *, name: str = "Acme Outdoor") -> Desk:
    tenant = await make_tenant(db, name)
    system = await tenants.system_actor(db)
    await work.set_sla_policy(db, system, tenant.id, ROUND_THE_CLOCK)
    email = await configure_customer_email(
        db, tenant.id, prefix="acme", from_name="Acme Support", from_address="support@acme.example"
    )
    order = await capture(db, tenant)
    person = await make_staff(db, StaffRole.AGENT, tenant)
    agent = staff(person, StaffRole.AGENT, tenant)
    async with db.transaction(system.scope) as session:
        row = await session.get(Order, (tenant.id, uuid.UUID(order["id"])))
        conversation = await comms.start_conversation_in(
            session,
            tenant.id,
            channel=MessageChannel.EMAIL,
            order=row,
            customer_email=row.customer_email,
            customer_name=row.customer_name,
            subject="Where is my order?",
        )
    first_id = f"<{uuid.uuid4().hex}@mail.customer.example>"
    earlier_id = f"<{uuid.uuid4().hex}@mail.customer.example>"
    await comms.append_message(
        db,
        system,
        conversation.id,
        comms.MessageDraft(
            direction=Direction.INBOUND,
            channel=MessageChannel.EMAIL,
            created_by="inbound email",
            sender_address=order["customer_email"],
            subject="Where is my order?",
            text_body="Hello, where is my order?",
            summary="Hello, where is my order?",
            provider_message_id=first_id,
            references=[earlier_id],
            placement=Placement.ORDER_NUMBER,
        ),
    )
    return Desk(tenant, order, agent, conversation, (first_id, earlier_id), email.local_part)


@pytest.fixture
async def desk(db) -> Desk:
    return await make_desk(db)


async def stored(db, desk: Desk, message_id) -> Message:
    async with db.transaction(desk.scope) as session:
        return await session.get(Message, (desk.tenant.id, message_id))


async def test_a_reply_is_queued_with_its_timeline_entry_and_threading_headers(db, desk):
    result = await outbound.send_reply(
        db,
        desk.agent,
        desk.conversation.id,
        outbound.ReplyRequest(text="It left today."),
        inbound_domain=DOMAIN,
    )
    message = result.message
    assert message.direction is Direction.OUTBOUND and message.delivery_status.value == "queued"
    assert message.provider_message_id.endswith("@acme.example>")
    assert message.in_reply_to == desk.first_message[0]
    assert message.references == [desk.first_message[1], desk.first_message[0]]
    async with db.transaction(desk.scope) as session:
        event = await session.scalar(
            select(OrderEvent).where(
                OrderEvent.order_id == uuid.UUID(desk.order["id"]), OrderEvent.kind == "message_sent"
            )
        )
    assert event is not None and event.changes["message_id"] == str(message.id)


async def test_the_worker_sends_the_reply_with_every_header_the_customer_needs(db, desk):
    from orderdesk.tenants import branding

    system = await tenants.system_actor(db)
    await branding.set_accent_colour(db, system, desk.tenant.id, "#0a7d3b")
    await branding.set_logo(db, system, desk.tenant.id, PNG_PIXEL, "image/png")
    result = await outbound.send_reply(
        db,
        desk.agent,
        desk.conversation.id,
        outbound.ReplyRequest(text="It left today."),
        inbound_domain=DOMAIN,
    )
    with SmtpReceiver() as smtp:
        policy = dataclasses.replace(policy_for(smtp.port), public_url="https://desk.example.com")
        await sending.deliver_due(db, policy, desk.scope)
    assert len(smtp.handler.received) == 1
    mail = smtp.handler.received[0]
    assert mail.mail_from == "support@acme.example"
    assert mail.rcpt_tos == [desk.order["customer_email"]]
    headers = mail.message
    assert headers["From"] == "Acme Support <support@acme.example>"
    assert headers["Message-ID"] == result.message.provider_message_id
    assert headers["In-Reply-To"] == desk.first_message[0]
    assert headers["References"].split() == [desk.first_message[1], desk.first_message[0]]
    assert headers["Reply-To"] == f"{desk.local_part}+c_{desk.conversation.reply_token}@{DOMAIN}"
    assert headers["Subject"] == "Re: Where is my order?"
    assert headers["Auto-Submitted"] is None
    assert headers.get_body(("plain",)).get_content().strip() == "It left today."
    # The HTML alternative wears the tenant's colour and logo (fetched from the public site).
    html_part = headers.get_body(("html",)).get_content()
    assert "It left today." in html_part and "background:#0a7d3b" in html_part
    assert '<img src="https://desk.example.com/portal/branding/' in html_part
    sent = await stored(db, desk, result.message.id)
    assert sent.delivery_status.value == "sent" and sent.sent_at is not None and sent.send_attempts == 1


async def test_a_temporary_refusal_is_retried_and_then_delivered_once(db, desk):
    result = await outbound.send_reply(
        db, desk.agent, desk.conversation.id, outbound.ReplyRequest(text="Retry me."), inbound_domain=DOMAIN
    )
    with SmtpReceiver() as smtp:
        smtp.handler.refuse_next = 1
        await sending.deliver_due(db, policy_for(smtp.port), desk.scope)
    assert smtp.handler.attempts == 2 and len(smtp.handler.received) == 1
    sent = await stored(db, desk, result.message.id)
    assert sent.delivery_status.value == "sent" and sent.send_attempts == 2


async def test_a_retry_waits_for_its_backoff(db, desk):
    result = await outbound.send_reply(
        db, desk.agent, desk.conversation.id, outbound.ReplyRequest(text="Later."), inbound_domain=DOMAIN
    )
    with SmtpReceiver() as smtp:
        smtp.handler.refuse_next = 1
        await sending.deliver_due(db, policy_for(smtp.port, retries=(600,)), desk.scope)
    assert smtp.handler.attempts == 1
    waiting = await stored(db, desk, result.message.id)
    assert waiting.delivery_status.value == "queued" and waiting.send_attempts == 1
    assert "451" in waiting.last_error
    assert (waiting.next_attempt_at - waiting.created_at).total_seconds() > 500


async def test_a_dead_server_fails_the_message_after_the_last_attempt_and_says_why(db, desk):
    result = await outbound.send_reply(
        db,
        desk.agent,
        desk.conversation.id,
        outbound.ReplyRequest(text="Nobody home."),
        inbound_domain=DOMAIN,
    )
    await sending.deliver_due(db, policy_for(free_port(), retries=(0, 0)), desk.scope)
    failed = await stored(db, desk, result.message.id)
    assert failed.delivery_status.value == "failed" and failed.send_attempts == 3
    assert "unreachable" in failed.last_error
    view = await comms.get_conversation(db, desk.agent, desk.conversation.id)
    assert view.messages[-1].delivery_status == "failed" and view.messages[-1].last_error
    async with db.transaction(desk.scope) as session:
        items = (
            await session.scalars(select(WorkItem).where(WorkItem.conversation_id == desk.conversation.id))
        ).all()
    # The customer's item is still open: it now says the reply did not arrive, and why.
    assert len(items) == 1 and items[0].title.startswith("Reply not delivered")
    assert "unreachable" in items[0].detail


async def test_a_permanent_refusal_fails_at_once(db, desk):
    from orderdesk.workqueue.states import WorkOutcome

    async with db.transaction(desk.scope) as session:
        item_id = await session.scalar(
            select(WorkItem.id).where(WorkItem.conversation_id == desk.conversation.id)
        )
    await _claim(db, desk, item_id)
    result = await outbound.send_reply(
        db,
        desk.agent,
        desk.conversation.id,
        outbound.ReplyRequest(text="No such user."),
        inbound_domain=DOMAIN,
    )
    await work.complete_work_item(db, desk.agent, item_id, WorkOutcome.RESOLVED)
    with SmtpReceiver() as smtp:
        smtp.handler.refuse_next = 5
        smtp.handler.refusal = "550 5.1.1 No such mailbox"
        await sending.deliver_due(db, policy_for(smtp.port), desk.scope)
    assert smtp.handler.attempts == 1
    failed = await stored(db, desk, result.message.id)
    assert failed.delivery_status.value == "failed" and "550" in failed.last_error
    # An agent who had finished the item gets it back.
    async with db.transaction(desk.scope) as session:
        titles = (
            await session.scalars(
                select(WorkItem.title).where(
                    WorkItem.conversation_id == desk.conversation.id, WorkItem.status == "open"
                )
            )
        ).all()
    assert titles == ["Reply not delivered: Re: Where is my order?"]


async def test_sending_again_sends_nothing_twice(db, desk):
    """A second run (a redelivered job, the sweep) finds nothing due: jobs are idempotent."""
    await outbound.send_reply(
        db, desk.agent, desk.conversation.id, outbound.ReplyRequest(text="Once."), inbound_domain=DOMAIN
    )
    with SmtpReceiver() as smtp:
        first = await sending.deliver_due(db, policy_for(smtp.port), desk.scope)
        second = await sending.deliver_due(db, policy_for(smtp.port), desk.scope)
    assert (first, second) == (1, 0) and len(smtp.handler.received) == 1


async def test_without_a_mail_server_replies_wait_queued_untouched(db, desk):
    result = await outbound.send_reply(
        db, desk.agent, desk.conversation.id, outbound.ReplyRequest(text="Wait."), inbound_domain=DOMAIN
    )
    no_host = dataclasses.replace(policy_for(1), host=None)
    assert await sending.deliver_due(db, no_host, desk.scope) == 0
    waiting = await stored(db, desk, result.message.id)
    assert waiting.delivery_status.value == "queued" and waiting.send_attempts == 0


async def test_a_reply_the_tenant_cannot_send_is_refused_clearly(db):
    desk = await make_desk(db)
    system = await tenants.system_actor(db)
    await comms.configure_comms(db, system, desk.tenant.id, from_address="")
    with pytest.raises(ValidationFailed) as refused:
        await outbound.send_reply(
            db, desk.agent, desk.conversation.id, outbound.ReplyRequest(text="Hi"), inbound_domain=None
        )
    fields = {e.field: e.message for e in refused.value.errors}
    assert "from-address" in fields["from_address"]
    assert fields["inbound_domain"] == "ORDERDESK_INBOUND_DOMAINS is not set"
    with pytest.raises(ValidationFailed, match="cannot be sent"):
        await outbound.send_reply(
            db, desk.agent, desk.conversation.id, outbound.ReplyRequest(text="  "), inbound_domain=DOMAIN
        )


async def test_another_tenants_conversation_is_not_found(db, desk):
    other = await make_desk(db, name="Borealis")
    with pytest.raises(NotFound):
        await outbound.send_reply(
            db, desk.agent, other.conversation.id, outbound.ReplyRequest(text="Hi"), inbound_domain=DOMAIN
        )


async def test_a_reply_from_a_template_uses_the_order(db, desk):
    template = await outbound.create_template(
        db,
        desk.agent,
        desk.tenant.id,
        outbound.TemplateFields(
            name="Where is it",
            subject="Your order {{ order.reference }}",
            body="Hello {{ customer.first_name }}, order {{ order.reference }} is "
            "{{ tracking.status_label }}.",
        ),
    )
    result = await outbound.send_reply(
        db,
        desk.agent,
        desk.conversation.id,
        outbound.ReplyRequest(template_id=template.id),
        inbound_domain=DOMAIN,
    )
    number = desk.order["number"]
    assert result.message.subject == f"Your order #{number}"
    first = desk.order["customer_name"].split(" ")[0]
    assert result.message.text_body == f"Hello {first}, order #{number} is being checked."


async def test_a_macro_inserts_text_tags_the_order_and_closes_the_item(db, desk):
    macro = await outbound.create_macro(
        db,
        desk.agent,
        desk.tenant.id,
        outbound.MacroFields(
            name="Shipped, closing",
            insert_text="Order {{ order.reference }} is on its way.",
            set_outcome="resolved",
            add_tag="wismo",
        ),
    )
    text_ = await outbound.macro_text_for(db, desk.agent, desk.conversation.id, macro.id)
    assert text_ == f"Order #{desk.order['number']} is on its way."
    # The outcome needs the item in the agent's hands.
    with pytest.raises(Conflict):
        await outbound.send_reply(
            db,
            desk.agent,
            desk.conversation.id,
            outbound.ReplyRequest(macro_id=macro.id),
            inbound_domain=DOMAIN,
        )
    async with db.transaction(desk.scope) as session:
        item_id = await session.scalar(
            select(WorkItem.id).where(WorkItem.conversation_id == desk.conversation.id)
        )
    await _claim(db, desk, item_id)
    result = await outbound.send_reply(
        db, desk.agent, desk.conversation.id, outbound.ReplyRequest(macro_id=macro.id), inbound_domain=DOMAIN
    )
    assert result.message.text_body == text_
    assert result.outcome_set.value == "resolved" and result.tag_added == "wismo"
    async with db.transaction(desk.scope) as session:
        item = await session.get(WorkItem, (desk.tenant.id, item_id))
        order = await session.get(Order, (desk.tenant.id, uuid.UUID(desk.order["id"])))
        kinds = (await session.scalars(select(OrderEvent.kind).where(OrderEvent.order_id == order.id))).all()
    assert item.status.value == "done" and item.outcome.value == "resolved"
    assert "wismo" in order.tags and "tag_added" in kinds


async def _claim(db, desk: Desk, item_id) -> None:
    """Claim the conversation's item for the desk's agent through Get next (others are settled)."""
    from orderdesk.workqueue.states import WorkOutcome

    claimed = await work.claim_next_work_item(db, desk.agent)
    while claimed is not None and claimed.id != item_id:
        await work.complete_work_item(db, desk.agent, claimed.id, WorkOutcome.NO_ACTION_NEEDED)
        claimed = await work.claim_next_work_item(db, desk.agent)
    assert claimed is not None and claimed.id == item_id


async def test_another_tenants_template_or_macro_is_not_found_in_a_reply(db, desk):
    other = await make_desk(db, name="Borealis")
    system = await tenants.system_actor(db)
    template = await outbound.create_template(
        db, system, other.tenant.id, outbound.TemplateFields(name="B", subject="B", body="B")
    )
    macro = await outbound.create_macro(
        db, system, other.tenant.id, outbound.MacroFields(name="B", add_tag="b")
    )
    for request in (
        outbound.ReplyRequest(template_id=template.id),
        outbound.ReplyRequest(text="x", macro_id=macro.id),
    ):
        with pytest.raises(NotFound):
            await outbound.send_reply(db, desk.agent, desk.conversation.id, request, inbound_domain=DOMAIN)
    with pytest.raises(NotFound):
        await outbound.macro_text_for(db, desk.agent, desk.conversation.id, macro.id)
