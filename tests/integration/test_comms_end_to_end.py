"""The whole loop over real protocols: a customer's email in over SMTP, the agent's templated reply out
over SMTP from the worker, and the customer's answer threading back into the same conversation."""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

from litestar.testing import AsyncTestClient
from sqlalchemy import select

from orderdesk.accounts.models import StaffRole
from orderdesk.comms import outbound, sending
from orderdesk.comms.models import Conversation, Message
from orderdesk.comms.smtp import start_smtp_server
from orderdesk.core.tenancy import Scope
from orderdesk.tenants import services as tenants
from orderdesk.workqueue import services as work
from orderdesk.workqueue.models import WorkItem
from tests.conftest import configure_customer_email, make_staff, make_tenant, session_csrf, sign_in
from tests.integration.test_comms_outbound import policy_for
from tests.integration.test_workqueue import ROUND_THE_CLOCK, capture
from tests.support.smtp_receiver import SmtpReceiver

DOMAIN = "inbound.e2e.example"


def deliver(port: int, sender: str, recipient: str, raw: bytes) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as connection:
        return connection.sendmail(sender, [recipient], raw)


async def test_where_is_my_order_email_to_templated_reply_to_threaded_answer(db, settings):
    # A client, "Acme", whose order numbers customers know as ACME-<number>.
    tenant = await make_tenant(db, "Acme Outdoor")
    system = await tenants.system_actor(db)
    await work.set_sla_policy(db, system, tenant.id, ROUND_THE_CLOCK)
    local = (
        await configure_customer_email(
            db,
            tenant.id,
            prefix="acme",
            from_name="Acme Support",
            from_address="support@acme.example",
            order_number_pattern=r"ACME-(\d+)",
        )
    ).local_part
    order = await capture(db, tenant)
    number, customer = order["number"], order["customer_email"]
    template = await outbound.create_template(
        db,
        system,
        tenant.id,
        outbound.TemplateFields(
            name="Where is my order",
            subject="Your order ACME-{{ order.number }}",
            body="Hello {{ customer.first_name }},\n\nyour order ACME-{{ order.number }} is "
            "{{ tracking.status_label }}.\n\n{{ agent.name }}, {{ tenant.from_name }}",
        ),
    )
    await outbound.configure_outbound(
        db, system, tenant.id, outbound.OutboundSettingsFields(auto_answer_template_id=template.id)
    )
    person = await make_staff(db, StaffRole.AGENT, tenant)
    scope = Scope.for_tenants(tenant.id)

    server = await start_smtp_server(db, host="127.0.0.1", port=0, domains=(DOMAIN,))
    listener_port = server.sockets[0].getsockname()[1]
    try:
        # 1. The customer writes to the tenant's inbound address.
        question = EmailMessage()
        question["From"] = f"Kim Example <{customer}>"
        question["To"] = f"{local}@{DOMAIN}"
        question["Subject"] = f"where is my order ACME-{number}?"
        question["Message-ID"] = make_msgid(domain="mail.customer.example")
        question.set_content(f"Hi, where is my order ACME-{number}? It has been a week.\n\nKim")
        assert (
            await asyncio.to_thread(
                deliver, listener_port, customer, f"{local}@{DOMAIN}", question.as_bytes()
            )
            == {}
        )

        # 2. It is a customer-message work item on the order, with the suggested answer.
        async with db.transaction(scope) as session:
            conversation = await session.scalar(
                select(Conversation).where(Conversation.tenant_id == tenant.id)
            )
            item = await session.scalar(select(WorkItem).where(WorkItem.conversation_id == conversation.id))
        assert str(conversation.order_id) == order["id"]
        assert item.kind == "customer_message" and f"#{number}" in item.title
        assert "where is my order" in item.title and f"answer with status of order #{number}" in item.detail

        # 3. The agent opens the conversation in the console and sends the template.
        app_settings = settings.model_copy(update={"inbound_email_domains": (DOMAIN,)})
        from orderdesk.app import create_app

        async with AsyncTestClient(app=create_app(app_settings), base_url="http://testserver.local") as web:
            await sign_in(web, person)
            item_page = await web.get(f"/console/work/{item.id}")
            assert (
                item_page.status_code == 200 and f"/console/conversations/{conversation.id}" in item_page.text
            )
            panel = await web.get(f"/console/conversations/{conversation.id}", headers={"HX-Request": "true"})
            assert f"/console/conversations/{conversation.id}/reply" in panel.text
            page = await web.get(f"/console/conversations/{conversation.id}/reply")
            assert page.status_code == 200 and "where is my order ACME-" in page.text
            # The reply box shows the suggested action and proposes the where-is-my-order template.
            assert f"answer with status of order #{number}" in page.text
            assert f'<option value="{template.id}" selected>Where is my order (suggested)' in page.text
            sent = await web.post(
                f"/console/conversations/{conversation.id}/reply",
                data={"template_id": str(template.id), "text": ""},
                headers={"X-CSRF-Token": session_csrf(page.text)},
            )
            assert sent.status_code == 200, sent.text
            assert "Reply queued for sending." in sent.text

        # 4. The worker sends it over SMTP, threaded to the customer's message.
        with SmtpReceiver() as smtp:
            policy = dataclasses.replace(policy_for(smtp.port), inbound_domain=DOMAIN)
            assert await sending.deliver_due(db, policy, scope) == 1
        [mail] = smtp.handler.received
        reply = mail.message
        assert mail.rcpt_tos == [customer]
        assert reply["From"] == "Acme Support <support@acme.example>"
        assert reply["Subject"] == f"Your order ACME-{number}"
        assert reply["In-Reply-To"] == question["Message-ID"]
        assert reply["References"] == question["Message-ID"]
        assert reply["Reply-To"] == f"{local}+c_{conversation.reply_token}@{DOMAIN}"
        assert f"your order ACME-{number} is being checked." in reply.get_body(("plain",)).get_content()

        # 5. The customer answers (no order number this time): it joins the same conversation.
        answer = EmailMessage()
        answer["From"] = f"Kim Example <{customer}>"
        answer["To"] = reply["Reply-To"]
        answer["Subject"] = f"Re: {reply['Subject']}"
        answer["Message-ID"] = make_msgid(domain="mail.customer.example")
        answer["In-Reply-To"] = reply["Message-ID"]
        answer["References"] = f"{question['Message-ID']} {reply['Message-ID']}"
        answer.set_content("Thanks! Can you ship it faster?\n\n> your order is being checked")
        assert (
            await asyncio.to_thread(deliver, listener_port, customer, reply["Reply-To"], answer.as_bytes())
            == {}
        )
    finally:
        server.close()
        await server.wait_closed()

    async with db.transaction(scope) as session:
        messages = (
            await session.scalars(
                select(Message).where(Message.tenant_id == tenant.id).order_by(Message.created_at)
            )
        ).all()
        conversations = (
            await session.scalars(select(Conversation).where(Conversation.tenant_id == tenant.id))
        ).all()
        items = (
            await session.scalars(select(WorkItem).where(WorkItem.conversation_id == conversation.id))
        ).all()
    assert len(conversations) == 1
    assert [(m.direction.value, m.conversation_id) for m in messages] == [
        ("in", conversation.id),
        ("out", conversation.id),
        ("in", conversation.id),
    ]
    assert messages[1].delivery_status.value == "sent"
    assert messages[2].placement.value == "token" and messages[2].in_reply_to == reply["Message-ID"]
    assert len(items) == 1 and items[0].status.value == "open"
