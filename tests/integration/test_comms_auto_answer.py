"""Automatic answers through the real append path: what gets answered, with what, and what never."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from orderdesk.comms import outbound, sending
from orderdesk.comms import services as comms
from orderdesk.comms.models import Direction, Intent, Message, MessageChannel, Placement
from orderdesk.tenants import services as tenants
from tests.integration.test_comms_outbound import Desk, make_desk, policy_for
from tests.support.smtp_receiver import SmtpReceiver


def customer_mail(desk: Desk, **changes) -> comms.MessageDraft:
    values = dict(
        direction=Direction.INBOUND,
        channel=MessageChannel.EMAIL,
        created_by="inbound email",
        sender_address=desk.order["customer_email"],
        subject="Any news?",
        text_body="Where is my order?",
        summary="Where is my order?",
        provider_message_id=f"<{uuid.uuid4().hex}@mail.customer.example>",
        placement=Placement.TOKEN,
        intent=Intent.WHERE_IS_MY_ORDER,
        intent_confidence=0.95,
    )
    values.update(changes)
    return comms.MessageDraft(**values)


async def allow_auto_answers(db, desk: Desk) -> None:
    system = await tenants.system_actor(db)
    template = await outbound.create_template(
        db,
        system,
        desk.tenant.id,
        outbound.TemplateFields(
            name="WISMO auto",
            subject="About your order {{ order.reference }}",
            body="Your order {{ order.reference }} is {{ tracking.status_label }}.",
        ),
    )
    await comms.configure_comms(db, system, desk.tenant.id, auto_answer_enabled=True)
    await outbound.configure_outbound(
        db, system, desk.tenant.id, outbound.OutboundSettingsFields(auto_answer_template_id=template.id)
    )


async def outbound_of(db, desk: Desk) -> list[Message]:
    async with db.transaction(desk.scope) as session:
        return list(
            (
                await session.scalars(
                    select(Message)
                    .where(
                        Message.conversation_id == desk.conversation.id,
                        Message.direction == Direction.OUTBOUND,
                    )
                    .order_by(Message.created_at)
                )
            ).all()
        )


async def test_where_is_my_order_is_answered_with_the_tracking_status_and_marked_automatic(db):
    desk = await make_desk(db)
    await allow_auto_answers(db, desk)
    system = await tenants.system_actor(db)
    incoming = customer_mail(desk)
    await comms.append_message(db, system, desk.conversation.id, incoming)
    [answer] = await outbound_of(db, desk)
    assert answer.is_automated and answer.in_reply_to == incoming.provider_message_id
    assert answer.text_body == f"Your order #{desk.order['number']} is being checked."
    with SmtpReceiver() as smtp:
        await sending.deliver_due(db, policy_for(smtp.port), desk.scope)
    [mail] = smtp.handler.received
    assert mail.message["Auto-Submitted"] == "auto-replied"
    assert mail.message["Subject"] == f"About your order #{desk.order['number']}"
    # The customer writes again at once: no second robot answer, an agent takes it.
    await comms.append_message(db, system, desk.conversation.id, customer_mail(desk))
    assert len(await outbound_of(db, desk)) == 1


async def test_automated_mail_and_cancellations_are_never_answered(db):
    desk = await make_desk(db)
    await allow_auto_answers(db, desk)
    system = await tenants.system_actor(db)
    await comms.append_message(
        db,
        system,
        desk.conversation.id,
        customer_mail(desk, is_automated=True, automated_reason="Auto-Submitted"),
    )
    await comms.append_message(
        db, system, desk.conversation.id, customer_mail(desk, intent=Intent.CANCEL, text_body="Cancel it")
    )
    assert await outbound_of(db, desk) == []


async def test_a_tenant_that_does_not_allow_it_gets_no_answers(db):
    desk = await make_desk(db)
    system = await tenants.system_actor(db)
    await comms.append_message(db, system, desk.conversation.id, customer_mail(desk))
    assert await outbound_of(db, desk) == []


async def test_a_broken_template_leaves_the_message_to_an_agent_and_stores_it(db):
    desk = await make_desk(db)
    await allow_auto_answers(db, desk)
    system = await tenants.system_actor(db)
    # A template that needs a shipment the order does not have yet.
    async with db.transaction(desk.scope) as session:
        from orderdesk.comms.outbound_models import EmailTemplate

        template = await session.scalar(
            select(EmailTemplate).where(EmailTemplate.tenant_id == desk.tenant.id)
        )
        template.body = "{{ shipments[0].carrier }}"
    incoming = customer_mail(desk)
    result = await comms.append_message(db, system, desk.conversation.id, incoming)
    assert not result.duplicate and result.work_item is not None
    assert await outbound_of(db, desk) == []
